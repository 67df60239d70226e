"""Raw text to token ids: LMFast's Rust byte-level BPE where it reproduces `tokenizers`
exactly (GPT-2 / SmolLM2, Llama-3 and Qwen2 style tokenizer.json), `tokenizers` otherwise.
The report says which path ran and, on fallback, why."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np


@lru_cache(maxsize=8)
def _compile(tokenizer_json: str) -> tuple[Any, str]:
    import lmfast_native

    try:
        return lmfast_native.Bpe(tokenizer_json), ""
    except ValueError as e:
        return None, str(e)


def fast_bpe(tokenizer: Any) -> tuple[Any | None, str]:
    """(the Rust encoder or None, why not). `LMFAST_FAST_BPE=0` turns it off."""
    if os.environ.get("LMFAST_FAST_BPE", "1") == "0":
        return None, "turned off by LMFAST_FAST_BPE=0"
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    if not hasattr(backend, "to_str"):
        return None, "not a Hugging Face fast tokenizer"
    return _compile(backend.to_str())


def encode_text_file(tokenizer: Any, path: Path, field: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(all ids as int32, tokens per record, which path ran) for a JSONL file's text field."""
    bpe, why = fast_bpe(tokenizer)
    if bpe is not None:
        ids, lengths = bpe.encode_jsonl(str(path), field)
        return (
            np.frombuffer(ids, dtype="<u4").astype(np.int32),
            np.frombuffer(lengths, dtype="<u4").astype(np.int64),
            "lmfast rust bpe",
        )
    import orjson

    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    with open(path, "rb") as f:
        texts = [str(orjson.loads(line).get(field) or "") for line in f if line.strip()]
    encoded = [
        e.ids  # encode_batch_fast skips character offsets, which packing never needs
        for i in range(0, len(texts), 4096)
        for e in backend.encode_batch_fast(texts[i : i + 4096], add_special_tokens=False)
    ]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter((t for e in encoded for t in e), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths, f"tokenizers ({why})"
