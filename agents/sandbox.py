"""Run model-written Python in a separate, limited process.

Threat model (what it holds, and what it does not):

- Kernel-enforced, whatever the code does: CPU time (RLIMIT_CPU), address space
  (RLIMIT_AS: memory hogs fail with MemoryError), the size of any file written
  (RLIMIT_FSIZE, which also caps output), open files, number of processes (RLIMIT_NPROC
  against fork bombs), a wall-clock limit after which the whole process group is killed,
  and, where the kernel allows unprivileged user namespaces (`unshare`), no network at all:
  the child runs in its own network namespace with no interfaces.
- Enforced inside the interpreter by an audit hook installed before the code runs (PEP 578):
  imports outside an allow-list, opening files for writing outside the temporary work dir,
  reading files outside it and the Python installation, sockets, subprocesses, exec, fork,
  signals and ctypes. Audit hooks stop model mistakes and ordinary misuse; code written to
  attack CPython's internals can get around them. For adversarial code, run LMFast's agent
  inside a container or VM as well: this sandbox is a seat belt, not a security boundary
  against a determined attacker.
- The environment is emptied (no API keys leak in), stdin is closed, and the work dir is
  deleted afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field

DEFAULT_MODULES = (
    "math", "cmath", "statistics", "fractions", "decimal", "random", "itertools",
    "functools", "operator", "collections", "heapq", "bisect", "string", "re", "json",
    "datetime", "calendar", "textwrap", "dataclasses", "typing", "enum", "copy", "pprint",
    "csv", "io", "time",
)  # fmt: skip


class SandboxLimits(BaseModel):
    cpu_seconds: int = Field(5, ge=1, le=3600, description="CPU time.")
    wall_seconds: float = Field(10.0, gt=0, le=3600, description="Real time, then killed.")
    memory_mb: int = Field(512, ge=64, le=65536, description="Address space of the process.")
    output_bytes: int = Field(64_000, ge=1000, le=100_000_000, description="stdout + stderr.")
    file_bytes: int = Field(10_000_000, ge=1000, description="Largest file it may write.")
    processes: int = Field(0, ge=0, le=64, description="Extra processes it may start (0).")
    allowed_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_MODULES))
    network: bool = Field(False, description="True skips the network namespace.")


class SandboxResult(BaseModel):
    stdout: str
    stderr: str
    exit_code: int | None
    ok: bool = Field(description="Exited 0 within every limit.")
    killed: str | None = Field(
        None, description="Why it was stopped: wall_time, cpu_time, output_limit, signal."
    )
    seconds: float
    network_isolated: bool
    files: list[str] = Field(default_factory=list, description="Files it left in its dir.")

    def observation(self, limit: int = 2000) -> str:
        """What an agent shows the model."""
        parts = []
        if self.stdout.strip():
            parts.append(self.stdout.strip())
        if self.stderr.strip():
            parts.append("stderr:\n" + self.stderr.strip()[-limit:])
        if self.killed:
            parts.append(f"(stopped: {self.killed})")
        elif self.exit_code:
            parts.append(f"(exit code {self.exit_code})")
        text = "\n".join(parts) or "(no output)"
        return text if len(text) <= limit else text[:limit] + "..."


class Sandbox:
    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()

    def run(self, code: str) -> SandboxResult:
        limits = self.limits
        with tempfile.TemporaryDirectory(prefix="lmfast-sandbox-") as root:
            base = Path(root)
            work = base / "work"
            work.mkdir()
            (base / "code.py").write_text(code, encoding="utf-8")
            settings = {
                "cpu_seconds": limits.cpu_seconds,
                "memory_mb": limits.memory_mb,
                "file_bytes": max(limits.file_bytes, limits.output_bytes),
                "allowed_modules": limits.allowed_modules,
                "nproc": _nproc_limit(limits.processes),
            }
            runner = Path(__file__).with_name("sandbox_runner.py")
            isolate = not limits.network and _netns_available()
            cmd = [sys.executable, "-I", "-B", str(runner), str(work), str(base / "code.py"),
                   json.dumps(settings)]  # fmt: skip
            if isolate:
                cmd = ["unshare", "--user", "--map-root-user", "--net", *cmd]
            env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8",
                   "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
            start = time.monotonic()
            with open(base / "out", "wb") as out, open(base / "err", "wb") as err:
                proc = subprocess.Popen(
                    cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    start_new_session=True,
                )  # fmt: skip
                killed = None
                try:
                    proc.wait(timeout=limits.wall_seconds)
                except subprocess.TimeoutExpired:
                    killed = "wall_time"
                finally:
                    _kill_group(proc)
            seconds = time.monotonic() - start
            stdout, cut_out = _read(base / "out", limits.output_bytes)
            stderr, cut_err = _read(base / "err", limits.output_bytes)
            code_ = proc.returncode
            if killed is None and code_ is not None and code_ < 0:
                sig = -code_
                killed = {signal.SIGXCPU: "cpu_time", signal.SIGKILL: "cpu_time",
                          signal.SIGXFSZ: "output_limit"}.get(sig, f"signal {sig}")  # fmt: skip
            if killed is None and (cut_out or cut_err):
                killed = "output_limit"
            files = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
            return SandboxResult(
                stdout=stdout,
                stderr=stderr,
                exit_code=code_,
                ok=code_ == 0 and killed is None,
                killed=killed,
                seconds=round(seconds, 3),
                network_isolated=isolate,
                files=files[:100],
            )


def _read(path: Path, limit: int) -> tuple[str, bool]:
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return data[:limit].decode("utf-8", "replace"), len(data) > limit


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill everything the code started (it runs in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _nproc_limit(extra: int) -> int:
    """RLIMIT_NPROC counts all of this user's processes: allow what runs now plus `extra`
    (and a small margin for processes this user starts meanwhile)."""
    import psutil

    uid = os.getuid()
    mine = sum(
        1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid
    )
    threads = sum(
        p.info["num_threads"] or 0
        for p in psutil.process_iter(["uids", "num_threads"])
        if p.info["uids"] and p.info["uids"].real == uid
    )
    # Linux counts threads against RLIMIT_NPROC too.
    return max(mine, threads) + extra + 8


@lru_cache(maxsize=1)
def _netns_available() -> bool:
    """Whether `unshare --user --net` works here (unprivileged user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--net", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
