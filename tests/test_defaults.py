"""Training defaults derived from the data (lmfast.defaults): the choices on datasets of very
different shapes, explicit settings always winning, and the few-steps warning."""

from __future__ import annotations

import math

import pytest

from lmfast.config import load_config
from lmfast.defaults import (
    MAX_EPOCHS,
    MAX_TOKENS_PER_STEP,
    MIN_STEPS,
    DataShape,
    LengthProfile,
    choose_seq_len,
    derive,
    few_steps_warning,
    learning_rate,
    total_steps,
)
from lmfast.hardware import PROFILES
from lmfast.plan import plan_training
from lmfast.registry import model_spec

SMOL = 134_515_008


def shape(kind: str, documents: int, p50: int, p99: int, seq: int, rows: int | None = None):
    """A dataset of `documents` of about `p50` tokens packed into rows of `seq`."""
    tokens = documents * p50
    rows = rows or max(1, math.ceil(tokens / (seq * 0.9)))
    lengths = LengthProfile(
        documents=documents, mean=p50, p50=p50, p90=(p50 + p99) // 2, p99=p99, max=p99 + 10
    )
    return DataShape(kind=kind, lengths=lengths, rows=rows, tokens=tokens)


def values(derived) -> dict[str, object]:
    return {c.setting: c.value for c in derived.choices}


def test_short_chats_get_a_short_sequence_a_small_batch_and_enough_steps() -> None:
    """The issue's case: 1,200 conversations of 30-60 tokens. Built-in constants gave
    sequence 1,024, 16 rows a step and 5 steps; the plan must give a short sequence and at
    least MIN_STEPS steps at a LoRA rate for a 135M model."""
    lengths = LengthProfile(documents=1200, mean=45, p50=44, p90=55, p99=60, max=63)
    seq = choose_seq_len(lengths, "chat", 8192, gpu=False)
    assert seq.value == 128 and "99 %" in seq.reason
    cfg = load_config(values={"training.max_seq_length": 128})
    data = shape("chat", 1200, 45, 60, 128)
    derived = derive(cfg, data, "sft", SMOL)
    chosen = values(derived)
    steps = total_steps(derived.config, data.rows)
    assert steps >= MIN_STEPS
    assert chosen["training.learning_rate"] == 1e-3
    assert derived.config.training.epochs <= MAX_EPOCHS
    summary = derived.summary(data, steps)
    assert "1,200 conversations" in summary and "sequence length 128" in summary
    assert few_steps_warning(derived.config, steps, data.rows) is None


def test_long_documents_are_cut_at_the_hardware_length_in_one_pass() -> None:
    lengths = LengthProfile(documents=5000, mean=6000, p50=5000, p90=12000, p99=30000, max=90000)
    assert choose_seq_len(lengths, "text", 8192, gpu=False).value == 1024
    assert choose_seq_len(lengths, "text", 8192, gpu=True).value == 2048
    assert choose_seq_len(lengths, "text", 512, gpu=True).value == 512  # the model's context
    cfg = load_config(values={"training.method": "cpt", "training.max_seq_length": 1024})
    data = DataShape(kind="text", lengths=lengths, rows=29_300, tokens=30_000_000)
    derived = derive(cfg, data, "cpt", SMOL)
    assert derived.config.training.epochs == 1.0
    assert values(derived)["training.learning_rate"] == 5e-4  # every token: half the SFT rate
    assert total_steps(derived.config, data.rows) >= MIN_STEPS


def test_a_handful_of_rows_is_said_to_be_too_few_with_what_to_change() -> None:
    cfg = load_config(values={"training.max_seq_length": 128})
    data = shape("chat", 10, 50, 60, 128)
    derived = derive(cfg, data, "sft", SMOL)
    steps = total_steps(derived.config, data.rows)
    assert derived.config.training.epochs == MAX_EPOCHS  # as many passes as is sane
    assert derived.config.training.effective_batch_size == 1  # and the smallest batch
    warning = few_steps_warning(derived.config, steps, data.rows)
    assert warning and f"only {steps} optimizer steps" in warning and "add data" in warning


