"""Tokenize for training.

Chat data goes through the tokenizer's chat template with loss only on the assistant's
answers, each answer trained up to and including exactly one end-of-turn token. Whole
conversations are packed best-fit (a conversation is cut only when it alone exceeds
`seq_len`), with no separator since the template already ends each turn. Raw text is encoded
by fast_tokenizer.py (LMFast's Rust BPE, or `tokenizers`), joined with EOS and cut into
blocks, as in pretraining.

Every row carries position ids that restart at each document, so trainers can keep
documents from attending to each other (position-id packing). Padding is the pad token with
labels masked; the padded tail of a row is its own "document" and is never attended from
real tokens. Output: memory-mappable `tokens.bin`, `labels.bin`, `positions.bin`,
`lengths.bin` (real tokens per row) with `index.json`, plus a `datasets` folder `hf/`.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IGNORE = -100
# End-of-turn markers of common chat templates, besides the tokenizer's own EOS.
_EOT_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>")


def load_tokenizer(reference: str) -> Any:
    """A fast tokenizer for any model reference (GGUF files included) or tokenizer artifact."""
    from transformers import AutoTokenizer

    from lmfast.artifacts import ArtifactStore
    from lmfast.registry import resolve_model

    store = ArtifactStore()
    if store.exists(reference) and store.get(reference).manifest.kind == "tokenizer":
        return AutoTokenizer.from_pretrained(str(store.get(reference).path))
    resolved = resolve_model(reference)
    if resolved.format == "gguf":
        return _gguf_tokenizer(resolved.path)
    if resolved.format == "adapter" and not (resolved.path / "tokenizer_config.json").is_file():
        base = json.loads((resolved.path / "adapter_config.json").read_text())
        return load_tokenizer(base["base_model_name_or_path"])
    return AutoTokenizer.from_pretrained(str(resolved.path))


def _gguf_tokenizer(path: Path) -> Any:
    """The tokenizer inside a GGUF file. transformers rebuilds it from the GGUF vocabulary in
    Python (about 5 s for SmolLM2), so the result is cached under LMFAST_HOME, keyed by the
    file's identity and the transformers version, and loads in about 0.1 s afterwards."""
    import transformers
    from transformers import AutoTokenizer

    from lmfast.hashing import config_hash
    from lmfast.home import lmfast_home

    st = path.stat()
    key = config_hash([str(path.resolve()), st.st_size, st.st_mtime_ns, transformers.__version__])
    cached = lmfast_home() / "cache" / "gguf-tokenizers" / key[:16]
    if (cached / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(cached))
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    staging = cached.with_name(f".{cached.name}-{os.getpid()}")
    try:
        tok.save_pretrained(str(staging))
        os.replace(staging, cached)  # atomic: readers see a whole folder or none
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process won the race, or no room
    return tok


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the vocabulary: datasets and models must agree on it token for token."""
    from lmfast.hashing import config_hash

    vocab = tokenizer.get_vocab()
    return config_hash(sorted(vocab.items(), key=lambda kv: kv[1]))[:16]


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    # One lookup per token: get_vocab() builds the whole vocabulary (43 ms for SmolLM2's
    # 49k), which per conversation was most of chat prep's time.
    for token in _EOT_TOKENS:
        i = tokenizer.convert_tokens_to_ids(token)
        # an unknown token comes back as the unknown token's id, or None
        if isinstance(i, int) and tokenizer.convert_ids_to_tokens(i) == token:
            ids.add(i)
    return ids


def pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else tokenizer.eos_token_id)


def encode_chat(tokenizer: Any, conversation: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Token ids and labels of one conversation; labels are IGNORE except assistant answers.

    Renders growing prefixes of the conversation and tokenizes only what each turn adds, so
    the split between prompt and answer follows the template exactly. Each answer is trained
    through its first end-of-turn token; what the template puts after it (a newline) is not
    trained, and a template with no end-of-turn token gets EOS appended to the answer."""
    ids: list[int] = []
    labels: list[int] = []
    done = ""
    eot = end_of_turn_ids(tokenizer)

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    for i, message in enumerate(conversation):
        if message["role"] == "assistant":
            head = tokenizer.apply_chat_template(
                conversation[:i], tokenize=False, add_generation_prompt=True
            )
            full = tokenizer.apply_chat_template(conversation[: i + 1], tokenize=False)
            if not (head.startswith(done) and full.startswith(head)):
                raise ValueError("the chat template does not render conversations as prefixes")
            prompt = encode(head[len(done) :])
            ids += prompt
            labels += [IGNORE] * len(prompt)
            answer = encode(full[len(head) :])
            stop = next((j for j, t in enumerate(answer) if t in eot), None)
            if stop is None:  # the template does not end turns: teach the model to stop
                answer.append(tokenizer.eos_token_id)
                stop = len(answer) - 1
            ids += answer
            labels += answer[: stop + 1] + [IGNORE] * (len(answer) - stop - 1)
        else:
            full = tokenizer.apply_chat_template(conversation[: i + 1], tokenize=False)
            if not full.startswith(done):
                raise ValueError("the chat template does not render conversations as prefixes")
            part = encode(full[len(done) :])
            ids += part
            labels += [IGNORE] * len(part)
        done = full
    return ids, labels


