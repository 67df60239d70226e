"""The hardware plan on simulated T4, A100 and CPU machines."""

from __future__ import annotations

import pytest

from lmfast.config import load_config
from lmfast.errors import PlanError
from lmfast.hardware import PROFILES
from lmfast.modelspec import KNOWN_SPECS
from lmfast.plan import plan_training

SMOL = KNOWN_SPECS["smollm2-135m"]
QWEN = KNOWN_SPECS["qwen2.5-0.5b"]


def test_t4_gets_qlora_fp16_checkpointing() -> None:
    cfg = load_config(None, ["training.max_steps=100", "model.reference=qwen2.5-0.5b-instruct"])
    plan = plan_training(cfg, PROFILES["t4"], QWEN)
    assert plan.dtype == "float16"  # the T4 has no bf16
    assert plan.quantization == "nf4" and plan.double_quantization
    assert plan.gradient_checkpointing
    assert plan.optimizer == "paged_adamw_8bit"
    assert plan.device == "cuda:0"
    assert plan.fits and plan.estimated_peak_memory_gb < 15
    assert plan.micro_batch_size * plan.gradient_accumulation_steps == 16
    assert plan.estimated_training_time_minutes and plan.estimated_training_time_minutes > 0
    assert plan.trainable_parameters < plan.total_parameters / 50
    assert any("bfloat16" in n for n in plan.notes)


def test_a100_gets_bf16_no_quantization_bigger_batches() -> None:
    cfg = load_config(None, ["training.max_steps=100", "training.effective_batch_size=64"])
    a100 = plan_training(cfg, PROFILES["a100"], SMOL)
    t4 = plan_training(cfg, PROFILES["t4"], SMOL)
    assert a100.dtype == "bfloat16"
    assert a100.quantization == "none"
    assert not a100.gradient_checkpointing
    assert a100.optimizer == "adamw_torch_fused"
    assert a100.micro_batch_size > t4.micro_batch_size
    assert a100.estimated_training_time_minutes < t4.estimated_training_time_minutes


def test_cpu_gets_fp32_no_4bit_and_thread_count() -> None:
    cfg = load_config(None, ["training.max_steps=50", "training.max_seq_length=512"])
    plan = plan_training(cfg, PROFILES["cpu"], SMOL)
    assert plan.device == "cpu"
    assert plan.dtype == "float32"
    assert plan.quantization == "none"
    assert plan.num_threads == PROFILES["cpu"].cpu_cores
    assert plan.optimizer == "adamw_torch"
    assert plan.fits
    # Calibrated against SmolLM2-135M LoRA on 2 cores (~190 tokens/s at sequence 512).
    assert 100 < plan.estimated_tokens_per_second < 400


def test_impossible_requests_name_the_field() -> None:
    with pytest.raises(PlanError, match=r"model\.quantization='nf4'.*CUDA"):
        plan_training(load_config(None, ["model.quantization=nf4"]), PROFILES["cpu"], SMOL)
    with pytest.raises(PlanError, match=r"model\.dtype='bfloat16'.*Tesla T4 is 7\.5"):
        plan_training(load_config(None, ["model.dtype=bfloat16"]), PROFILES["t4"], SMOL)
    with pytest.raises(PlanError, match="flash_attention_2"):
        cfg = load_config(None, ["model.attn_implementation=flash_attention_2"])
        plan_training(cfg, PROFILES["t4"], SMOL)
    with pytest.raises(PlanError, match=r"model\.dtype='float16'"):
        plan_training(load_config(None, ["model.dtype=float16"]), PROFILES["cpu"], SMOL)


def test_plan_is_pure_and_respects_explicit_settings() -> None:
    cfg = load_config(
        None,
        [
            "training.micro_batch_size=2",
            "training.gradient_accumulation_steps=3",
            "model.gradient_checkpointing=false",
        ],
    )
    before = cfg.model_dump()
    p1 = plan_training(cfg, PROFILES["t4"], SMOL)
    p2 = plan_training(cfg, PROFILES["t4"], SMOL)
    assert p1 == p2
    assert cfg.model_dump() == before
    assert (p1.micro_batch_size, p1.gradient_accumulation_steps) == (2, 3)
    assert p1.effective_batch_size == 6
    assert not p1.gradient_checkpointing


def test_longer_sequences_use_more_memory_and_smaller_micro_batches() -> None:
    short = plan_training(load_config(None, ["training.max_seq_length=256"]), PROFILES["t4"], QWEN)
    long = plan_training(load_config(None, ["training.max_seq_length=4096"]), PROFILES["t4"], QWEN)
    assert long.micro_batch_size < short.micro_batch_size
    assert long.effective_batch_size == short.effective_batch_size == 16


def test_time_estimate_from_dataset_size() -> None:
    cfg = load_config(None, ["training.epochs=2", "training.max_seq_length=512"])
    unknown = plan_training(cfg, PROFILES["cpu"], SMOL)
    assert unknown.total_steps is None and unknown.estimated_training_time_minutes is None
    known = plan_training(cfg, PROFILES["cpu"], SMOL, dataset_tokens=16 * 512 * 10)
    assert known.total_steps == 20
    half = plan_training(
        load_config(None, ["training.epochs=1", "training.max_seq_length=512"]),
        PROFILES["cpu"],
        SMOL,
        dataset_tokens=16 * 512 * 10,
    )
    assert half.estimated_training_time_minutes == pytest.approx(
        known.estimated_training_time_minutes / 2, rel=0.02
    )


def test_full_finetune_costs_more_than_lora() -> None:
    lora = plan_training(load_config(None, ["training.max_steps=10"]), PROFILES["a100"], QWEN)
    full = plan_training(
        load_config(None, ["training.max_steps=10", "training.lora.enabled=false"]),
        PROFILES["a100"],
        QWEN,
    )
    assert full.trainable_parameters == QWEN.parameters
    assert full.estimated_peak_memory_gb > lora.estimated_peak_memory_gb
    assert full.estimated_training_time_minutes > lora.estimated_training_time_minutes
