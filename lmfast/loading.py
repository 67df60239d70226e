"""Load any resolved model into transformers as an ordinary trainable model, and save it.

GGUF files are dequantized on load (transformers' `gguf_file=` path). transformers then marks
the model as quantized, which makes `save_pretrained` refuse or write a bogus
`quantization_config`; the weights are plain tensors by then, so we clear those marks.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lmfast.registry import ResolvedModel, adapter_base, resolve_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Dtype = Literal["auto", "float32", "float16", "bfloat16"]


def torch_dtype(dtype: Dtype, device: str) -> Any:
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.bfloat16
    return getattr(torch, dtype)


def _clear_quantization_marks(model: PreTrainedModel) -> None:
    for attr in ("is_quantized", "quantization_method", "hf_quantizer"):
        if hasattr(model, attr):
            with contextlib.suppress(AttributeError):  # read-only on some versions
                setattr(model, attr, None if attr != "is_quantized" else False)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def load_transformers(
    model: str | ResolvedModel | None = None,
    *,
    dtype: Dtype = "auto",
    device: str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for any reference: alias, GGUF, HF folder, adapter, artifact, hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
    td = torch_dtype(dtype, device)
    if resolved.format == "gguf":
        folder, name = str(resolved.path.parent), resolved.path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        hf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=td)
        _clear_quantization_marks(hf_model)
    elif resolved.format == "hf":
        tokenizer = AutoTokenizer.from_pretrained(str(resolved.path))
        hf_model = AutoModelForCausalLM.from_pretrained(str(resolved.path), dtype=td)
    else:
        from peft import PeftModel

        base, tokenizer = load_transformers(adapter_base(resolved.path), dtype=dtype,
                                            device=device)  # fmt: skip
        if (resolved.path / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(str(resolved.path))
        hf_model = PeftModel.from_pretrained(base, str(resolved.path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    hf_model.to(device)
    hf_model.eval()
    return hf_model, tokenizer


def save_transformers(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path
) -> Path:
    """Write a Hugging Face folder (safetensors + tokenizer + chat template)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out
