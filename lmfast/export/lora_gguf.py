"""A PEFT LoRA adapter -> a GGUF LoRA adapter, which llama.cpp applies over its base GGUF at
run time (llama-server's `--lora`; `lmfast serve --adapter`, one model name per adapter).

The tensors are named and ordered as `gguf_convert` names and orders the base's: `<base
tensor>.lora_a` (rank x inputs) and `.lora_b` (outputs x rank), with the Q / K rows of B
permuted to the interleaved rotary layout of llama.cpp's `llama` graph. llama.cpp scales each
pair by alpha / rank, PEFT's own scaling, so one global alpha in the header suffices."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from lmfast.export.gguf_convert import UnsupportedModelError, _permute
from lmfast.modelspec import ModelSpec

# Architecture (GGUF's or config.json's model_type) -> (GGUF architecture, whether Q/K rows
# are permuted), as gguf_convert.SUPPORTED converts the bases.
ARCHITECTURES = {"llama": ("llama", True), "mistral": ("llama", True), "qwen2": ("qwen2", False)}


class LoraGGUF(BaseModel):
    path: str
    architecture: str
    rank: int
    alpha: float
    tensors: int
    bytes: int


def _adapter_config(adapter: Path) -> dict:
    path = adapter / "adapter_config.json"
    if not path.is_file():
        raise UnsupportedModelError(f"{adapter} has no adapter_config.json: not a PEFT adapter")
    cfg = json.loads(path.read_text())
    refuse = [
        (cfg.get("peft_type", "LORA") != "LORA", f"peft_type={cfg.get('peft_type')!r}"),
        (bool(cfg.get("use_dora")), "use_dora=true (DoRA rescales weights llama.cpp cannot)"),
        (bool(cfg.get("modules_to_save")), f"modules_to_save={cfg.get('modules_to_save')}"),
        (bool(cfg.get("alpha_pattern")), "alpha_pattern (one alpha per module)"),
        (bool(cfg.get("fan_in_fan_out")), "fan_in_fan_out=true"),
        (bool(cfg.get("use_rslora")) and bool(cfg.get("rank_pattern")),
         "use_rslora with a rank_pattern"),
    ]  # fmt: skip
    for bad, what in refuse:
        if bad:
            raise UnsupportedModelError(
                f"adapter {adapter} cannot run as a llama.cpp LoRA: {what}; merge it instead "
                "(lmfast merge, then lmfast export --format gguf)"
            )
    return cfg


def lora_to_gguf(adapter: Path, base: ModelSpec, out: Path) -> LoraGGUF:
    """Convert the adapter folder for a base with architecture numbers `base`; written
    atomically, f32 (an adapter is a few MB and f32 keeps its output exact)."""
    import gguf
    from safetensors.numpy import load_file

    if base.architecture.lower() not in ARCHITECTURES:
        raise UnsupportedModelError(
            f"LoRA for architecture {base.architecture!r} cannot run in llama.cpp here; supported: "
            f"{', '.join(sorted(ARCHITECTURES))}"
        )
    arch, permute = ARCHITECTURES[base.architecture.lower()]
    cfg = _adapter_config(adapter)
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise UnsupportedModelError(f"{adapter} has no adapter_model.safetensors")
    rank = int(cfg.get("r", 8))
    alpha = float(cfg.get("lora_alpha", rank))
    if cfg.get("use_rslora"):  # PEFT scales by alpha / sqrt(r), llama.cpp by alpha / r
        alpha *= math.sqrt(rank)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], base.num_layers)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(str(weights)).items():
        if ".lora_A." not in key and ".lora_B." not in key:
            raise UnsupportedModelError(
                f"adapter tensor {key!r} is not a LoRA A / B matrix (embedding LoRA and saved "
                "modules cannot run in llama.cpp); merge the adapter instead"
            )
        part = "a" if ".lora_A." in key else "b"
        module = key.removeprefix("base_model.model.").split(".lora_")[0] + ".weight"
        pairs.setdefault(module, {})[part] = value.astype(np.float32)

    tmp = out.with_name(out.name + ".part")
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH[arch.upper()]])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    count = 0
    for module, ab in sorted(pairs.items()):
        name = names.get_name(module, try_suffixes=(".weight",))
        if name is None or len(ab) != 2:
            tmp.unlink(missing_ok=True)
            missing = "lora_B" if "a" in ab else "lora_A"
            raise UnsupportedModelError(
                f"adapter tensor {module!r} has no GGUF name for {arch}"
                if name is None
                else f"adapter {adapter} has no {missing} for {module!r}"
            )
        if module == "lm_head.weight" and base.tied_embeddings:
            tmp.unlink(missing_ok=True)
            raise UnsupportedModelError(
                "the adapter trains lm_head, which this base shares with its embeddings; "
                "llama.cpp cannot apply it (merge the adapter instead)"
            )
        b = ab["b"]
        if permute and module.endswith("q_proj.weight"):
            b = _permute(b, base.num_heads)
        elif permute and module.endswith("k_proj.weight"):
            b = _permute(b, base.num_kv_heads)
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(ab["a"]))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b))
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return LoraGGUF(path=str(out), architecture=arch, rank=rank, alpha=alpha, tensors=count,
                    bytes=out.stat().st_size)  # fmt: skip
