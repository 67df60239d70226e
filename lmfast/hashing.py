"""Content hashes behind config hashes, dataset versions and artifact lineage.

The hashing itself runs in the Rust core (xxh3, parallel, GIL released); this module defines
what gets hashed so that equal content always yields equal ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lmfast_native
from pydantic import BaseModel


def canonical_json(obj: Any) -> bytes:
    """Key-sorted, whitespace-free JSON: the byte form every hash of structured data uses."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def config_hash(obj: Any) -> str:
    """Stable 128-bit hash of a config (pydantic model or plain data), as 32 hex chars."""
    return lmfast_native.hash_bytes(canonical_json(obj))


def files_in(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted list of files (hidden files skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        else:
            out.append(p)
    return sorted(set(out))


def content_version(paths: Iterable[str | Path], config: Any = None) -> str:
    """Version id of some files' content (names relative to their roots) plus a config.

    Renaming the parent folder keeps the id; changing one byte or one setting changes it.
    """
    roots = [Path(p) for p in paths]
    entries = []
    for root in roots:
        files = files_in([root])
        digests = lmfast_native.hash_files([str(f) for f in files])
        for f, (digest, size) in zip(files, digests, strict=True):
            rel = f.name if f == root else f.relative_to(root).as_posix()
            entries.append([rel, digest, size])
    entries.sort()
    payload = {"files": entries, "config": config}
    return lmfast_native.hash_bytes(canonical_json(payload))
