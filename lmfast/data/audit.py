"""Why a document is, or is not, in a prepared dataset: `lmfast explain ID` (also
`lmfast prep --explain ID`), the MCP tool `explain_document`, `lmfast.explain_document`.

Reads the artifact's audit tables (`drops.jsonl`, `duplicates.jsonl`) and its kept records;
an id is the record's own id field or, for records without one, its `file:line`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore
from lmfast.data.readers import DataError

Status = Literal["kept", "dropped", "duplicate", "not_found"]


class Explanation(BaseModel):
    id: str
    dataset: str
    status: Status
    source: str | None = Field(None, description="file:line the record came from.")
    reason: str | None = Field(None, description="Filter that dropped it.")
    kind: str | None = Field(None, description="exact or near, for a duplicate.")
    kept_id: str | None = Field(None, description="The document kept in its place.")
    kept_source: str | None = None
    similarity: float | None = Field(None, description="Estimated Jaccard with kept_id.")
    line: int | None = Field(None, description="Line of data.jsonl holding a kept record.")


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.exists():
        with open(path, "rb") as f:
            for line in f:
                yield orjson.loads(line)


def latest_dataset(store: ArtifactStore) -> str:
    datasets = store.list(kind="dataset")
    if not datasets:
        raise DataError("dataset: no prepared dataset yet; run lmfast prep first")
    return max(datasets, key=lambda a: a.manifest.created_at).id


def explain_document(
    doc_id: str, dataset: str | None = None, store: ArtifactStore | None = None
) -> Explanation:
    """What prep did with document `doc_id` in `dataset` (default: the newest dataset)."""
    store = store or ArtifactStore()
    ref = dataset or latest_dataset(store)
    art = store.get(ref)
    if art.manifest.kind != "dataset":
        raise DataError(f"dataset: {ref} is a {art.manifest.kind} artifact, not a dataset")
    folder = Path(art.path)
    if not (folder / "drops.jsonl").exists():
        raise DataError(
            f"dataset: {art.id} has no audit tables (prepared by an older LMFast); prepare it again"
        )
    base = {"id": doc_id, "dataset": art.id}
    for row in _rows(folder / "drops.jsonl"):
        if row["id"] == doc_id or row["source"] == doc_id:
            return Explanation(**base, status="dropped", source=row["source"], reason=row["reason"])
    for row in _rows(folder / "duplicates.jsonl"):
        if row["id"] == doc_id or row["source"] == doc_id:
            return Explanation(
                **base,
                status="duplicate",
                source=row["source"],
                kind=row["kind"],
                kept_id=row["kept_id"],
                kept_source=row["kept_source"],
                similarity=row["similarity"],
            )
    with open(folder / "data.jsonl", "rb") as f:
        for n, line in enumerate(f, 1):
            rec = orjson.loads(line)
            src = rec.get("_source") or {}
            source = f"{src.get('file')}:{src.get('line')}" if "line" in src else src.get("file")
            rid = rec.get("id")
            if str(rid) == doc_id or source == doc_id:
                return Explanation(**base, status="kept", source=source, line=n)
    return Explanation(**base, status="not_found")