@dataclass
class Packed:
    """Rows of `seq_len` tokens ready for training, and what packing had to do."""

    input_ids: np.ndarray  # (n, seq_len) int32
    labels: np.ndarray  # (n, seq_len) int32, IGNORE on prompts and padding
    positions: np.ndarray  # (n, seq_len) int32, restarting at each document
    lengths: np.ndarray  # (n,) int32, real (non-padding) tokens per row
    documents_truncated: int = 0
    tokens_truncated: int = 0

    @property
    def padding_tokens(self) -> int:
        return int(self.input_ids.size - self.lengths.sum())


def _rows(n: int, seq_len: int, pad: int) -> tuple[np.ndarray, ...]:
    return (
        np.full((n, seq_len), pad, dtype=np.int32),
        np.full((n, seq_len), IGNORE, dtype=np.int32),
        np.zeros((n, seq_len), dtype=np.int32),
        np.zeros(n, dtype=np.int32),
    )


def _pad_positions(positions: np.ndarray, lengths: np.ndarray) -> None:
    """The padded tail of each row counts as its own document (positions from 0)."""
    seq_len = positions.shape[1]
    for r, n in enumerate(lengths):
        if n < seq_len:
            positions[r, n:] = np.arange(seq_len - n)


def pack_whole(docs: list[list[int]], labels: list[list[int]], seq_len: int, pad: int) -> Packed:
    """Best-fit-decreasing packing of whole documents (conversations): each goes into the
    fullest row it fits in. A document longer than `seq_len` is cut (and counted)."""
    order = sorted(range(len(docs)), key=lambda i: -len(docs[i]))
    free: list[tuple[int, int]] = []  # (space left, row), sorted: best fit by bisection
    rows: list[list[int]] = []
    truncated = cut = 0
    for i in order:
        n = len(docs[i])
        if n > seq_len:
            truncated, cut = truncated + 1, cut + n - seq_len
            n = seq_len
        if n == 0:
            continue
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            space, row = free.pop(k)
        else:
            space, row = seq_len, len(rows)
            rows.append([])
        rows[row].append(i)
        if space - n > 0:
            bisect.insort(free, (space - n, row))
    ids, lab, pos, lengths = _rows(len(rows), seq_len, pad)
    for r, members in enumerate(rows):
        at = 0
        for i in sorted(members):  # dataset order inside a row
            d = docs[i][: seq_len - at] if len(docs[i]) > seq_len else docs[i]
            n = len(d)
            ids[r, at : at + n] = d
            lab[r, at : at + n] = labels[i][:n]
            pos[r, at : at + n] = np.arange(n)
            at += n
        lengths[r] = at
    _pad_positions(pos, lengths)
    return Packed(ids, lab, pos, lengths, truncated, cut)


