"""GGUF files made from other GGUF files for tests: the first layers of a model (a draft that
shares its tokenizer, untrained: it guesses some tokens right and many wrong)."""

from __future__ import annotations

import re
from pathlib import Path


def first_layers(
    src: Path, dst: Path, layers: int, rename: dict[int, str] | None = None
) -> Path:
    """`src` with only its first `layers` transformer blocks (block_count rewritten), and the
    tokens in `rename` (id -> text) spelled otherwise."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    reader = GGUFReader(str(src), "r")
    arch = reader.fields["general.architecture"].contents()
    writer = GGUFWriter(str(dst), arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        value = field.contents()
        if field.name == f"{arch}.block_count":
            value = layers
        if field.name == "tokenizer.ggml.tokens" and rename:
            value = [rename.get(i, v) for i, v in enumerate(value)]
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    kept = [
        t
        for t in reader.tensors
        if not (m := re.match(r"blk\.(\d+)\.", t.name)) or int(m.group(1)) < layers
    ]
    for t in kept:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in kept:
        writer.write_tensor_data(t.data)
    writer.close()
    return dst
