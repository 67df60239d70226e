"""Where MCP tools may touch the file system.

Allowed roots: `LMFAST_HOME`, folders named by the operator (`lmfast mcp --allow-root`, or
LMFAST_MCP_ROOTS), the roots the MCP client declares (`roots/list`, where it offers them), and
the working directory only when it is a project folder. Clients such as Claude Desktop start
stdio servers with the working directory `/`, so `/`, the user's home folder itself and system
folders never become roots implicitly.

Relative paths resolve against one predictable base: the working directory when it is a root,
otherwise the first operator root, otherwise `LMFAST_HOME`. Paths are resolved (symlinks
followed, `..` collapsed) before the check, so neither trick escapes.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from lmfast.errors import LMFastError
from lmfast.home import lmfast_home

ROOTS_ENV = "LMFAST_MCP_ROOTS"

# Folders (and everything under them) that are never implicit roots.
_SYSTEM_PREFIXES = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/proc",
    "/run", "/sbin", "/srv", "/sys", "/usr", "/var", "/System", "/Library", "/Applications",
)  # fmt: skip


class PathNotAllowedError(LMFastError, PermissionError):
    """A tool argument points outside the allowed roots."""


def _is_system_folder(path: Path) -> bool:
    if path == Path(path.anchor) or path == Path.home().resolve():
        return True
    if sys.platform == "win32":
        windir = Path(os.environ.get("WINDIR", r"C:\Windows")).resolve()
        return path == windir or path.is_relative_to(windir)
    return any(path == Path(p) or path.is_relative_to(p) for p in _SYSTEM_PREFIXES)


def cwd_root() -> Path | None:
    """The working directory, when it is a project folder rather than `/`, home or system."""
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # deleted working directory
        return None
    return None if _is_system_folder(cwd) else cwd


def operator_roots() -> list[Path]:
    extra = os.environ.get(ROOTS_ENV, "")
    return [Path(p).expanduser().resolve() for p in extra.split(os.pathsep) if p]


def allowed_roots(client_roots: Sequence[Path] = ()) -> list[Path]:
    roots: list[Path] = []
    if (cwd := cwd_root()) is not None:
        roots.append(cwd)
    roots += operator_roots()
    roots += [Path(r).expanduser().resolve() for r in client_roots]
    roots.append(lmfast_home().resolve())
    return list(dict.fromkeys(roots))


def base_folder() -> Path:
    """Where relative paths in tool arguments are resolved."""
    return cwd_root() or next(iter(operator_roots()), None) or lmfast_home().resolve()


def absolute(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_folder() / p


def confine(path: str | Path, field: str, client_roots: Sequence[Path] = ()) -> Path:
    """The resolved path if it lies inside an allowed root; otherwise a clear refusal."""
    resolved = absolute(path).resolve()
    roots = allowed_roots(client_roots)
    if any(resolved == r or resolved.is_relative_to(r) for r in roots):
        return resolved
    listed = ", ".join(str(r) for r in roots)
    raise PathNotAllowedError(
        f"{field}: {str(path)!r} resolves to {resolved}, outside the allowed roots ({listed}). "
        f"Start the server with --allow-root DIR (or set {ROOTS_ENV}) to allow another folder."
    )


def looks_like_path(reference: str) -> bool:
    """Model references that name local files rather than aliases, artifacts or hub ids."""
    return (
        reference.startswith(("/", "./", "../", "~", "\\"))
        or reference.endswith(".gguf")
        or absolute(reference).exists()
    )


def confine_model_reference(
    reference: str, field: str = "model", client_roots: Sequence[Path] = ()
) -> str:
    """Aliases, artifact ids and hub ids pass; local paths must be inside the roots."""
    from lmfast.artifacts import ArtifactStore
    from lmfast.registry import ALIASES

    if reference.lower() in ALIASES or ArtifactStore().exists(reference):
        return reference
    if looks_like_path(reference):
        return str(confine(reference, field, client_roots))
    return reference


def confine_input(pattern: str, field: str, client_roots: Sequence[Path] = ()) -> str:
    """A file, folder or glob: its fixed part (before any wildcard) must be inside the roots.
    Returns the pattern made absolute against `base_folder()`."""
    full = str(absolute(pattern))
    head = full
    for i, ch in enumerate(full):
        if ch in "*?[":
            head = full[:i]
            break
    base = Path(head) if head == full else Path(head).parent
    confine(base, field, client_roots)
    if ".." in Path(full).parts[len(base.parts) :]:
        raise PathNotAllowedError(f"{field}: '..' after a wildcard is not allowed ({pattern!r})")
    return full


async def client_roots(ctx: Any) -> list[Path]:
    """Folders the client declares (MCP roots), when it offers them; otherwise none."""
    if ctx is None:
        return []
    try:
        session = ctx.session
        caps = session.client_capabilities
        if caps is None or caps.roots is None:
            return []
        with warnings.catch_warnings():  # roots are deprecated in the 2026-07-28 spec
            warnings.simplefilter("ignore")
            listed = await session.list_roots()
    except Exception:  # a client that declares roots but cannot answer: no extra roots
        return []
    roots = []
    for root in listed.roots:
        uri = str(root.uri)
        if uri.startswith("file://"):
            roots.append(Path(url2pathname(urlparse(uri).path)))
    return roots


def confine_rewards(rewards: Sequence[str] | None, client_roots: Sequence[Path]) -> list | None:
    """GRPO rewards from a client: built-in names, or file.py:function with the file inside
    the roots. module:function is refused: importing any installed module on a client's
    word would run code the user never chose."""
    from lmfast.config import BUILTIN_REWARDS

    if not rewards:
        return None
    kept = []
    for name in rewards:
        if name in BUILTIN_REWARDS:
            kept.append(name)
            continue
        file, _, function = name.rpartition(":")
        if not file.endswith(".py") or not function:
            raise PathNotAllowedError(
                f"rewards: {name!r}: over MCP a reward is built-in "
                f"({', '.join(BUILTIN_REWARDS)}) or file.py:function inside the client's roots"
            )
        kept.append(f"{confine_input(file, 'rewards', client_roots)}:{function}")
    return kept
