"""Training settings derived from the data, the method and the model, not constants.

A recipe's fields and the command's flags always win; what they leave unset (None) is chosen
here, each choice with its reason, before the model loads. Pure functions of numbers the
caller already has (the data's length profile, the model's size, CPU or GPU): nothing here
touches a file or a device.

Why these rules (measured on the embedded SmolLM2-135M, 2 CPU cores; docs/training.md):

- **Steps.** LoRA's B matrices start at zero and Adam moves each weight by about the learning
  rate per step; warm-up and cosine decay spend the start and the end of a run at low rates.
  Runs of 5 and 19 steps left the model where it was (16.7 % exact match on a format task;
  9 of 60 held-out answers in the preferred form), runs of 60-72 steps learned the same
  tasks completely (100 %; 60 of 60). So a run gets at least MIN_STEPS optimizer steps,
  by a smaller batch first and by up to MAX_EPOCHS passes over small data.
- **Batch in tokens.** Rows of short conversations hold far fewer tokens than the sequence
  length, so the batch is counted in tokens: about TARGET_STEPS steps a run, between
  MIN_TOKENS_PER_STEP (below it the gradient is mostly noise) and MAX_TOKENS_PER_STEP.
- **Sequence length** covers 99 % of the documents (rounded up to a power of two), not the
  model's context: attention and activation memory grow with it and short data gains
  nothing from more. Raw text is cut into rows anyway, so it gets the longest length the
  hardware trains comfortably.
- **Learning rate** by method and size: 1e-3 for LoRA on a 135M model (best in the
  benchmark; the shipped CPU recipe), falling with the square root of the parameter count
  towards the 2e-4 that LoRA papers and peers use at 7B; full fine-tuning a tenth of that;
  every-token objectives (continued pretraining) and DPO half; pretraining from scratch
  higher, as small models are pretrained.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from lmfast.config import LMFastConfig

MIN_STEPS = 60
TARGET_STEPS = 100
MAX_EPOCHS = 3
MIN_TOKENS_PER_STEP = 1024
MAX_TOKENS_PER_STEP = 65536
MIN_SEQ = 128
# Longest derived sequence: CPU attention and activations at 2,048 tokens cost more time
# than short data gains; GPUs train 2,048 comfortably.
SEQ_CAP = {"cpu": 1024, "gpu": 2048}
WARMUP_RATIO = 0.05
_REFERENCE_PARAMETERS = 135e6

Method = Literal["sft", "cpt", "pretrain", "distill", "orpo", "dpo", "grpo"]
DataKind = Literal["chat", "text", "pairs", "prompts"]


class LengthProfile(BaseModel):
    """Tokens per document (conversation, text or preference pair) before packing."""

    documents: int = Field(ge=0)
    mean: float = Field(ge=0)
    p50: int = Field(ge=0)
    p90: int = Field(ge=0)
    p99: int = Field(ge=0)
    max: int = Field(ge=0)


class DataShape(BaseModel):
    """What the trainer will read per epoch: rows (packed sequences or pairs) and tokens."""

    kind: DataKind
    lengths: LengthProfile
    rows: int = Field(ge=1, description="Training rows per epoch.")
    tokens: int = Field(ge=1, description="Real tokens per epoch in those rows.")


class Choice(BaseModel):
    """One setting the plan chose because the recipe left it unset."""

    setting: str = Field(description="Recipe field, e.g. training.learning_rate.")
    value: float | int | str
    reason: str


def _pow2(n: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1.0, n))))


def seq_cap(context_length: int, gpu: bool) -> int:
    """The longest sequence the plan derives: the hardware's comfortable length or the
    model's context, whichever is shorter (also the length data is first prepared at)."""
    return min(context_length, SEQ_CAP["gpu" if gpu else "cpu"])


def choose_seq_len(
    lengths: LengthProfile, kind: DataKind, context_length: int, gpu: bool
) -> Choice:
    """Cover 99 % of the documents, rounded up to a power of two, within [MIN_SEQ, cap]."""
    cap = seq_cap(context_length, gpu)
    where = f"at most {cap} ({'GPU' if gpu else 'CPU'}"
    where += f", the model's context {context_length})" if cap == context_length else ")"
    noun = _noun(kind)
    if kind == "text" and lengths.p90 >= cap:
        return Choice(
            setting="training.max_seq_length",
            value=cap,
            reason=f"{lengths.documents:,} texts, 90 % longer than {lengths.p90:,} tokens are "
            f"cut into rows of the longest length this machine trains well, {where}",
        )
    covered = lengths.p99 if kind != "text" else lengths.p90
    seq = min(cap, max(MIN_SEQ, _pow2(covered)))
    share = "99 %" if kind != "text" else "90 %"
    cut = "" if lengths.max <= seq else f"; the longest ({lengths.max:,} tokens) are cut"
    return Choice(
        setting="training.max_seq_length",
        value=seq,
        reason=f"{share} of the {lengths.documents:,} {noun} have at most {covered:,} tokens "
        f"(median {lengths.p50:,}): rows of {seq}, {where}{cut}",
    )