def test_a_large_corpus_gets_one_pass_at_the_largest_batch() -> None:
    cfg = load_config(values={"training.max_seq_length": 1024})
    data = shape("chat", 2_000_000, 120, 500, 1024)
    derived = derive(cfg, data, "sft", SMOL)
    t = derived.config.training
    assert t.epochs == 1.0
    assert t.effective_batch_size * data.tokens / data.rows <= MAX_TOKENS_PER_STEP
    assert total_steps(derived.config, data.rows) > 1000


def test_every_explicit_setting_wins() -> None:
    cfg = load_config(
        values={
            "training.learning_rate": 3e-5,
            "training.warmup_ratio": 0.2,
            "training.max_seq_length": 512,
            "training.epochs": 7,
            "training.effective_batch_size": 4,
        }
    )
    derived = derive(cfg, shape("chat", 1200, 45, 60, 512), "sft", SMOL)
    t = derived.config.training
    assert derived.choices == []
    assert (t.learning_rate, t.warmup_ratio, t.max_seq_length, t.epochs) == (3e-5, 0.2, 512, 7)
    assert t.effective_batch_size == 4
    steps_cfg = load_config(values={"training.max_steps": 10})
    derived = derive(steps_cfg, shape("chat", 1200, 45, 60, 128), "sft", SMOL)
    assert derived.config.training.max_steps == 10 and derived.config.training.epochs is None
    assert "training.epochs" not in values(derived)
    # micro-batch x accumulation fixes the batch as well
    fixed = load_config(
        values={"training.micro_batch_size": 2, "training.gradient_accumulation_steps": 3}
    )
    derived = derive(fixed, shape("chat", 1200, 45, 60, 128), "sft", SMOL)
    assert "training.effective_batch_size" not in values(derived)


def test_fixed_epochs_shrink_the_batch_instead() -> None:
    """`--epochs 1` on 1,200 short chats (the issue's newcomer command): the batch gets
    smaller so that the one pass still has enough steps."""
    cfg = load_config(values={"training.epochs": 1, "training.max_seq_length": 128})
    data = shape("chat", 1200, 45, 60, 128)
    derived = derive(cfg, data, "sft", SMOL)
    assert derived.config.training.epochs == 1
    assert total_steps(derived.config, data.rows) >= MIN_STEPS


def test_the_batch_splits_evenly_over_micro_batches_and_processes() -> None:
    cfg = load_config(values={"training.micro_batch_size": 4, "training.max_seq_length": 256})
    derived = derive(cfg, shape("chat", 50_000, 80, 200, 256), "sft", SMOL, processes=2)
    assert derived.config.training.effective_batch_size % 8 == 0
    load_config(values=derived.config.model_dump())  # still a valid recipe


@pytest.mark.parametrize(
    ("method", "lora", "parameters", "expected"),
    [
        ("sft", True, SMOL, 1e-3),
        ("sft", True, 494_000_000, 5.2e-4),  # Qwen2.5-0.5B
        ("sft", True, 7_000_000_000, 1.4e-4),
        ("sft", False, SMOL, 1e-4),
        ("cpt", True, SMOL, 5e-4),
        ("orpo", True, SMOL, 1e-3),
        ("dpo", True, SMOL, 5e-4),
        ("distill", True, SMOL, 1e-3),
        ("pretrain", False, 20_000_000, 3e-3),
    ],
)
def test_learning_rate_by_method_adapter_and_size(
    method: str, lora: bool, parameters: int, expected: float
) -> None:
    assert learning_rate(method, lora, parameters, 16).value == pytest.approx(expected)


def test_preference_pairs_get_enough_steps() -> None:
    """The issue's alignment case: 300 pairs ran 19 steps with constants."""
    lengths = LengthProfile(documents=300, mean=40, p50=38, p90=48, p99=55, max=60)
    assert choose_seq_len(lengths, "pairs", 8192, gpu=False).value == 128
    cfg = load_config(values={"training.max_seq_length": 128})
    data = DataShape(kind="pairs", lengths=lengths, rows=300, tokens=300 * 60)
    derived = derive(cfg, data, "orpo", SMOL)
    assert total_steps(derived.config, data.rows) >= MIN_STEPS


