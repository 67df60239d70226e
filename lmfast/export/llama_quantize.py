"""GGUF quantization with llama.cpp's own quantizer (`llama_model_quantize`, exposed by
llama-cpp-python): the same code as the `llama-quantize` tool, no separate build. Per-tensor
type overrides are how the mixed-precision plan is applied."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any

from lmfast.errors import LMFastError

# User-facing names -> llama.cpp file types (LLAMA_FTYPE_*). "m"/"s"/"l" mixes are llama.cpp's
# own recipes (e.g. q4_k_m keeps half of attn_v / ffn_down at q6_k).
GGUF_TYPES: dict[str, str] = {
    "f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0",
    "q6_k": "MOSTLY_Q6_K", "q5_k_m": "MOSTLY_Q5_K_M", "q5_k_s": "MOSTLY_Q5_K_S",
    "q5_1": "MOSTLY_Q5_1", "q5_0": "MOSTLY_Q5_0", "q4_k_m": "MOSTLY_Q4_K_M",
    "q4_k_s": "MOSTLY_Q4_K_S", "q4_1": "MOSTLY_Q4_1", "q4_0": "MOSTLY_Q4_0",
    "iq4_nl": "MOSTLY_IQ4_NL", "iq4_xs": "MOSTLY_IQ4_XS", "q3_k_l": "MOSTLY_Q3_K_L",
    "q3_k_m": "MOSTLY_Q3_K_M", "q3_k_s": "MOSTLY_Q3_K_S", "q2_k": "MOSTLY_Q2_K",
}  # fmt: skip

# Tensor types a mixed-precision plan may assign (ggml type names).
TENSOR_TYPES = ("q2_k", "q3_k", "q4_0", "q4_k", "q5_0", "q5_k", "q6_k", "q8_0", "f16", "f32")


class QuantizeError(LMFastError):
    """llama.cpp refused or failed to quantize."""


def quiet_llama() -> Any:
    """Silence llama.cpp's C-level logging (LMFAST_VERBOSE=1 keeps it), where the standard
    streams are real file descriptors (not under a test runner's capture)."""
    import contextlib

    from llama_cpp._utils import suppress_stdout_stderr

    try:
        sys.stdout.fileno()
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return contextlib.nullcontext()
    return suppress_stdout_stderr(disable=os.environ.get("LMFAST_VERBOSE") == "1")


def check_type(qtype: str) -> str:
    key = qtype.lower()
    if key not in GGUF_TYPES:
        raise QuantizeError(
            f"type: {qtype!r} is not a GGUF quantization type; allowed: {', '.join(GGUF_TYPES)}"
        )
    return key


def ggml_type(name: str) -> int:
    import gguf

    try:
        return int(gguf.GGMLQuantizationType[name.upper()])
    except KeyError:
        raise QuantizeError(
            f"tensor type {name!r} is not a ggml type; allowed: {', '.join(TENSOR_TYPES)}"
        ) from None


def quantize_gguf(
    source: Path,
    out: Path,
    qtype: str,
    overrides: dict[str, str] | None = None,
    threads: int | None = None,
    pure: bool = False,
) -> None:
    """Quantize `source` (f32/f16/bf16 GGUF) to `out` as `qtype`; `overrides` maps exact tensor
    names to ggml types (llama.cpp falls back to a compatible type when a row length does not
    divide a k-quant block, as its tool does); `pure` gives every tensor `qtype`'s base type
    instead of llama.cpp's mix. Written atomically."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_{GGUF_TYPES[check_type(qtype)]}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    params.pure = pure
    keep: list[object] = []  # ctypes buffers must outlive the call
    if overrides:
        entries = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
        for i, (name, kind) in enumerate(sorted(overrides.items())):
            pattern = f"^{name.replace('.', chr(92) + '.')}$".encode()
            keep.append(pattern)
            entries[i].pattern = pattern
            entries[i].type = ggml_type(kind)
        entries[len(overrides)].pattern = None  # the list ends with a null pattern
        params.tt_overrides = ctypes.cast(entries, type(params.tt_overrides))
        keep.append(entries)
    tmp = out.with_name(out.name + ".part")
    with quiet_llama():
        rc = llama_cpp.llama_model_quantize(
            str(source).encode(), str(tmp).encode(), ctypes.byref(params)
        )
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise QuantizeError(f"llama.cpp could not quantize {source.name} to {qtype} (code {rc})")
    tmp.replace(out)


def tensor_types(path: Path) -> dict[str, str]:
    """Tensor name -> stored ggml type name (lowercase) of a GGUF file."""
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name.lower() for t in GGUFReader(str(path), "r").tensors}


def tensor_bytes(path: Path) -> dict[str, int]:
    from gguf import GGUFReader

    return {t.name: int(t.n_bytes) for t in GGUFReader(str(path), "r").tensors}
