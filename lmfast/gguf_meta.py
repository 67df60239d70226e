"""Read a GGUF file's metadata (shape, quantization, chat template) without loading weights."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lmfast.modelspec import ModelSpec


class GGUFInfo(BaseModel):
    """What a GGUF header says about its model."""

    name: str | None = Field(description="general.name")
    spec: ModelSpec = Field(description="Architecture numbers.")
    file_type: str = Field(description="Dominant quantization, e.g. Q4_1.")
    chat_template: str | None = Field(description="Jinja chat template, if embedded.")
    bos_token_id: int | None = None
    eos_token_id: int | None = None


def _value(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def read_gguf(path: str | Path) -> GGUFInfo:
    """Parse the header of `path` (memory-mapped; tensors are not read). Cached per file
    version: gguf's reader takes seconds over a large vocabulary, and resolving a model then
    loading it reads the same header twice."""
    p = Path(path).resolve()
    st = p.stat()
    return _read_gguf(str(p), st.st_size, st.st_mtime_ns).model_copy(deep=True)


@functools.lru_cache(maxsize=16)
def _read_gguf(path: str, size: int, mtime_ns: int) -> GGUFInfo:
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(str(path), "r")
    arch = _value(reader, "general.architecture", "llama")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = len(tokens.data) if tokens is not None else 0
    params = sum(int(t.n_elements) for t in reader.tensors)
    hidden = int(_value(reader, f"{arch}.embedding_length", 0))
    heads = int(_value(reader, f"{arch}.attention.head_count", 1))
    names = {t.name for t in reader.tensors}
    spec = ModelSpec(
        architecture=arch,
        parameters=params,
        num_layers=int(_value(reader, f"{arch}.block_count", 1)),
        hidden_size=hidden,
        intermediate_size=int(_value(reader, f"{arch}.feed_forward_length", 4 * hidden)),
        num_heads=heads,
        num_kv_heads=int(_value(reader, f"{arch}.attention.head_count_kv", heads)),
        vocab_size=vocab or 1,
        context_length=int(_value(reader, f"{arch}.context_length", 2048)),
        tied_embeddings="output.weight" not in names,
    )
    ftype = _value(reader, "general.file_type")
    try:
        file_type = LlamaFileType(ftype).name.removeprefix("MOSTLY_") if ftype is not None else "?"
    except ValueError:
        file_type = str(ftype)
    return GGUFInfo(
        name=_value(reader, "general.name"),
        spec=spec,
        file_type=file_type,
        chat_template=_value(reader, "tokenizer.chat_template"),
        bos_token_id=_value(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_id=_value(reader, "tokenizer.ggml.eos_token_id"),
    )
