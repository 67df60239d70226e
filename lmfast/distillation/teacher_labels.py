"""Offline teacher logits: run the teacher once over a prepared dataset and keep its top-k.

The file sits in a `teacher_labels` artifact whose parents are the dataset and the teacher:
    index.json     k, teacher, tokenizer fingerprint, dataset, method, rows, positions, coverage
    ids.npy        [positions, k] token ids (uint16 when the vocabulary fits, else int32)
    logprobs.npy   [positions, k] float16 log-probabilities (temperature 1, full vocabulary)
    offsets.npy    [rows + 1] int64: row r's positions are offsets[r]:offsets[r+1]
Only positions that carry a loss are stored (SFT: the answers), in the order the student's
loss visits them, so a batch's teacher targets are a few slices. Storage is
positions x k x (2 or 4 + 2) bytes: 32 x 4 bytes = 128 bytes per labelled token for
SmolLM2's 49k vocabulary, against 98 KB for its full float16 distribution.

Generation is resumable: rows are written into memory-mapped files under
LMFAST_HOME/work and a marker records the rows done; a rerun continues from it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmfast.artifacts import ArtifactStore, write_atomic
from lmfast.errors import LMFastError
from lmfast.hashing import config_hash
from lmfast.home import lmfast_home
from lmfast.progress import ProgressFn, no_progress
from lmfast.training.loss import IGNORE

FORMAT_VERSION = 1


@dataclass
class TeacherLabels:
    """Stored top-k teacher log-probabilities, memory-mapped."""

    path: Path
    index: dict[str, Any]
    ids: np.ndarray
    logprobs: np.ndarray
    offsets: np.ndarray

    @property
    def k(self) -> int:
        return int(self.index["k"])

    def for_rows(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """(ids, logprobs) of these rows' labelled positions, concatenated in row order."""
        spans = [(int(self.offsets[r]), int(self.offsets[r + 1])) for r in rows]
        ids = np.concatenate([self.ids[a:b] for a, b in spans])
        lps = np.concatenate([self.logprobs[a:b] for a, b in spans])
        return ids, lps


def teacher_dtype(resolved: Any, planned: str) -> str:
    """GGUF teachers keep their packed weights in transformers, whose kernels compute in
    float32: asking for 16-bit only adds a cast around every matmul."""
    return "float32" if resolved.format == "gguf" else planned


def open_teacher_labels(path: Path) -> TeacherLabels:
    index = json.loads((path / "index.json").read_text())
    if index.get("format") != FORMAT_VERSION:
        raise LMFastError(f"{path}: teacher labels of format {index.get('format')}, expected 1")
    return TeacherLabels(
        path=path,
        index=index,
        ids=np.load(path / "ids.npy", mmap_mode="r"),
        logprobs=np.load(path / "logprobs.npy", mmap_mode="r"),
        offsets=np.load(path / "offsets.npy"),
    )


def _row_labels(arrays: Any, r: int, all_tokens: bool) -> np.ndarray:
    """Row r's labels as training sees them (cpt: every real token)."""
    if all_tokens:
        labels = np.full(arrays.input_ids.shape[1], IGNORE, dtype=np.int64)
        n = int(arrays.lengths[r])
        labels[:n] = arrays.input_ids[r][:n]
        return labels
    return np.asarray(arrays.labels[r], dtype=np.int64)


def labelled_counts(arrays: Any, all_tokens: bool, chunk: int = 4096) -> np.ndarray:
    """Positions with a loss, per row (the same rule as training's `label_mask`)."""
    n_rows, width = arrays.input_ids.shape
    counts = np.zeros(n_rows, dtype=np.int64)
    for a in range(0, n_rows, chunk):
        b = min(n_rows, a + chunk)
        if all_tokens:
            labelled = np.arange(1, width)[None, :] < np.asarray(arrays.lengths[a:b])[:, None]
        else:
            labelled = np.asarray(arrays.labels[a:b])[:, 1:] != IGNORE
        counts[a:b] = (labelled & (np.asarray(arrays.positions[a:b])[:, 1:] != 0)).sum(axis=1)
    return counts


def find_teacher_labels(store: ArtifactStore, key: str) -> Any:
    for art in store.list("teacher_labels"):
        if art.manifest.extra.get("key") == key:
            return art
    return None


