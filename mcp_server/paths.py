"""Where MCP tools may touch the file system: the project folder, LMFAST_HOME and folders
named by the operator (`lmfast mcp --allow-root`, or LMFAST_MCP_ROOTS). Paths are resolved
(symlinks followed, `..` collapsed) before the check, so neither trick escapes."""

from __future__ import annotations

import os
from pathlib import Path

from lmfast.errors import LMFastError
from lmfast.home import lmfast_home

ROOTS_ENV = "LMFAST_MCP_ROOTS"


class PathNotAllowedError(LMFastError, PermissionError):
    """A tool argument points outside the allowed roots."""


def allowed_roots() -> list[Path]:
    roots = [Path.cwd(), lmfast_home()]
    extra = os.environ.get(ROOTS_ENV, "")
    roots += [Path(p) for p in extra.split(os.pathsep) if p]
    return [r.expanduser().resolve() for r in roots]


def confine(path: str | Path, field: str) -> Path:
    """The resolved path if it lies inside an allowed root; otherwise a clear refusal."""
    resolved = Path(path).expanduser().resolve()
    roots = allowed_roots()
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
        or Path(reference).expanduser().exists()
    )


def confine_model_reference(reference: str, field: str = "model") -> str:
    """Aliases, artifact ids and hub ids pass; local paths must be inside the roots."""
    from lmfast.artifacts import ArtifactStore
    from lmfast.registry import ALIASES

    if reference.lower() in ALIASES or ArtifactStore().exists(reference):
        return reference
    if looks_like_path(reference):
        return str(confine(reference, field))
    return reference


def confine_input(pattern: str, field: str) -> str:
    """A file, folder or glob: its fixed part (before any wildcard) must be inside the roots."""
    head = pattern
    for i, ch in enumerate(pattern):
        if ch in "*?[":
            head = pattern[:i]
            break
    base = Path(head) if head == pattern else Path(head).parent if head else Path(".")
    confine(base, field)
    if ".." in Path(pattern).parts[len(base.parts) :]:
        raise PathNotAllowedError(f"{field}: '..' after a wildcard is not allowed ({pattern!r})")
    return str(Path(pattern).expanduser())
