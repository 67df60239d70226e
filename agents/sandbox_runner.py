"""Runs inside the sandbox's child process (started by lmfast.agents.sandbox, never imported).

Order matters: limits first (they cannot be raised again), then the allowed modules are
imported, then the audit hook goes in (it cannot be removed), and only then the user's
code runs. argv: work dir, code file, JSON settings.
"""

import contextlib
import json
import os
import resource
import sys


def _limits(cfg):
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_seconds"], cfg["cpu_seconds"]))
    resource.setrlimit(resource.RLIMIT_AS, (cfg["memory_mb"] * mb, cfg["memory_mb"] * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["file_bytes"], cfg["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nproc = cfg.get("nproc")
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _hook(work, readable, allowed):
    work = os.path.realpath(work)
    readable = tuple(os.path.realpath(p) for p in readable)

    def inside(path, roots):
        try:
            real = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else "")
        except (TypeError, ValueError):
            return False
        return any(real == r or real.startswith(r + os.sep) for r in roots)

    blocked_prefixes = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn",
                        "ctypes.", "os.fork", "os.forkpty", "os.kill", "os.killpg", "pty.",
                        "resource.setrlimit", "sys.addaudithook", "os.chroot", "os.setuid",
                        "webbrowser.", "urllib.Request", "ftplib.", "smtplib.", "http.client.",
                        "os.system", "os.putenv", "os.unsetenv", "mmap.", "winreg.", "syslog.",
                        "os.add_dll_directory", "_posixsubprocess")  # fmt: skip
    writes = ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
              "os.link", "os.symlink", "os.truncate", "os.utime", "shutil.rmtree",
              "shutil.copyfile", "shutil.move", "os.chdir")  # fmt: skip

    def audit(event, args):
        if event.startswith(blocked_prefixes):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args[0], args[1] or "r", args[2] or 0
            if isinstance(path, int):
                return  # an fd already open (the sandbox's own streams)
            writing = any(c in str(mode) for c in "wax+") or (flags & (os.O_WRONLY | os.O_RDWR))
            if writing and not inside(path, (work,)):
                raise PermissionError(f"sandbox: writing {path!r} outside the work dir")
            if not writing and not inside(path, (work, *readable)):
                raise PermissionError(f"sandbox: reading {path!r} outside the work dir")
        elif event in writes:
            for a in args:
                if isinstance(a, str | bytes) and not inside(a, (work,)):
                    raise PermissionError(f"sandbox: {event} on {a!r} outside the work dir")
        elif event in ("os.listdir", "os.scandir"):
            path = args[0] if args and args[0] is not None else "."
            if not isinstance(path, int) and not inside(path, (work, *readable)):
                raise PermissionError(f"sandbox: listing {path!r} outside the work dir")
        elif event == "import":
            name = args[0]
            if name and name.split(".")[0] not in allowed and _from_user_code():
                raise ImportError(f"sandbox: importing {name!r} is not allowed")

    sys.addaudithook(audit)


def _from_user_code():
    """Whether the import statement being run is the user's own (allowed modules may
    import what they need internally)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        frame = frame.f_back
    return frame is not None and frame.f_code.co_filename == "<sandbox>"


def _guarded_builtins(allowed):
    """Builtins for the user's code whose __import__ checks the allow-list even for modules
    already loaded (the audit hook's import event fires only for new ones)."""
    import builtins

    real = builtins.__import__

    def guarded(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name.split(".")[0] not in allowed:
            raise ImportError(f"sandbox: importing {name!r} is not allowed")
        return real(name, globals, locals, fromlist, level)

    names = dict(vars(builtins))
    names["__import__"] = guarded
    return names


def main():
    work, code_file, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    with open(code_file, encoding="utf-8") as f:
        code = f.read()
    _limits(cfg)
    allowed = set(cfg["allowed_modules"])
    for name in sorted(allowed):
        with contextlib.suppress(ImportError):
            __import__(name)
    os.chdir(work)
    readable = [p for p in sys.path if p and os.path.isdir(p)] + [sys.prefix, sys.base_prefix]
    _hook(work, readable, allowed)
    namespace = {"__name__": "__main__", "__builtins__": _guarded_builtins(allowed)}
    exec(compile(code, "<sandbox>", "exec"), namespace)


if __name__ == "__main__":
    main()
