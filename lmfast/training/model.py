"""The model being trained: base weights (4-bit on CUDA for QLoRA) plus LoRA adapters, or all
weights for full fine-tuning. Which backend ran, and why, is recorded for the run's log."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from lmfast.config import LMFastConfig
from lmfast.errors import ConfigError
from lmfast.plan import TrainingPlan
from lmfast.registry import ResolvedModel


@dataclass
class TrainableModel:
    model: Any
    tokenizer: Any
    backend: str
    backend_reason: str
    trainable_parameters: int
    total_parameters: int

    @property
    def trainable_ratio(self) -> float:
        return self.trainable_parameters / max(1, self.total_parameters)


def choose_backend(device: str) -> tuple[str, str]:
    """The training backend for a device, and why (the run's log and `lmfast doctor`)."""
    on_cuda = device.startswith("cuda")
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if on_cuda and has_unsloth:
        # Unsloth's kernels are not wired in yet: say so rather than pretend.
        return "transformers+peft", "unsloth is installed but LMFast does not drive it yet"
    if not on_cuda:
        return "transformers+peft", f"no CUDA GPU ({device}): unsloth needs one"
    return "transformers+peft", "unsloth is not installed"


def linear_layer_names(model: Any) -> list[str]:
    """Distinct names (last path component) of the model's linear layers, lm_head excluded."""
    import torch

    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        or type(module).__name__ in ("Linear4bit", "Linear8bitLt")
    }
    names.discard("lm_head")
    return sorted(names)


def _load_base(resolved: ResolvedModel, config: LMFastConfig, plan: TrainingPlan) -> Any:
    from lmfast.loading import load_transformers

    if plan.quantization == "none":
        # Frozen LoRA bases are stored in the compute dtype (half the memory); full
        # fine-tuning keeps float32 master weights and gets 16-bit compute from autocast,
        # since optimizer updates to 16-bit weights round away.
        dtype = plan.dtype if config.training.lora.enabled else "float32"
        return load_transformers(resolved, dtype=dtype, device=plan.device)
    # QLoRA: bitsandbytes quantizes while loading a Hugging Face folder.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    if resolved.format != "hf":
        raise ConfigError(
            [
                (
                    "model.reference",
                    f"{resolved.name} is a {resolved.format} model; 4-bit training loads a "
                    "Hugging Face folder: run `lmfast models convert` first and train the "
                    "converted artifact",
                )
            ]
        )
    compute = getattr(torch, plan.dtype)
    quant = BitsAndBytesConfig(
        load_in_4bit=plan.quantization == "nf4",
        load_in_8bit=plan.quantization == "int8",
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=plan.double_quantization,
        bnb_4bit_compute_dtype=compute,
    )
    # Each data-parallel process quantizes onto its own GPU.
    gpu = int(os.environ.get("LOCAL_RANK", "0"))
    model = AutoModelForCausalLM.from_pretrained(
        str(resolved.path), quantization_config=quant, dtype=compute, device_map={"": gpu}
    )
    tokenizer = AutoTokenizer.from_pretrained(str(resolved.path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def build(resolved: ResolvedModel, config: LMFastConfig, plan: TrainingPlan) -> TrainableModel:
    """Load the base model and make the right parameters trainable. An adapter as the
    model goes on training as itself with LoRA (its own rank and targets; GRPO after SFT),
    or is merged into its base for full fine-tuning."""
    from lmfast.registry import adapter_base, resolve_model

    backend, reason = choose_backend(plan.device)
    adapter = resolved.path if resolved.format == "adapter" else None
    base = resolve_model(adapter_base(resolved.path)) if adapter else resolved
    model, tokenizer = _load_base(base, config, plan)
    if adapter is not None and (adapter / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(adapter))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    if adapter is not None and not config.training.lora.enabled:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.config.use_cache = False  # no KV cache while training
    total = sum(p.numel() for p in model.parameters())
    lora = config.training.lora
    if plan.quantization != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=plan.gradient_checkpointing
        )
    elif plan.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora.enabled:
            model.enable_input_require_grads()
    if lora.enabled and adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    elif lora.enabled:
        from peft import LoraConfig, get_peft_model

        targets = lora.target_modules
        if targets != "all-linear":
            available = linear_layer_names(model)
            unknown = [t for t in targets if t not in available]
            if unknown:
                raise ConfigError(
                    [
                        (
                            "training.lora.target_modules",
                            f"{unknown} are not linear layers of {resolved.name}; its linear "
                            f"layers are: {', '.join(available)} (or use 'all-linear')",
                        )
                    ]
                )
        peft_config = LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=targets,
            use_rslora=lora.use_rslora,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, peft_config)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return TrainableModel(model, tokenizer, backend, reason, trainable, total)