def test_few_steps_warning_names_the_setting_that_caused_it() -> None:
    cfg = load_config(values={"training.max_steps": 5})
    warning = few_steps_warning(cfg, 5, 1000)
    assert warning and "training.max_steps" in warning and "--max-steps" in warning
    cfg = load_config(values={"training.effective_batch_size": 64, "training.epochs": 1})
    warning = few_steps_warning(cfg, 10, 640)
    assert warning and "training.effective_batch_size" in warning


def test_plan_counts_steps_from_rows_and_shows_the_choices() -> None:
    spec = model_spec("smollm2-135m-instruct")
    cfg = load_config(values={"training.max_seq_length": 128})
    data = shape("chat", 1200, 45, 60, 128)
    derived = derive(cfg, data, "sft", spec.parameters)
    plan = plan_training(
        derived.config, PROFILES["cpu"], spec, dataset_tokens=data.tokens, dataset_rows=data.rows
    )
    assert plan.total_steps == total_steps(derived.config, data.rows)
    assert plan.max_seq_length == 128
    # before the data is known, the plan uses the longest length it would derive
    assert plan_training(load_config(), PROFILES["cpu"], spec).max_seq_length == 1024
    assert plan_training(load_config(), PROFILES["t4"], spec).max_seq_length == 2048


def _feed(losses: list[float], total: int = 40) -> tuple[list[str], list[str]]:
    """The losses logged one step apart through LearningCheck; its warnings and the
    progress messages it sent."""
    from types import SimpleNamespace

    from lmfast.training.callbacks import LearningCheck

    sent: list[str] = []
    check = LearningCheck(lambda step, total, message=None: sent.append(message or ""))
    args = SimpleNamespace(learning_rate=2e-6)
    for step, loss in enumerate(losses, start=1):
        state = SimpleNamespace(global_step=step, max_steps=total)
        check.on_log(args, state, None, logs={"loss": loss, "learning_rate": 2e-6})
    return check.warnings, sent


def test_a_loss_that_has_not_moved_is_said_with_the_rate_to_raise() -> None:
    warnings, sent = _feed([2.50, 2.49, 2.51, 2.48, 2.50, 2.47, 2.49, 2.50, 2.49, 2.48, 2.49,
                            2.48, 2.47, 2.49])  # fmt: skip
    (warning,) = warnings  # once, at 30 % of the run (step 12 of 40)
    assert "the loss has not moved" in warning and "2.500 at the start" in warning
    assert "training.learning_rate (now 2e-06; --lr)" in warning
    assert sent == [f"warning: {warning}"]


def test_a_loss_that_falls_or_starts_near_zero_raises_nothing() -> None:
    falling = [2.5 * 0.93**i for i in range(20)]
    assert _feed(falling) == ([], [])
    assert _feed([0.05] * 20) == ([], [])  # the data is already known: nothing to lose
    # before 30 % of the run nothing is judged, however flat
    assert _feed([2.5] * 11) == ([], [])


def test_steps_are_counted_as_the_trainer_counts_them() -> None:
    """Whole steps per epoch, the last one short: the plan's count is the run's count."""
    spec = model_spec("smollm2-135m-instruct")
    values = {"training.effective_batch_size": 6, "training.epochs": 2}
    cfg = load_config(values={**values, "training.max_seq_length": 256})
    assert total_steps(cfg, 200) == 2 * 34 == 68  # not ceil(400 / 6) = 67
    plan = plan_training(cfg, PROFILES["cpu"], spec, dataset_tokens=200 * 180, dataset_rows=200)
    assert plan.total_steps == 68
    half = load_config(values={"training.effective_batch_size": 6, "training.epochs": 1.5})
    assert total_steps(half, 200) == math.ceil(1.5 * 34) == 51