def _noun(kind: DataKind) -> str:
    return {
        "chat": "conversations",
        "text": "texts",
        "pairs": "preference pairs",
        "prompts": "prompts",
    }[kind]


def learning_rate(method: Method, lora: bool, parameters: int, rank: int) -> Choice:
    """The peak rate for the method, adapter and model size (see the module docstring)."""
    scale = math.sqrt(_REFERENCE_PARAMETERS / max(parameters, 1))
    size = f"{parameters / 1e6:,.0f}M" if parameters < 1e9 else f"{parameters / 1e9:.1f}B"
    if method == "pretrain":
        lr = min(3e-3, max(3e-4, 2e-3 * scale))
        why = f"pretraining a {size} model from scratch"
    elif lora:
        lr = min(1e-3, max(1e-4, 1e-3 * scale))
        why = f"LoRA r={rank} on a {size} model"
    else:
        lr = min(1e-4, max(1e-5, 1e-4 * scale))
        why = f"full fine-tuning of a {size} model"
    if method == "grpo":
        lr /= 10
        why += ", a tenth: policy-gradient updates from sampled completions are noisy"
    if method in ("cpt", "dpo"):
        lr /= 2
        why += (
            ", halved: every token carries a loss"
            if method == "cpt"
            else ", halved for DPO's sharper objective"
        )
    return Choice(setting="training.learning_rate", value=_round_rate(lr), reason=why)


def _round_rate(lr: float) -> float:
    """Two significant digits: 3.7e-4, not 3.6742346e-4."""
    return float(f"{lr:.2g}")


class Derived(BaseModel):
    """A recipe with its unset fields chosen, and why."""

    config: LMFastConfig
    choices: list[Choice]

    def summary(self, shape: DataShape, steps: int | None, batch: int | None = None) -> str:
        """One line a person reads before the run starts (`batch`: the plan's effective
        batch, when it differs from the recipe's)."""
        values = {c.setting: c.value for c in self.choices}
        t = self.config.training
        parts = [
            f"{shape.lengths.documents:,} {_noun(shape.kind)} of {shape.lengths.p50:,}-"
            f"{shape.lengths.p99:,} tokens (median-p99)"
        ]
        if shape.kind == "prompts":
            parts.append(f"{t.grpo.num_generations} completions a prompt of up to "
                         f"{t.grpo.max_completion_length} tokens")  # fmt: skip
        else:
            parts.append(f"sequence length {t.max_seq_length}")
        batch = batch or t.effective_batch_size or t.target_effective_batch_size
        per_step = round(batch * shape.tokens / shape.rows)
        unit = {"pairs": "pair", "prompts": "completion"}.get(shape.kind, "row")
        parts.append(
            f"{batch} {unit}{'s' if batch != 1 else ''} (about {per_step:,} tokens) a step"
        )
        if t.max_steps:
            parts.append(f"{t.max_steps} steps")
        else:
            epochs = t.epochs or 1
            parts.append(f"{epochs:g} epoch{'s' if epochs != 1 else ''} = {steps} steps")
        lr = values.get("training.learning_rate", t.learning_rate)
        reason = next((c.reason for c in self.choices if c.setting.endswith("learning_rate")), "")
        parts.append(f"learning rate {lr:g}" + (f" for {reason}" if reason else ""))
        return ", ".join(parts)