def generate_teacher_labels(
    teacher: str,
    dataset_artifact: str,
    *,
    k: int = 32,
    method: str = "sft",
    batch_size: int = 8,
    dtype: str = "auto",
    device: str = "cpu",
    store: ArtifactStore | None = None,
    progress: ProgressFn = no_progress,
) -> Any:
    """Run `teacher` over every row of a tokenized dataset artifact and store its top-k
    log-probabilities at the labelled positions; returns the teacher_labels artifact (an
    existing one for the same teacher, dataset, k and method is reused)."""
    import torch

    from lmfast.data.tokenize import open_tokens, tokenizer_fingerprint
    from lmfast.loading import load_transformers
    from lmfast.registry import resolve_model

    store = store or ArtifactStore()
    dataset = store.get(dataset_artifact)
    folder = dataset.path / "tokens"
    if not (folder / "index.json").is_file():
        raise LMFastError(
            f"dataset {dataset_artifact} is not tokenized; prepare it with a tokenizer"
        )
    resolved = resolve_model(teacher, store=store)
    key = config_hash(
        {"teacher": str(resolved.path), "dataset": dataset.id, "k": k, "method": method}
    )
    found = find_teacher_labels(store, key)
    if found is not None:
        progress(1, 1, f"reusing stored teacher logits {found.id}")
        return found
    arrays = open_tokens(folder)

    model, tokenizer = load_transformers(
        resolved, dtype=teacher_dtype(resolved, dtype), device=device
    )
    fingerprint = tokenizer_fingerprint(tokenizer)
    if arrays.index.get("tokenizer_fingerprint") != fingerprint:
        raise LMFastError(
            f"teacher {teacher!r} has a different vocabulary from the tokenizer of dataset "
            f"{dataset.id} ({arrays.index.get('tokenizer')!r}); distillation needs one vocabulary"
        )
    model.eval()
    all_tokens = method == "cpt"
    counts = labelled_counts(arrays, all_tokens)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total, rows = int(offsets[-1]), len(counts)
    vocab = int(model.get_output_embeddings().weight.shape[0])
    id_dtype = np.uint16 if vocab <= 65536 else np.int32

    work = lmfast_home() / "work" / f"teacher-{key[:20]}"
    work.mkdir(parents=True, exist_ok=True)
    marker = work / "rows_done"
    fresh = not marker.is_file()
    open_mode = "w+" if fresh else "r+"
    ids = np.lib.format.open_memmap(work / "ids.npy", open_mode, id_dtype, (total, k))
    lps = np.lib.format.open_memmap(work / "logprobs.npy", open_mode, np.float16, (total, k))
    done = 0 if fresh else int(marker.read_text())
    coverage = 0.0 if fresh else float(json.loads((work / "coverage").read_text()))
    progress(done, rows, f"teacher top-{k} logits for {rows} rows ({total:,} positions)")
    with torch.inference_mode():
        for start in range(done, rows, batch_size):
            stop = min(rows, start + batch_size)
            batch = _batch(arrays, range(start, stop), all_tokens)
            hidden, _, head = _labelled(model, batch)
            logprobs = torch.log_softmax(head(hidden).float(), dim=-1)
            top = logprobs.topk(k, dim=-1)
            a, b = int(offsets[start]), int(offsets[stop])
            ids[a:b] = top.indices.numpy().astype(id_dtype)
            lps[a:b] = top.values.numpy().astype(np.float16)
            coverage += float(top.values.exp().sum())
            ids.flush()
            lps.flush()
            write_atomic(work / "coverage", json.dumps(coverage))
            write_atomic(marker, str(stop))
            progress(stop, rows, f"teacher logits: {stop}/{rows} rows")
    del ids, lps
    index = {
        "format": FORMAT_VERSION,
        "k": k,
        "teacher": teacher,
        "teacher_path": str(resolved.path),
        "tokenizer_fingerprint": fingerprint,
        "dataset": dataset.id,
        "method": method,
        "rows": rows,
        "positions": total,
        "vocab_size": vocab,
        "id_dtype": np.dtype(id_dtype).name,
        # Teacher probability mass inside the stored top-k, averaged over positions.
        "coverage": round(coverage / max(1, total), 4),
    }
    with store.create(
        "teacher_labels",
        name=f"{resolved.name} top-{k} on {dataset.id}",
        parents=[dataset.id, str(resolved.path)],
        config={"teacher": teacher, "k": k, "method": method},
        dataset_version=dataset.manifest.dataset_version,
    ) as draft:
        for name in ("ids.npy", "logprobs.npy"):
            shutil.move(str(work / name), draft.path / name)
        np.save(draft.path / "offsets.npy", offsets)
        (draft.path / "index.json").write_text(json.dumps(index, indent=2))
        size = sum(f.stat().st_size for f in draft.path.iterdir())
        draft.metrics = {"bytes": size, "positions": total, "coverage": index["coverage"]}
        draft.extra = {"key": key, **index}
    shutil.rmtree(work, ignore_errors=True)
    assert draft.artifact is not None
    return draft.artifact


def _batch(arrays: Any, rows: range, all_tokens: bool) -> dict[str, Any]:
    import torch

    width = max(int(arrays.lengths[r]) for r in rows) or 1
    stack = lambda xs: torch.from_numpy(np.stack(xs)[:, :width].astype(np.int64))  # noqa: E731
    return {
        "input_ids": stack([arrays.input_ids[r] for r in rows]),
        "labels": stack([_row_labels(arrays, r, all_tokens) for r in rows]),
        "position_ids": stack([arrays.positions[r] for r in rows]),
    }


def _labelled(model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
    from lmfast.training.loss import labelled_hidden

    found = labelled_hidden(model, batch)
    if found is None:
        raise LMFastError(
            f"{type(model).__name__}: distillation needs a decoder with a plain LM head "
            "(no logit soft-capping or scaling)"
        )
    return found
