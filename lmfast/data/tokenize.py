"""Tokenize for training: chat data through the tokenizer's chat template with loss masks on
everything but the assistant's answers; raw text tokenized in batches (the `tokenizers`
library's Rust encode_batch) and packed into fixed-length sequences with EOS separators.
Output: a memory-mappable token file plus index, and a `datasets`-loadable folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

IGNORE = -100


def load_tokenizer(reference: str) -> Any:
    """A fast tokenizer for any model reference (GGUF files included)."""
    from transformers import AutoTokenizer

    from lmfast.registry import resolve_model

    resolved = resolve_model(reference)
    if resolved.format == "gguf":
        return AutoTokenizer.from_pretrained(
            str(resolved.path.parent), gguf_file=resolved.path.name
        )
    return AutoTokenizer.from_pretrained(str(resolved.path))


def encode_chat(tokenizer: Any, conversation: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids and labels of one conversation; labels are IGNORE except assistant answers.

    Renders growing prefixes of the conversation and tokenizes only what each turn adds, so
    the split between prompt and answer follows the template exactly."""
    ids: list[int] = []
    labels: list[int] = []
    done = ""

    def add(text: str, train: bool) -> None:
        if not text:
            return
        toks = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(toks)
        labels.extend(toks if train else [IGNORE] * len(toks))

    for i, message in enumerate(conversation):
        if message["role"] == "assistant":
            head = tokenizer.apply_chat_template(
                conversation[:i], tokenize=False, add_generation_prompt=True
            )
            full = tokenizer.apply_chat_template(conversation[: i + 1], tokenize=False)
            if not (head.startswith(done) and full.startswith(head)):
                raise ValueError("the chat template does not render conversations as prefixes")
            add(head[len(done) :], False)
            add(full[len(head) :], True)
        else:
            full = tokenizer.apply_chat_template(conversation[: i + 1], tokenize=False)
            if not full.startswith(done):
                raise ValueError("the chat template does not render conversations as prefixes")
            add(full[len(done) :], False)
        done = full
    return ids, labels


def encode_texts(tokenizer: Any, texts: list[str], batch: int = 4096) -> list[list[int]]:
    """Raw texts to ids with the Rust tokenizer's parallel batch encoder."""
    backend = tokenizer.backend_tokenizer
    out: list[list[int]] = []
    for i in range(0, len(texts), batch):
        out.extend(
            # encode_batch_fast skips character offsets, which packing never needs.
            e.ids
            for e in backend.encode_batch_fast(texts[i : i + batch], add_special_tokens=False)
        )
    return out


def pack(
    docs: list[list[int]], eos: int, seq_len: int, labels: list[list[int]] | None = None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Concatenate documents with EOS after each and cut into (n, seq_len) blocks.
    Returns (input_ids, labels or None, tokens dropped from the last partial block)."""
    lengths = np.fromiter((len(d) + 1 for d in docs), dtype=np.int64, count=len(docs))
    total = int(lengths.sum())
    flat = np.empty(total, dtype=np.int32)
    flat_labels = np.empty(total, dtype=np.int32) if labels is not None else None
    pos = 0
    for i, d in enumerate(docs):
        n = len(d)
        flat[pos : pos + n] = d
        flat[pos + n] = eos
        if flat_labels is not None and labels is not None:
            flat_labels[pos : pos + n] = labels[i]
            flat_labels[pos + n] = eos
        pos += n + 1
    n_blocks = total // seq_len
    used = n_blocks * seq_len
    ids = flat[:used].reshape(n_blocks, seq_len)
    lab = flat_labels[:used].reshape(n_blocks, seq_len) if flat_labels is not None else None
    return ids, lab, total - used


def write_tokens(
    out: Path, input_ids: np.ndarray, labels: np.ndarray | None, meta: dict[str, Any]
) -> dict[str, Any]:
    """tokens.bin (+ labels.bin) as raw little-endian int32, index.json, and hf/ (datasets)."""
    from datasets import Dataset

    out.mkdir(parents=True, exist_ok=True)
    input_ids.astype("<i4").tofile(out / "tokens.bin")
    if labels is not None:
        labels.astype("<i4").tofile(out / "labels.bin")
    index = {**meta, "dtype": "int32", "shape": list(input_ids.shape), "labels": labels is not None}
    (out / "index.json").write_text(json.dumps(index, indent=2))
    columns: dict[str, Any] = {"input_ids": input_ids.tolist()}
    if labels is not None:
        columns["labels"] = labels.tolist()
    Dataset.from_dict(columns).save_to_disk(str(out / "hf"))
    return index


def open_tokens(folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Memory-map a token folder written by write_tokens."""
    index = json.loads((folder / "index.json").read_text())
    shape = tuple(index["shape"])
    ids = np.memmap(folder / "tokens.bin", dtype="<i4", mode="r", shape=shape)
    labels = (
        np.memmap(folder / "labels.bin", dtype="<i4", mode="r", shape=shape)
        if index["labels"]
        else None
    )
    return ids, labels