def derive(
    config: LMFastConfig,
    shape: DataShape | None,
    method: Method,
    parameters: int,
    *,
    processes: int = 1,
) -> Derived:
    """Fill the recipe's unset learning rate, warm-up, batch and epochs from the data's
    shape (a stream, `shape` None, gets the rate and warm-up only); the sequence length is
    chosen before packing (`choose_seq_len`)."""
    t = config.training
    choices: list[Choice] = []
    updates: dict[str, object] = {}
    if t.learning_rate is None:
        c = learning_rate(method, t.lora.enabled, parameters, t.lora.rank)
        choices.append(c)
        updates["learning_rate"] = c.value
    if t.warmup_ratio is None:
        choices.append(
            Choice(
                setting="training.warmup_ratio",
                value=WARMUP_RATIO,
                reason="5 % of the steps: long enough for Adam's moment estimates to settle",
            )
        )
        updates["warmup_ratio"] = WARMUP_RATIO
    if shape is None:
        training = t.model_copy(update=updates)
        return Derived(config=config.model_copy(update={"training": training}), choices=choices)

    rows, per_row = shape.rows, shape.tokens / shape.rows
    lo = max(1, math.ceil(MIN_TOKENS_PER_STEP / per_row))
    hi = max(lo, math.floor(MAX_TOKENS_PER_STEP / per_row))
    unit = (t.micro_batch_size or 1) * processes  # the batch must split evenly
    batch = t.explicit_batch_size
    epochs = t.epochs
    if batch is None:
        passes = epochs or 1.0
        batch = min(hi, max(lo, math.floor(rows * passes / TARGET_STEPS)))
        if epochs is None and t.max_steps is None:
            per_epoch = math.ceil(rows / batch)
            if per_epoch < MIN_STEPS:
                epochs = float(min(MAX_EPOCHS, math.ceil(MIN_STEPS / per_epoch)))
                choices.append(
                    Choice(
                        setting="training.epochs",
                        value=epochs,
                        reason=f"one pass is only {per_epoch} steps of about "
                        f"{round(batch * per_row):,} tokens; at least {MIN_STEPS} are needed "
                        f"to learn, and at most {MAX_EPOCHS} passes to avoid memorising",
                    )
                )
                updates["epochs"] = epochs
        shrunk = False
        if t.max_steps is None:
            passes = epochs or 1.0
            if math.ceil(rows * passes / batch) < MIN_STEPS:
                batch, shrunk = max(1, math.floor(rows * passes / MIN_STEPS)), True
        # Multiples of 4 or 8 split into power-of-two micro-batches with no remainder;
        # rounded down when that keeps the steps or the tokens a step within bounds.
        quantum = 8 if batch >= 16 else 4 if batch >= 8 else 1
        unit = math.lcm(unit, quantum)
        rounded = round(batch / unit) * unit
        if shrunk or rounded > hi:
            rounded = math.floor(batch / unit) * unit
        batch = max(unit, rounded)
        choices.append(
            Choice(
                setting="training.effective_batch_size",
                value=batch,
                reason=f"{batch} rows of about {round(per_row):,} tokens = "
                f"{round(batch * per_row):,} tokens a step: about {TARGET_STEPS} steps a run, "
                f"{MIN_TOKENS_PER_STEP:,} to {MAX_TOKENS_PER_STEP:,} tokens a step, "
                f"fewer tokens when the data is too small for {MIN_STEPS} steps",
            )
        )
        updates["effective_batch_size"] = batch
    if epochs is None and t.max_steps is None:
        updates["epochs"] = 1.0
        choices.append(
            Choice(
                setting="training.epochs",
                value=1.0,
                reason=f"one pass gives {math.ceil(rows / batch)} steps, enough to learn",
            )
        )
    training = t.model_copy(update=updates)
    return Derived(config=config.model_copy(update={"training": training}), choices=choices)


def total_steps(config: LMFastConfig, rows: int, processes: int = 1) -> int:
    """Optimizer steps of the resolved recipe over `rows` training rows, counted as
    transformers' Trainer counts them: whole steps per epoch (the last one short), then
    epochs times that (200 rows at 6 a step for 2 epochs: 2 x 34 = 68, not 67)."""
    t = config.training
    if t.max_steps:
        return t.max_steps
    batch = t.effective_batch_size or t.target_effective_batch_size
    return trainer_steps(rows, batch, t.epochs or 1.0, processes)


def trainer_steps(rows: int, batch: int, epochs: float, processes: int = 1) -> int:
    """Each process reads its share of the rows, a step takes its share of the batch."""
    per_process = max(1, batch // max(1, processes))
    per_epoch = max(1, math.ceil(math.ceil(rows / max(1, processes)) / per_process))
    return max(1, math.ceil(epochs * per_epoch))


def few_steps_warning(config: LMFastConfig, steps: int, rows: int) -> str | None:
    """Say so when a run is too short to learn, naming the setting to change."""
    if steps >= MIN_STEPS:
        return None
    t = config.training
    if t.max_steps:
        fix = f"raise training.max_steps (now {t.max_steps}; --max-steps)"
    elif t.effective_batch_size and t.effective_batch_size > 1 and steps * 2 <= MIN_STEPS:
        fix = (
            f"lower training.effective_batch_size (now {t.effective_batch_size}) or raise "
            "training.epochs (--epochs)"
        )
    else:
        fix = (
            f"add data (only {rows:,} training rows), or raise training.epochs (--epochs) "
            "knowing a small set is then memorised"
        )
    return (
        f"only {steps} optimizer steps: a run this short barely moves the weights (at least "
        f"{MIN_STEPS} learn a task); {fix}"
    )
