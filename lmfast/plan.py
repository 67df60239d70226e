"""The hardware plan: a pure function of (config, hardware, model shape) -> resolved settings.

Nothing here touches a device. The estimates are deliberately simple formulas (weights +
optimizer state + activations + logits; FLOPs / effective throughput) so a person can check
them; they are shown before a run starts so surprises happen before, not during, training.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from lmfast.config import LMFastConfig
from lmfast.defaults import Choice, seq_cap, trainer_steps
from lmfast.errors import PlanError
from lmfast.hardware import GPUInfo, HardwareProfile
from lmfast.modelspec import ModelSpec

GiB = 2**30

# Peak dense 16-bit tensor throughput (FLOP/s) and the fraction a small-model fine-tune
# typically reaches. Small models are launch-bound, hence the modest utilisation.
_GPU_THROUGHPUT: list[tuple[str, float, float]] = [
    ("T4", 65e12, 0.20),
    ("V100", 125e12, 0.25),
    ("A10", 125e12, 0.30),
    ("L4", 121e12, 0.30),
    ("A100", 312e12, 0.30),
    ("H100", 989e12, 0.25),
    ("H200", 989e12, 0.25),
    ("4090", 165e12, 0.30),
    ("3090", 71e12, 0.30),
]
# Calibrated on a 2-core x86 machine: SmolLM2-135M LoRA trains at about 190 tokens/s at
# sequence 512, i.e. ~50 GFLOP/s of useful work per core.
_CPU_FLOPS_PER_CORE = 50e9
_CPU_BF16_SPEEDUP = 2.1  # measured end to end (LoRA SFT, SmolLM2-135M) on AVX512-BF16
_MPS_FLOPS = 5e12
# 4-bit weights are dequantized on every matmul: QLoRA runs at roughly 60% of LoRA speed.
_NF4_SLOWDOWN = 0.6
_CPU_RUNTIME_BYTES = 1.0 * 2**30


class TrainingPlan(BaseModel):
    """Settings resolved for one machine, with estimates shown before training starts."""

    hardware: str = Field(description="The machine this plan is for.")
    device: str = Field(description="torch device string.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(description="Compute dtype.")
    quantization: Literal["none", "nf4", "int8"] = Field(description="Base weight format.")
    double_quantization: bool = Field(description="Quantize the 4-bit scales too (QLoRA).")
    lora: bool = Field(description="Train adapters rather than all weights.")
    gradient_checkpointing: bool = Field(description="Recompute activations in backward.")
    attn_implementation: str = Field(description="Attention kernel.")
    optimizer: str = Field(description="Optimizer name as transformers knows it.")
    micro_batch_size: int = Field(description="Sequences per forward pass.")
    processes: int = Field(1, description="Data-parallel training processes.")
    gradient_accumulation_steps: int = Field(description="Micro-batches per optimizer step.")
    effective_batch_size: int = Field(description="Sequences per optimizer step.")
    max_seq_length: int = Field(description="Tokens per sequence.")
    num_threads: int | None = Field(description="CPU threads for torch (CPU plans only).")
    total_parameters: int = Field(description="Parameters in the base model.")
    trainable_parameters: int = Field(description="Parameters the optimizer updates.")
    memory_budget_gb: float = Field(description="Memory the plan allows itself.")
    estimated_peak_memory_gb: float = Field(description="Estimated peak training memory.")
    fits: bool = Field(description="Whether the estimate is inside the budget.")
    estimated_tokens_per_second: float = Field(description="Estimated training throughput.")
    total_steps: int | None = Field(description="Optimizer steps, when known.")
    estimated_training_time_minutes: float | None = Field(
        description="Estimated wall time of the whole run, when the step count is known."
    )
    notes: list[str] = Field(default_factory=list, description="Why choices were made.")
    choices: list[Choice] = Field(
        default_factory=list,
        description="Settings the recipe left unset, chosen from the data, with reasons.",
    )
    summary: str | None = Field(
        None, description="The derived choices in one line, shown before the run starts."
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Why this run may not learn (too few steps), with the setting to change.",
    )

    def notes_for_people(self) -> list[str]:
        """What a person should read before the run starts: the derived settings in one
        line, then each warning. The prefixes mark them for job clients to keep."""
        lines = [f"plan: {self.summary}"] if self.summary else []
        return lines + [f"warning: {w}" for w in self.warnings]


def _gpu_flops(gpu: GPUInfo) -> float:
    name = gpu.name.upper()
    for key, peak, util in _GPU_THROUGHPUT:
        if key in name:
            return peak * util
    major = gpu.compute_capability[0]
    return {9: 200e12, 8: 60e12}.get(major, 15e12)


def _peak_memory_bytes(
    spec: ModelSpec,
    *,
    micro_batch: int,
    seq: int,
    compute_bytes: int,
    quantization: str,
    lora_params: int,
    eight_bit_optimizer: bool,
    checkpointing: bool,
    cpu: bool = False,
    labelled_share: float = 1.0,
) -> float:
    n, emb = spec.parameters, spec.embedding_parameters
    if quantization == "nf4":  # 4 bits + double-quantized scales; embeddings stay 16-bit
        weights = (n - emb) * 0.53 + emb * compute_bytes
    elif quantization == "int8":
        weights = (n - emb) * 1.02 + emb * compute_bytes
    elif lora_params:
        weights = n * compute_bytes
    else:  # full fine-tune keeps fp32 master weights
        weights = n * 4
    trainable = lora_params or n
    # fp32 gradient + AdamW moments (8-bit moments: 2 bytes), plus fp32 adapter weights.
    state = trainable * ((4 + 2) if eight_bit_optimizer else (4 + 8)) + lora_params * 4
    tokens = micro_batch * seq
    # 34 x hidden values per token and layer (Korthikanti et al.), halved for 16-bit on a
    # GPU; CPU autograd keeps about twice that (measured: 138 bytes per token, layer and
    # hidden unit in float32, SmolLM2-135M LoRA, 1,024-4,096 tokens a micro-batch).
    layer_act = tokens * spec.hidden_size * 34 * compute_bytes / (1 if cpu else 2)
    if checkpointing:
        acts = spec.num_layers * tokens * spec.hidden_size * compute_bytes + layer_act
    else:
        acts = spec.num_layers * layer_act
    # Logits in compute dtype, upcast to fp32 for the loss, and their gradient: only at the
    # labelled positions (lmfast.training.loss).
    logits = tokens * labelled_share * spec.vocab_size * (compute_bytes + 4 + 4)
    # What the process holds besides tensors: torch, transformers, peft, the tokenizer and
    # the mapped data (about 1 GiB resident on a CPU; CUDA peaks count tensors only).
    runtime = _CPU_RUNTIME_BYTES if cpu else 0
    return runtime + weights + state + acts + logits


def plan_training(
    config: LMFastConfig,
    hardware: HardwareProfile,
    spec: ModelSpec,
    dataset_tokens: int | None = None,
    processes: int = 1,
    dataset_rows: int | None = None,
    labelled_share: float = 1.0,
) -> TrainingPlan:
    """Resolve `config` for `hardware`. Raises PlanError when the two cannot work together.
    With several `processes` (data parallel), each runs micro-batch x accumulation and the
    effective batch is their sum, so accumulation is divided among them. `dataset_rows`
    (packed rows per epoch) gives the step count; `dataset_tokens` alone assumes full rows;
    `labelled_share` (tokens with a loss / all tokens) sizes the logits.
    Settings the recipe leaves to the data (lmfast.defaults) take their provisional values
    until `derive` has chosen them."""
    m, t = config.model, config.training
    gpu = hardware.gpu if hardware.accelerator == "cuda" else None
    notes: list[str] = []

    # --- dtype ---------------------------------------------------------------------------
    if m.dtype == "auto":
        dtype = "bfloat16" if hardware.bf16 else ("float16" if gpu else "float32")
        if gpu and not hardware.bf16:
            notes.append(f"{gpu.name} has no bfloat16 support: training in float16")
        elif not gpu and hardware.bf16:
            notes.append("CPU has bfloat16 instructions: mixed-precision bfloat16 training")
    else:
        dtype = m.dtype
    if dtype == "bfloat16" and gpu and not gpu.bf16:
        cc = ".".join(map(str, gpu.compute_capability))
        raise PlanError(
            f"model.dtype='bfloat16' needs compute capability 8.0 or newer; {gpu.name} is {cc}. "
            "Use 'float16' or 'auto'."
        )
    if dtype == "float16" and not gpu:
        raise PlanError(
            f"model.dtype='float16' training needs a CUDA GPU; this machine is "
            f"{hardware.accelerator}. Use 'float32' or 'auto'."
        )
    compute_bytes = 4 if dtype == "float32" else 2

    # --- quantization --------------------------------------------------------------------
    lora = t.lora.enabled
    if m.quantization == "auto":
        quantization = "nf4" if (gpu and lora and gpu.memory_gb < 24) else "none"
        if quantization == "nf4":
            notes.append("GPU under 24 GB: QLoRA with 4-bit NF4 double-quantized base weights")
    else:
        quantization = m.quantization
    if quantization != "none" and not gpu:
        raise PlanError(
            f"model.quantization={quantization!r} needs a CUDA GPU (bitsandbytes); this machine "
            f"is {hardware.accelerator}. Use 'none' or 'auto'."
        )

    # --- attention and optimizer ---------------------------------------------------------
    attn = "sdpa" if m.attn_implementation == "auto" else m.attn_implementation
    if attn == "flash_attention_2" and not (gpu and gpu.compute_capability >= (8, 0)):
        raise PlanError(
            "model.attn_implementation='flash_attention_2' needs an Ampere or newer GPU "
            "(compute capability 8.0); use 'sdpa' or 'auto'."
        )
    if t.optimizer == "auto":
        if quantization != "none":
            optimizer = "paged_adamw_8bit"
        else:
            optimizer = "adamw_torch_fused" if gpu else "adamw_torch"
    else:
        optimizer = t.optimizer
    if optimizer == "paged_adamw_8bit" and not gpu:
        raise PlanError("training.optimizer='paged_adamw_8bit' needs a CUDA GPU (bitsandbytes).")
    eight_bit = optimizer == "paged_adamw_8bit"

    # --- memory budget, checkpointing and micro-batch ------------------------------------
    if gpu:
        budget = gpu.memory_gb * GiB * 0.9 - 0.75 * GiB  # CUDA context + fragmentation
    elif hardware.accelerator == "mps":
        budget = hardware.ram_gb * GiB * 0.6
    else:
        budget = min(hardware.ram_gb * 0.6, hardware.ram_gb - 4) * GiB - 1.5 * GiB
    lora_params = spec.lora_parameters(t.lora.rank) if lora else 0
    seq = t.max_seq_length or seq_cap(spec.context_length, gpu is not None)
    if dataset_rows is None and (t.max_seq_length is None or t.learning_rate is None):
        notes.append(
            "settings the recipe leaves unset (sequence length, batch, epochs, learning rate) "
            f"are chosen from the data when training starts; shown: the longest length, {seq}"
        )
    if seq > spec.context_length:
        notes.append(
            f"max_seq_length {seq} exceeds the model's context {spec.context_length}: "
            "positions past it were never trained"
        )

    def peak(mb: int, ckpt: bool) -> float:
        return _peak_memory_bytes(
            spec,
            micro_batch=mb,
            seq=seq,
            compute_bytes=compute_bytes,
            quantization=quantization,
            lora_params=lora_params,
            eight_bit_optimizer=eight_bit,
            checkpointing=ckpt,
            cpu=gpu is None and hardware.accelerator != "mps",
            labelled_share=labelled_share,
        )

    if m.gradient_checkpointing is not None:
        ckpt = m.gradient_checkpointing
    else:
        ckpt = bool(gpu and gpu.memory_gb < 24) or peak(1, False) > budget
        if ckpt:
            notes.append("gradient checkpointing on to save activation memory")

    target = t.target_effective_batch_size
    if t.micro_batch_size:
        micro = t.micro_batch_size
    else:
        # CPUs gain little from bigger batches; GPUs want the largest that fits.
        cap = min(target, 64 if gpu else 8)
        micro = 1
        while micro * 2 <= cap and peak(micro * 2, ckpt) <= budget:
            micro *= 2
        while micro > 1 and target % (micro * processes):  # no rows added to the batch
            micro //= 2
    accum = t.gradient_accumulation_steps or max(1, math.ceil(target / (micro * processes)))
    effective = micro * accum * processes
    if processes > 1:
        notes.append(
            f"{processes} processes x micro-batch {micro} x accumulation {accum} = "
            f"{effective} sequences per step"
        )
    peak_bytes = peak(micro, ckpt)
    fits = peak_bytes <= budget
    warnings = []
    if not fits:
        warnings.append(
            f"estimated peak {peak_bytes / GiB:.1f} GB exceeds the {budget / GiB:.1f} GB budget"
            f" (micro-batch {micro} x {seq} tokens): lower training.micro_batch_size or "
            "training.max_seq_length, or enable quantization"
        )

    # --- throughput and time -------------------------------------------------------------
    if gpu:
        flops = _gpu_flops(gpu) * (_NF4_SLOWDOWN if quantization == "nf4" else 1.0)
    elif hardware.accelerator == "mps":
        flops = _MPS_FLOPS
    else:
        flops = _CPU_FLOPS_PER_CORE * hardware.cpu_cores
        if dtype == "bfloat16" and hardware.cpu_bf16:
            flops *= _CPU_BF16_SPEEDUP
    # Forward 2N, backward 2N for activations (+2N for weight grads in full fine-tuning),
    # and one more forward when checkpointing recomputes activations.
    per_token = spec.parameters * ((4 if lora else 6) + (2 if ckpt else 0))
    tokens_per_s = flops / per_token
    if gpu:  # one GPU per process; CPU processes share the machine's cores
        tokens_per_s *= processes
    tokens_per_step = effective * seq
    if dataset_rows and dataset_tokens:
        tokens_per_step = effective * dataset_tokens / dataset_rows  # rows are not all full
    if t.max_steps:
        steps: int | None = t.max_steps
    elif dataset_rows:
        steps = trainer_steps(dataset_rows, effective, t.epochs or 1.0, processes)
    elif dataset_tokens:
        steps = math.ceil((t.epochs or 1.0) * dataset_tokens / tokens_per_step)
    else:
        steps = None
        notes.append("step count unknown until the dataset is prepared: no time estimate yet")
    minutes = steps * tokens_per_step / tokens_per_s / 60 if steps else None

    return TrainingPlan(
        hardware=hardware.describe(),
        device="cuda:0" if gpu else ("mps" if hardware.accelerator == "mps" else "cpu"),
        dtype=dtype,
        quantization=quantization,
        double_quantization=quantization == "nf4",
        lora=lora,
        gradient_checkpointing=ckpt,
        attn_implementation=attn,
        optimizer=optimizer,
        micro_batch_size=micro,
        processes=processes,
        gradient_accumulation_steps=accum,
        effective_batch_size=effective,
        max_seq_length=seq,
        num_threads=None if gpu else hardware.cpu_cores,
        total_parameters=spec.parameters,
        trainable_parameters=lora_params or spec.parameters,
        memory_budget_gb=round(budget / GiB, 2),
        estimated_peak_memory_gb=round(peak_bytes / GiB, 2),
        fits=fits,
        estimated_tokens_per_second=round(tokens_per_s, 1),
        total_steps=steps,
        estimated_training_time_minutes=round(minutes, 1) if minutes is not None else None,
        notes=notes,
        warnings=warnings,
    )
