"""Training data: prep_dataset's packed token files, memory-mapped, as torch batches.

Raw files (and `datasets` objects) go through prep_dataset itself (readers, chat rendering,
loss masks, packing), so fine-tuning trains on exactly what `lmfast prep` would write with
the same filter preset (`data.filters`). Rows
carry position ids that restart at each document: with no attention mask, transformers
builds a block-diagonal causal mask from them, so packed documents never attend to each
other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmfast.artifacts import ArtifactStore
from lmfast.config import LMFastConfig
from lmfast.data.readers import DataError
from lmfast.data.tokenize import IGNORE, TokenArrays, open_tokens, tokenizer_fingerprint
from lmfast.defaults import DataKind, DataShape, LengthProfile
from lmfast.progress import ProgressFn, no_progress


@dataclass
class TrainingData:
    """Token rows for training and evaluation, plus where they came from."""

    arrays: TokenArrays
    train_rows: np.ndarray
    eval_rows: np.ndarray
    dataset_artifact: str
    dataset_version: str | None
    loss_on_all_tokens: bool
    prepared_here: bool = True  # False: a tokenized dataset artifact, its rows fixed
    warnings: list[str] = field(default_factory=list)  # what prep found in the data

    @property
    def seq_len(self) -> int:
        return int(self.arrays.input_ids.shape[1])

    def real_tokens(self, rows: np.ndarray) -> int:
        return int(self.arrays.lengths[rows].sum())


def _token_folder(artifact_path: Path) -> Path | None:
    folder = artifact_path / "tokens"
    return folder if (folder / "index.json").is_file() else None


def prepare(
    config: LMFastConfig,
    tokenizer: Any,
    context_length: int,
    progress: ProgressFn = no_progress,
    dataset: Any = None,
    store: ArtifactStore | None = None,
    seq_len: int | None = None,
) -> TrainingData:
    """Resolve `data.path` (or `dataset`) to packed, masked token rows of `seq_len` (default:
    the recipe's) and check them against the model's tokenizer and context."""
    from lmfast.data import PrepRequest, prep_dataset
    from lmfast.data.settings import FilterSettings

    store = store or ArtifactStore()
    source = config.data.path
    if dataset is None and not source:
        raise DataError("data.path: give a dataset artifact id, a file, a folder or a glob")
    seq_len = seq_len or config.training.max_seq_length or context_length
    artifact = None
    prepared_here = False
    warnings: list[str] = []
    if dataset is None and source and store.exists(source):
        artifact = store.get(source)
        if artifact.manifest.kind != "dataset":
            raise DataError(
                f"data.path: {source!r} is a {artifact.manifest.kind} artifact, not a dataset"
            )
    if artifact is None or _token_folder(artifact.path) is None:
        # Raw data (or an untokenized dataset artifact): prep it with this model's tokenizer.
        inputs = [str(artifact.path / "data.jsonl")] if artifact else [source] if source else []
        request = PrepRequest(
            inputs=inputs,
            format=config.data.format,
            filters=FilterSettings.preset(training_filters(config)),
            # A prepared dataset keeps each record's own text field.
            text_field=config.data.text_field or _kept_text_field(artifact),
            tokenizer=config.tokenizer_reference,
            seq_len=seq_len,
            pack=config.training.packing,
        )
        progress(0, None, f"preparing {source or 'the dataset'} (prep_dataset)")
        result = prep_dataset(request, dataset=dataset, store=store)
        artifact = store.get(result.artifact_id)
        prepared_here = True
        warnings = prep_warnings(result.report)
    folder = _token_folder(artifact.path)
    assert folder is not None
    arrays = open_tokens(folder)
    index = arrays.index

    fingerprint = tokenizer_fingerprint(tokenizer)
    if index.get("tokenizer_fingerprint") != fingerprint:
        raise DataError(
            f"data.path: dataset {artifact.id} was tokenized with {index.get('tokenizer')!r}, "
            f"whose vocabulary differs from {config.tokenizer_reference!r}'s; prepare it again "
            f"with --tokenizer {config.tokenizer_reference}"
        )
    n_rows = int(arrays.input_ids.shape[0])
    if n_rows == 0:
        raise DataError(f"data.path: dataset {artifact.id} holds no token rows")
    loss_on_all = config.trains_every_token
    trainable = index["real_tokens"] if loss_on_all else index["trainable_tokens"]
    if trainable == 0:
        raise DataError(
            f"data.path: every label in dataset {artifact.id} is masked (no assistant answers "
            "to learn); use method 'cpt' to train on every token, or check the data's roles"
        )
    if arrays.input_ids.shape[1] > context_length:  # a dataset prepared for a longer model
        raise DataError(
            f"data.path: dataset {artifact.id} has rows of {arrays.input_ids.shape[1]} tokens, "
            f"past the model's context of {context_length}; prepare it with --seq-len "
            f"{context_length} or less"
        )

    rng = np.random.default_rng(config.training.seed)
    order = rng.permutation(n_rows)
    n_eval = round(n_rows * config.data.validation_split) if config.data.validation_split else 0
    if config.data.validation_split and n_eval == 0:
        n_eval = 1
    if n_eval >= n_rows:
        raise DataError(
            f"data.validation_split={config.data.validation_split} leaves no training rows out "
            f"of {n_rows}; lower it or add data"
        )
    train_rows, eval_rows = np.sort(order[n_eval:]), np.sort(order[:n_eval])
    if config.data.max_samples:
        train_rows = train_rows[: config.data.max_samples]
    return TrainingData(
        arrays=arrays,
        train_rows=train_rows,
        eval_rows=eval_rows,
        dataset_artifact=artifact.id,
        dataset_version=artifact.manifest.dataset_version,
        loss_on_all_tokens=loss_on_all,
        prepared_here=prepared_here,
        warnings=warnings,
    )


def training_filters(config: LMFastConfig) -> str:
    """The prep preset training data goes through. Continued pretraining and fine-tuning learn
    the user's own corpus or chats, so only length and bad words apply: the repetition rules
    made for web boilerplate dropped 87 % of a documentation corpus (pydoc pages repeat their
    `|` lines). Pretraining from scratch keeps prep's own default for raw text."""
    if config.data.filters != "auto":
        return config.data.filters
    return "document" if config.training.method == "pretrain" else "minimal"


def prep_warnings(report: Any) -> list[str]:
    """What prep found that the person training should hear before the run: most of the
    data dropped, documents cut at the row length, lines it could not read and skipped."""
    from lmfast.data.prep import DROP_HINT

    hint = (
        "in a recipe, data.filters=minimal keeps nearly everything and data.filters=off "
        "keeps all of it"
    )
    warnings = [f"data: {w.replace(DROP_HINT, hint)}" for w in report.warnings]
    if report.read_issues:
        counts = ", ".join(f"{n} {kind}" for kind, n in report.read_issues.items())
        first = f" (first: {report.issue_examples[0]})" if report.issue_examples else ""
        warnings.append(f"data: skipped what could not be read: {counts}{first}")
    return warnings


class RowDataset:
    """A torch map-style dataset over some rows of the memory-mapped token files."""

    def __init__(self, data: TrainingData, rows: np.ndarray) -> None:
        self.arrays, self.rows, self.all_tokens = data.arrays, rows, data.loss_on_all_tokens

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = int(self.rows[i])
        a = self.arrays
        n = int(a.lengths[r])
        ids = np.asarray(a.input_ids[r], dtype=np.int64)
        if self.all_tokens:
            labels = np.full_like(ids, IGNORE)
            labels[:n] = ids[:n]
        else:
            labels = np.asarray(a.labels[r], dtype=np.int64)
        return {
            "input_ids": ids,
            "labels": labels,
            "position_ids": np.asarray(a.positions[r], dtype=np.int64),
            "length": n,
            "row": r,  # offline distillation finds this row's stored teacher logits by it
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack rows, trimmed to the longest real length in the batch (padding only costs
    compute; rows are padded at the end, so trimming never cuts real tokens)."""
    import torch

    width = max(int(it["length"]) for it in items)
    batch = {
        key: torch.from_numpy(np.stack([it[key][:width] for it in items]))
        for key in ("input_ids", "labels", "position_ids")
    }
    if "row" in items[0]:
        batch["row"] = torch.tensor([int(it["row"]) for it in items])
    return batch


class CountingCollator:
    """`collate` that also counts the real (non-padding) tokens it has batched."""

    def __init__(self) -> None:
        self.real_tokens = 0

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        self.real_tokens += sum(int(it["length"]) for it in items)
        return collate(items)


@dataclass
class Feed:
    """What the trainer reads, whichever way the data came: prepared or streamed."""

    train: Any
    eval: Any
    collator: Any
    dataset_artifact: str
    dataset_version: str | None
    seq_len: int
    tokens_per_epoch: int | None  # unknown for a stream
    tokens_per_row: float  # mean real tokens per row (prepared data)
    tokens_seen: Any = None  # exact real-token count (streamed data)
    rows: int | None = None  # training rows per epoch (prepared data)
    lengths: LengthProfile | None = None  # tokens per document before packing
    kind: DataKind = "chat"
    seq_fixed: bool = False  # a tokenized dataset artifact: its rows cannot be re-cut
    labelled_share: float = 1.0  # tokens with a loss / all real tokens (sizes the logits)
    warnings: list[str] = field(default_factory=list)  # what prep found in the data

    def shape(self) -> DataShape | None:
        """What the plan derives batch and epochs from; None for a stream."""
        if self.rows is None or self.lengths is None or not self.tokens_per_epoch:
            return None
        return DataShape(
            kind=self.kind, lengths=self.lengths, rows=self.rows, tokens=self.tokens_per_epoch
        )


def _lengths(data: TrainingData) -> LengthProfile:
    """The documents' token counts recorded by prep; for a dataset tokenized by an older
    LMFast, read from the rows' positions (documents of packed text are cut at row ends)."""
    recorded = data.arrays.index.get("document_tokens")
    if recorded:
        return LengthProfile(**recorded)
    from lmfast.data.tokenize import length_profile

    positions = np.asarray(data.arrays.positions)
    real = np.arange(positions.shape[1])[None, :] < np.asarray(data.arrays.lengths)[:, None]
    starts = np.flatnonzero((positions == 0)[real])  # document starts among real tokens
    return LengthProfile(**length_profile(np.diff(np.append(starts, int(real.sum())))))


def prepared_feed(
    config: LMFastConfig,
    tokenizer: Any,
    context_length: int,
    progress: ProgressFn = no_progress,
    dataset: Any = None,
    store: ArtifactStore | None = None,
    seq_len: int | None = None,
) -> Feed:
    data = prepare(
        config, tokenizer, context_length, progress, dataset=dataset, store=store, seq_len=seq_len
    )
    tokens = data.real_tokens(data.train_rows)
    return Feed(
        train=RowDataset(data, data.train_rows),
        eval=RowDataset(data, data.eval_rows) if len(data.eval_rows) else None,
        collator=collate,
        dataset_artifact=data.dataset_artifact,
        dataset_version=data.dataset_version,
        seq_len=data.seq_len,
        tokens_per_epoch=tokens,
        tokens_per_row=tokens / max(1, len(data.train_rows)),
        rows=len(data.train_rows),
        lengths=_lengths(data),
        kind="chat" if data.arrays.index.get("chat") else "text",
        seq_fixed=not data.prepared_here,
        labelled_share=1.0 if data.loss_on_all_tokens else index_share(data.arrays.index),
        warnings=data.warnings,
    )


def index_share(index: dict[str, Any]) -> float:
    """The share of a dataset's real tokens that carry a loss."""
    return min(1.0, index["trainable_tokens"] / max(1, index["real_tokens"]))


def check_streaming(config: LMFastConfig) -> None:
    """What a stream cannot do, refused before the tokenizer or model loads."""
    if not config.training.max_steps:
        raise DataError(
            "training.max_steps: a streamed dataset has no known length; set the number of "
            "optimizer steps (data.streaming=true)"
        )
    if config.data.validation_split:
        raise DataError(
            f"data.validation_split={config.data.validation_split}: a held-out split needs a "
            "prepared dataset; with data.streaming=true leave it at 0"
        )


def streaming_feed(config: LMFastConfig, tokenizer: Any, store: ArtifactStore) -> Feed:
    from lmfast.training.streaming import StreamingRows, stream_dataset_artifact

    check_streaming(config)
    assert config.training.max_seq_length is not None  # fine_tune chose it for the stream
    rows = StreamingRows(config, tokenizer, config.training.max_seq_length)
    collator = CountingCollator()
    return Feed(
        train=rows,
        eval=None,
        collator=collator,
        dataset_artifact=stream_dataset_artifact(
            rows, tokenizer, store, config.tokenizer_reference
        ),
        dataset_version=rows.version,
        seq_len=config.training.max_seq_length,
        tokens_per_epoch=None,
        tokens_per_row=float(config.training.max_seq_length),
        tokens_seen=lambda: collator.real_tokens,
    )


def _kept_text_field(artifact: Any) -> str | None:
    """The raw-text field of a prepared dataset's records (None for chat layouts)."""
    report = artifact.manifest.extra.get("report", {}) if artifact is not None else {}
    return report.get("text_field") if report.get("format") == "text" else None
