"""Hugging Face folder -> GGUF (f32, f16 or bf16), written with the `gguf` library's tensor
name maps and metadata keys, for the Llama family llama.cpp runs: Llama, SmolLM, TinyLlama,
Mistral (all `llama` in GGUF) and Qwen2. Quantization is llama.cpp's job
(`lmfast.export.llama_quantize`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from lmfast.errors import LMFastError
from lmfast.export.gguf_vocab import GGUFVocab, choose_pre_tokenizer, read_vocab
from lmfast.progress import ProgressFn, no_progress

FloatType = Literal["f32", "f16", "bf16"]

# Hugging Face class -> (gguf architecture, whether Q/K rows must be permuted back to the
# interleaved rotary layout llama.cpp's `llama` graph expects; Qwen2 uses NeoX rotary).
SUPPORTED: dict[str, tuple[str, bool]] = {
    "LlamaForCausalLM": ("LLAMA", True),
    "MistralForCausalLM": ("LLAMA", True),
    "Qwen2ForCausalLM": ("QWEN2", False),
}


class UnsupportedModelError(LMFastError):
    """The model's architecture or configuration has no GGUF conversion here."""


class GGUFConversion(BaseModel):
    path: str
    architecture: str
    tensors: int
    parameters: int
    bytes: int
    tokenizer_model: str
    pre_tokenizer: str | None


def _config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise UnsupportedModelError(f"{folder} has no config.json: not a Hugging Face model")
    return json.loads(path.read_text())


def check_supported(folder: Path) -> tuple[str, bool, dict[str, Any]]:
    """(gguf architecture name, permute Q/K, config) or a clear refusal by name."""
    config = _config(folder)
    arch = (config.get("architectures") or ["?"])[0]
    if arch not in SUPPORTED:
        raise UnsupportedModelError(
            f"architecture {arch!r} cannot be exported to GGUF here; supported: "
            f"{', '.join(sorted(SUPPORTED))}"
        )
    rope = _rope(config)
    if rope.get("rope_type", "default") not in ("default", "linear"):
        raise UnsupportedModelError(
            f"rope_type {rope['rope_type']!r} is not supported for GGUF export; "
            "supported: default, linear"
        )
    name, permute = SUPPORTED[arch]
    return name, permute, config


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    # transformers 5 keeps rope settings in `rope_parameters`; 4.x in rope_theta/rope_scaling.
    rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    rope.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    return rope


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's half-split rotary rows -> the interleaved pairs of the original Llama."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def _tensors(folder: Path) -> Iterator[tuple[str, np.ndarray]]:
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UnsupportedModelError(f"{folder} has no .safetensors weights")
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open is not a mapping)
                yield key, st.get_tensor(key).float().numpy()


def _add_hparams(writer: Any, config: dict[str, Any], ftype: int, name: str) -> None:
    import gguf

    heads = config["num_attention_heads"]
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // heads
    writer.add_name(name)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    writer.add_rope_dimension_count(head_dim)
    if head_dim * heads != hidden:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope = _rope(config)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(ftype)


def _writer(path: Path, arch: str, config: dict[str, Any], ftype: int, name: str) -> Any:
    import gguf

    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH[arch]])
    _add_hparams(writer, config, ftype, name)
    return writer


def hf_to_gguf(
    folder: Path,
    out: Path,
    outtype: FloatType = "f16",
    name: str | None = None,
    progress: ProgressFn = no_progress,
) -> GGUFConversion:
    """Convert a Hugging Face folder to one GGUF file (written atomically)."""
    import gguf

    arch, permute, config = check_supported(folder)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16}[outtype]  # fmt: skip
    name = name or folder.name

    def header(path: Path, vocab: GGUFVocab) -> None:
        w = _writer(path, arch, config, int(ftype), name)
        vocab.add_to(w)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    progress(0, 3, "reading the tokenizer")
    vocab = read_vocab(folder, config["vocab_size"])
    choose_pre_tokenizer(folder, vocab, header)

    progress(1, 3, "converting tensors")
    tmp = out.with_name(out.name + ".part")
    writer = _writer(tmp, arch, config, int(ftype), name)
    vocab.add_to(writer)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch], config["num_hidden_layers"])
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    tied = config.get("tie_word_embeddings", False)
    count = params = 0
    for key, data in _tensors(folder):
        if tied and key == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        if key.endswith(".rotary_emb.inv_freq"):
            continue
        if permute and key.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif permute and key.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            tmp.unlink(missing_ok=True)
            raise UnsupportedModelError(f"tensor {key!r} has no GGUF name for {arch.lower()}")
        params += data.size
        # Norms and biases stay f32, as in llama.cpp's converter: they are tiny and sensitive.
        if outtype == "f32" or data.ndim == 1:
            data = data.astype(np.float32)
            dtype = None
        elif outtype == "f16":
            data = data.astype(np.float16)
            dtype = None
        else:
            data = gguf.quants.quantize(data, gguf.GGMLQuantizationType.BF16)
            dtype = gguf.GGMLQuantizationType.BF16
        writer.add_tensor(gguf_name, data, raw_dtype=dtype)
        count += 1
    progress(2, 3, f"writing {count} tensors")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    progress(3, 3, f"wrote {out.name}")
    return GGUFConversion(
        path=str(out), architecture=arch.lower(), tensors=count, parameters=params,
        bytes=out.stat().st_size, tokenizer_model=vocab.model, pre_tokenizer=vocab.pre,
    )  # fmt: skip
