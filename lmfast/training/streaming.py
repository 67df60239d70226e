"""Streaming training data: corpora larger than memory or disk budget, tokenized on the fly.

Records come from prep_dataset's own readers and chat rendering (`read_records`,
`to_conversation`, `encode_chat`), through a Hugging Face `datasets` IterableDataset per
source for the shuffle buffer, interleaved with `interleave_datasets` by the sources'
weights (a source that runs out starts over until every source has been seen once; then the
next epoch reshuffles). Rows are packed greedily as they arrive, with position ids restarting
at each document, exactly like the prepared path. Nothing is stored but a small dataset
artifact naming the sources, so the run's lineage stays one query.

The stream is deterministic for a seed, so a resumed run replays it to the same position
(transformers skips the batches already trained).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch

from lmfast.artifacts import ArtifactStore
from lmfast.config import LMFastConfig
from lmfast.data.fields import Format, detect_format, record_text, to_conversation
from lmfast.data.readers import DataError, ReadIssues, expand_inputs, read_records
from lmfast.data.tokenize import IGNORE, encode_chat, pad_id, tokenizer_fingerprint
from lmfast.hashing import config_hash


def _sources(config: LMFastConfig) -> list[tuple[str, float]]:
    data = config.data
    if data.sources:
        return [(s.path, s.weight) for s in data.sources]
    if data.path:
        return [(data.path, 1.0)]
    raise DataError("data.sources: streaming needs data.path or data.sources (files or folders)")


def _version(files: list[list[Path]], weights: list[float], config: LMFastConfig) -> str:
    stats = [[(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in fs] for fs in files]
    d = config.data
    return config_hash(
        {"files": stats, "weights": weights, "format": d.format, "field": d.text_field}
    )


class StreamingRows(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """A torch IterableDataset of packed rows (`input_ids`, `labels`, `position_ids`,
    `length`) built while training reads them."""

    def __init__(self, config: LMFastConfig, tokenizer: Any, seq_len: int) -> None:
        import datasets

        self.config, self.tokenizer, self.seq_len = config, tokenizer, seq_len
        self.all_tokens = config.trains_every_token
        self.pad, self.eos = pad_id(tokenizer), int(tokenizer.eos_token_id)
        self.epoch = 0
        sources = _sources(config)
        self.files = [_source_files(i, path) for i, (path, _) in enumerate(sources)]
        self.weights = [w / sum(w for _, w in sources) for _, w in sources]
        # Each source keeps its own layout (a chat set mixed with raw text, say).
        self.layouts = [
            self._layout(i, path, fs)
            for i, ((path, _), fs) in enumerate(zip(sources, self.files, strict=True))
        ]
        streams = [
            datasets.IterableDataset.from_generator(
                _records, gen_kwargs={"files": [str(f) for f in fs], "source": [i] * len(fs)}
            ).shuffle(seed=config.training.seed, buffer_size=config.data.shuffle_buffer)
            for i, fs in enumerate(self.files)
        ]
        self.stream = (
            streams[0]
            if len(streams) == 1
            else datasets.interleave_datasets(
                streams,
                probabilities=self.weights,
                seed=config.training.seed,
                stopping_strategy="all_exhausted",
            )
        )
        self.version = _version(self.files, self.weights, config)

    def _layout(self, i: int, path: str, files: list[Path]) -> tuple[Format, str | None]:
        first = next(read_records(files, ReadIssues()), None)
        if first is None:
            raise DataError(f"data.sources[{i}]: no records in {path}")
        d = self.config.data
        try:
            fmt, field = (
                (d.format, d.text_field)
                if d.format != "auto"
                else detect_format(first, d.text_field)
            )
        except DataError as e:
            raise DataError(f"data.sources[{i}] ({path}): {e}") from None
        if fmt == "text" and not self.all_tokens:
            raise DataError(
                f"data.sources[{i}]: {path} holds raw text, which has no answers to learn "
                "with method 'sft'; use training.method=cpt"
            )
        return fmt, field

    # torch's DataLoader needs only __iter__; accelerate calls set_epoch between epochs.
    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.stream.set_epoch(epoch)

    def _documents(self) -> Iterator[tuple[list[int], list[int]]]:
        for item in self.stream:
            record = orjson.loads(item["json"])
            fmt, field = self.layouts[item["source"]]
            conversation = to_conversation(record, fmt)
            if conversation is not None:
                try:
                    ids, labels = encode_chat(self.tokenizer, conversation)
                except (ValueError, KeyError, TypeError):
                    continue  # malformed turns: prep_dataset drops them the same way
                if self.all_tokens:
                    labels = list(ids)
            else:
                text = record_text(record, fmt, field)
                if not text:
                    continue
                ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.eos]
                labels = list(ids)
            if any(t != IGNORE for t in labels):
                yield ids, labels

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Greedy packing: documents fill a row in arrival order; one that does not fit
        starts the next row; one longer than a row is cut to it."""
        n = self.seq_len
        ids, labels, positions = [], [], []  # type: ignore[var-annotated]
        for doc, lab in self._documents():
            doc, lab = doc[:n], lab[:n]
            if len(ids) + len(doc) > n:
                yield self._row(ids, labels, positions)
                ids, labels, positions = [], [], []
            ids += doc
            labels += lab
            positions += range(len(doc))
        if ids:
            yield self._row(ids, labels, positions)

    def _row(self, ids: list[int], labels: list[int], positions: list[int]) -> dict[str, Any]:
        n, length = self.seq_len, len(ids)
        row_ids = np.full(n, self.pad, dtype=np.int64)
        row_labels = np.full(n, IGNORE, dtype=np.int64)
        row_pos = np.zeros(n, dtype=np.int64)
        row_ids[:length], row_labels[:length], row_pos[:length] = ids, labels, positions
        row_pos[length:] = np.arange(n - length)  # padding is its own document
        return {
            "input_ids": row_ids,
            "labels": row_labels,
            "position_ids": row_pos,
            "length": length,
        }


def _source_files(i: int, path: str) -> list[Path]:
    try:
        return expand_inputs([path])
    except DataError as e:  # prep's readers say `inputs:`; here it is a source
        raise DataError(f"data.sources[{i}]: {e}".replace("inputs: ", "")) from None


def _records(files: list[str], source: list[int]) -> Iterator[dict[str, Any]]:
    # One JSON column holding the whole record: sources with different fields interleave.
    # `source` is a list so `datasets` shards it with the files.
    for path, i in zip(files, source, strict=True):
        for record in read_records([Path(path)], ReadIssues()):
            yield {"json": orjson.dumps(record).decode(), "source": i}


def stream_dataset_artifact(
    rows: StreamingRows, tokenizer: Any, store: ArtifactStore, reference: str
) -> str:
    """A dataset artifact that names the streamed sources (no tokens are stored), so the
    adapter's parents still lead back to the data."""
    version = rows.version
    for art in store.list(kind="dataset"):
        if art.manifest.dataset_version == version:
            return art.id
    with store.create(
        "dataset",
        name="stream:" + "+".join(Path(p).name for p, _ in _sources(rows.config)),
        config={
            "sources": [
                {"path": p, "weight": w, "files": [str(f) for f in fs]}
                for (p, _), w, fs in zip(
                    _sources(rows.config), rows.weights, rows.files, strict=True
                )
            ],
            "streaming": True,
            "tokenizer": reference,
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        },
        dataset_version=version,
    ) as draft:
        (draft.path / "sources.txt").write_text(
            "\n".join(str(f) for fs in rows.files for f in fs) + "\n"
        )
    assert draft.artifact is not None
    return draft.artifact.id
