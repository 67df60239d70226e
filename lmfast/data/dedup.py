"""Across shards: exact dedup on the hashes, near dedup by LSH over the MinHash signatures,
then the kept records written out and the audit tables (`duplicates`, `drops`) beside them.

Only the hashes, signatures and ids of documents that passed the filters are held in memory
(about num_perm x 4 bytes plus the id per document); record text streams shard by shard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HIST_EDGES = [0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]
NearFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class DedupResult:
    keep: np.ndarray  # over documents that passed the filters, in shard order
    target: np.ndarray  # each removed document's kept counterpart (-1: kept)
    kind: np.ndarray  # 0 kept, 1 exact duplicate, 2 near duplicate
    similarity: np.ndarray  # estimated Jaccard with the target (1 for exact)
    exact_dups: int
    near_dups: int
    clusters: int


def shard_arrays(work: Path, shards: int, key: str) -> np.ndarray:
    parts = []
    for s in range(shards):
        with np.load(work / f"shard-{s:05d}.npz") as z:
            parts.append(z[key])
    return np.concatenate(parts) if parts else np.zeros(0)


def deduplicate(
    work: Path,
    shards: int,
    *,
    exact: bool,
    near: bool,
    num_perm: int,
    near_fn: NearFn,
) -> DedupResult:
    """`near_fn` maps the signatures of exact-unique documents to each one's representative
    (the local LSH in Rust, or the Ray group-by on band keys: the same answer)."""
    hashes = shard_arrays(work, shards, "exact").astype(np.uint64)
    n = len(hashes)
    target = np.full(n, -1, dtype=np.int64)
    kind = np.zeros(n, dtype=np.int8)
    similarity = np.ones(n, dtype=np.float32)
    exact_dups = near_dups = clusters = 0
    if exact and n:
        _, first, inverse, counts = np.unique(
            hashes, return_index=True, return_inverse=True, return_counts=True
        )
        rep = first[inverse]
        dup = rep != np.arange(n)
        target[dup] = rep[dup]
        kind[dup] = 1
        exact_dups = int(dup.sum())
        clusters += int((counts > 1).sum())
    if near and n and num_perm:
        sigs = shard_arrays(work, shards, "signatures").reshape(n, num_perm)
        idx = np.flatnonzero(kind == 0)
        reps = np.asarray(near_fn(np.ascontiguousarray(sigs[idx], dtype="<u4")))
        own = reps == np.arange(len(idx))
        removed, kept_as = idx[~own], idx[reps[~own]]
        target[removed] = kept_as
        kind[removed] = 2
        similarity[removed] = (sigs[removed] == sigs[kept_as]).mean(axis=1)
        near_dups = len(removed)
        clusters += len(np.unique(reps[~own]))
        # An exact duplicate of a document later removed as a near duplicate points on to
        # the document that was kept.
        hop = np.flatnonzero((kind == 1) & (kind[np.maximum(target, 0)] == 2))
        via = target[hop]
        target[hop] = target[via]
        similarity[hop] = similarity[via]
    return DedupResult(
        keep=kind == 0,
        target=target,
        kind=kind,
        similarity=similarity,
        exact_dups=exact_dups,
        near_dups=near_dups,
        clusters=clusters,
    )


def write_kept(
    work: Path, shards: int, result: DedupResult, out: Path
) -> tuple[int, int, dict[str, int]]:
    """Stream the kept records into `out`; returns (documents, characters, histogram)."""
    keep = result.keep
    chars = shard_arrays(work, shards, "chars").astype(np.int64)
    pos = 0
    with open(out, "wb") as f:
        for s in range(shards):
            with open(work / f"shard-{s:05d}.jsonl", "rb") as shard:
                for line in shard:
                    if not line.strip():
                        continue
                    if keep[pos]:
                        f.write(line if line.endswith(b"\n") else line + b"\n")
                    pos += 1
    labels = [f"<{e}" for e in HIST_EDGES[1:]] + [f">={HIST_EDGES[-1]}"]
    kept_chars = chars[keep]
    buckets = np.searchsorted(HIST_EDGES[1:], kept_chars, side="right")
    counts = np.bincount(buckets, minlength=len(labels))
    hist = {label: int(c) for label, c in zip(labels, counts, strict=True)}
    return int(keep.sum()), int(kept_chars.sum()), hist


def write_tables(work: Path, shards: int, result: DedupResult, folder: Path) -> dict[str, int]:
    """`duplicates.jsonl` (each removed duplicate -> the document kept in its cluster, with
    the estimated Jaccard) and `drops.jsonl` (each filtered document -> its reason)."""
    import orjson

    ids = shard_arrays(work, shards, "kept_ids").astype(str)
    src = shard_arrays(work, shards, "kept_src").astype(str)
    removed = np.flatnonzero(result.kind > 0)
    with open(folder / "duplicates.jsonl", "wb") as f:
        for i in removed.tolist():
            t = int(result.target[i])
            row = {
                "id": ids[i],
                "source": src[i],
                "kind": "exact" if result.kind[i] == 1 else "near",
                "kept_id": ids[t],
                "kept_source": src[t],
                "similarity": round(float(result.similarity[i]), 3),
            }
            f.write(orjson.dumps(row) + b"\n")
    drops = 0
    with open(folder / "drops.jsonl", "wb") as f:
        for s in range(shards):  # shard by shard: drops can outnumber kept documents
            with np.load(work / f"shard-{s:05d}.npz") as z:
                cols = [z[k].astype(str).tolist() for k in ("drop_ids", "drop_src", "drop_reasons")]
                rows = zip(*cols, strict=True)
                for rid, source, reason in rows:
                    f.write(orjson.dumps({"id": rid, "source": source, "reason": reason}) + b"\n")
                    drops += 1
    return {"duplicates": len(removed), "drops": drops}