def pack_flat(ids: np.ndarray, lengths: np.ndarray, eos: int, seq_len: int, pad: int) -> Packed:
    """Pretraining-style packing of raw text, vectorized over all documents' ids in one array
    and their token counts: documents joined with EOS (trained on) and cut into rows;
    positions restart at each document and each row; the last row is padded."""
    lengths = lengths.astype(np.int64)
    with_eos = lengths + 1
    total = int(with_eos.sum())
    starts = np.cumsum(with_eos) - with_eos  # where each document begins in the stream
    eos_at = starts + lengths
    flat = np.empty(total, dtype=np.int32)
    keep = np.ones(total, dtype=bool)
    keep[eos_at] = False
    flat[keep] = ids
    flat[eos_at] = eos
    # Position within the document: index minus the start of the document it belongs to.
    flat_pos = (np.arange(total) - np.repeat(starts, with_eos)).astype(np.int32)
    n_rows = -(-total // seq_len)
    ids, lab, pos, lengths = _rows(n_rows, seq_len, pad)
    ids.reshape(-1)[:total] = flat
    lab.reshape(-1)[:total] = flat
    pos.reshape(-1)[:total] = flat_pos
    lengths[:] = seq_len
    if n_rows:
        lengths[-1] = total - (n_rows - 1) * seq_len
    # A document continuing into the next row restarts its positions there.
    for r in range(1, n_rows):
        row = pos[r]
        first_start = np.flatnonzero(row == 0)
        end = int(first_start[0]) if len(first_start) else int(lengths[r])
        row[:end] = np.arange(end)
    _pad_positions(pos, lengths)
    return Packed(ids, lab, pos, lengths)


def one_per_row(
    docs: list[list[int]], labels: list[list[int]] | None, seq_len: int, pad: int
) -> Packed:
    """No packing: each document in its own row, cut at `seq_len` (counted) and padded."""
    ids, lab, pos, lengths = _rows(len(docs), seq_len, pad)
    truncated = cut = 0
    for r, d in enumerate(docs):
        if len(d) > seq_len:
            truncated, cut = truncated + 1, cut + len(d) - seq_len
        d = d[:seq_len]
        n = len(d)
        ids[r, :n] = d
        lab[r, :n] = labels[r][:n] if labels is not None else d
        pos[r, :n] = np.arange(n)
        lengths[r] = n
    _pad_positions(pos, lengths)
    return Packed(ids, lab, pos, lengths, truncated, cut)


def length_profile(lengths: Any) -> dict[str, float]:
    """Documents' token counts as the planner reads them: how many, the mean and the tail
    (what a sequence length must cover)."""
    a = np.asarray(lengths, dtype=np.int64)
    if a.size == 0:
        return {"documents": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    p50, p90, p99 = (int(np.percentile(a, q, method="higher")) for q in (50, 90, 99))
    return {
        "documents": int(a.size),
        "mean": round(float(a.mean()), 1),
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "max": int(a.max()),
    }


FILES = ("tokens", "labels", "positions")


def write_tokens(out: Path, packed: Packed, meta: dict[str, Any]) -> dict[str, Any]:
    """The .bin files as raw little-endian int32, index.json, and hf/ (datasets)."""
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable

    out.mkdir(parents=True, exist_ok=True)
    arrays = dict(zip(FILES, (packed.input_ids, packed.labels, packed.positions), strict=True))
    for name, arr in arrays.items():
        arr.astype("<i4").tofile(out / f"{name}.bin")
    packed.lengths.astype("<i4").tofile(out / "lengths.bin")
    index = {
        **meta,
        "format": 2,
        "dtype": "int32",
        "shape": list(packed.input_ids.shape),
        "labels": True,
        "positions": True,
        "real_tokens": int(packed.lengths.sum()),
        "padding_tokens": packed.padding_tokens,
        "trainable_tokens": int((packed.labels != IGNORE).sum()),
    }
    (out / "index.json").write_text(json.dumps(index, indent=2))
    # Arrow list columns straight from the arrays: no Python int per token; int32 like the
    # .bin files (int64 doubled save_to_disk's peak memory: 2.2 vs 1.2 GB for 17.7M tokens).
    n, width = packed.input_ids.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))

    def column(a: np.ndarray) -> pa.Array:
        return pa.ListArray.from_arrays(offsets, pa.array(a.reshape(-1).astype(np.int32)))

    table = pa.table(
        {
            "input_ids": column(packed.input_ids),
            "labels": column(packed.labels),
            "position_ids": column(packed.positions),
        }
    )
    Dataset(InMemoryTable(table)).save_to_disk(str(out / "hf"))
    return index


@dataclass
class TokenArrays:
    """A token folder, memory-mapped."""

    input_ids: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    lengths: np.ndarray
    index: dict[str, Any]


def open_tokens(folder: Path) -> TokenArrays:
    """Memory-map a token folder written by write_tokens."""
    index = json.loads((folder / "index.json").read_text())
    if index.get("format") != 2:
        raise ValueError(
            f"{folder} was written by an older LMFast (no positions or labels); "
            "run prep_dataset again"
        )
    shape = tuple(index["shape"])

    def mm(name: str, shp: tuple[int, ...]) -> np.ndarray:
        return np.memmap(folder / f"{name}.bin", dtype="<i4", mode="r", shape=shp)

    return TokenArrays(
        mm("tokens", shape), mm("labels", shape), mm("positions", shape),
        mm("lengths", shape[:1]), index,
    )  # fmt: skip
