"""Everything LMFast produces is an artifact: a folder under LMFAST_HOME plus a manifest.

Writes are atomic: an artifact is assembled in a staging folder and renamed into place only
when complete, so a crash never leaves a half-written model that looks finished.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from lmfast.errors import ArtifactError
from lmfast.hashing import config_hash
from lmfast.home import lmfast_home

ArtifactKind = Literal[
    "dataset", "model", "adapter", "report", "export", "teacher_labels", "tokenizer"
]
KINDS: tuple[str, ...] = get_args(ArtifactKind)
MANIFEST = "manifest.json"


class ArtifactManifest(BaseModel):
    """What an artifact is and where it came from."""

    id: str = Field(description="Unique id, e.g. model-20261121-124501-3fa2c1.")
    kind: ArtifactKind = Field(
        description="dataset, model, adapter, report, export, teacher_labels or tokenizer."
    )
    name: str | None = Field(None, description="Human-friendly name.")
    parents: list[str] = Field(
        default_factory=list, description="Ids or references of the inputs it was made from."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Settings that made it.")
    config_hash: str = Field(description="Hash of `config`.")
    dataset_version: str | None = Field(None, description="Version id of the training data.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Measured results.")
    created_at: datetime = Field(description="When it was completed (UTC).")
    lmfast_version: str = Field(description="LMFast version that wrote it.")
    extra: dict[str, Any] = Field(default_factory=dict, description="Kind-specific details.")


class Artifact(BaseModel):
    """A manifest plus the folder holding the files."""

    manifest: ArtifactManifest
    path: Path

    @property
    def id(self) -> str:
        return self.manifest.id


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write through a temporary file in the same folder, then rename: readers see the old
    file or the new one, never half of one. The temporary file is removed on failure."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Artifacts live in `<home>/artifacts/<id>/` with a `manifest.json` beside the files."""

    def __init__(self, home: Path | None = None) -> None:
        self.root = (home or lmfast_home()) / "artifacts"
        self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def create(
        self,
        kind: ArtifactKind,
        *,
        name: str | None = None,
        parents: list[str] | None = None,
        config: dict[str, Any] | None = None,
        dataset_version: str | None = None,
    ) -> Iterator[_Draft]:
        """Yield a draft whose `.path` to fill; on clean exit it becomes an artifact."""
        from lmfast import __version__

        if kind not in KINDS:
            raise ArtifactError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
        stamp = datetime.now(UTC)
        art_id = f"{kind}-{stamp:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        staging = self.root / f".staging-{art_id}"
        staging.mkdir(parents=True)
        draft = _Draft(staging)
        try:
            yield draft
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        manifest = ArtifactManifest(
            id=art_id,
            kind=kind,
            name=name,
            parents=parents or [],
            config=config or {},
            config_hash=config_hash(config or {}),
            dataset_version=dataset_version,
            metrics=draft.metrics,
            created_at=datetime.now(UTC),
            lmfast_version=__version__,
            extra=draft.extra,
        )
        write_atomic(staging / MANIFEST, manifest.model_dump_json(indent=2))
        final = self.root / art_id
        os.replace(staging, final)
        draft.artifact = Artifact(manifest=manifest, path=final)

    def get(self, art_id: str) -> Artifact:
        path = self.root / art_id
        if not art_id or "/" in art_id or art_id.startswith(".") or not (path / MANIFEST).is_file():
            raise ArtifactError(f"no artifact with id {art_id!r} in {self.root}")
        return self._load(path)

    def exists(self, art_id: str) -> bool:
        return bool(art_id) and "/" not in art_id and (self.root / art_id / MANIFEST).is_file()

    def _load(self, path: Path) -> Artifact:
        try:
            data = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            return Artifact(manifest=ArtifactManifest.model_validate(data), path=path)
        except (OSError, ValueError) as e:
            raise ArtifactError(f"unreadable manifest in {path}: {e}") from e

    def list(self, kind: ArtifactKind | None = None) -> list[Artifact]:
        """Complete artifacts, newest first. Staging folders and broken manifests are skipped."""
        found = []
        for p in self.root.iterdir():
            if p.name.startswith(".") or not (p / MANIFEST).is_file():
                continue
            try:
                art = self._load(p)
            except ArtifactError:
                continue
            if kind is None or art.manifest.kind == kind:
                found.append(art)
        return sorted(found, key=lambda a: a.manifest.created_at, reverse=True)

    def lineage(self, art_id: str) -> list[ArtifactManifest]:
        """The artifact and all its ancestors that are artifacts, nearest first."""
        seen: list[ArtifactManifest] = []
        queue = [art_id]
        while queue:
            current = queue.pop(0)
            if any(m.id == current for m in seen) or not self.exists(current):
                continue
            manifest = self.get(current).manifest
            seen.append(manifest)
            queue.extend(manifest.parents)
        return seen


class _Draft:
    """An artifact being written: fill `path`, set `metrics` / `extra`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metrics: dict[str, float] = {}
        self.extra: dict[str, Any] = {}
        self.artifact: Artifact | None = None
