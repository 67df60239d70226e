"""Trainer callbacks: job progress with loss and ETA, sample answers at each evaluation,
a warning when the loss does not move, completion markers that make checkpoints safe to
resume from."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lmfast.progress import ProgressFn

COMPLETE = ".complete"
logger = logging.getLogger(__name__)
# Checked once, at this share of the run (and not before step 10): by then a run that learns
# has lowered its loss by well over STALL of the first logged value.
CHECK_AT = 0.3
STALL = 0.03


class ProgressReport(TrainerCallback):
    """Relays step, total, loss, learning rate, throughput and ETA to the progress function
    (job store, CLI bar, MCP notifications) and keeps the log for the loss curve."""

    def __init__(
        self,
        progress: ProgressFn,
        tokens_per_step: float,
        tokens_seen: Callable[[], int] | None = None,
        shown: dict[str, str] | None = None,
    ) -> None:
        """`tokens_per_step` is the prepared data's mean; `tokens_seen`, when given, counts
        real tokens exactly (streamed rows have no precomputed lengths); `shown` maps extra
        logged values (a distillation's KL, ORPO's reward margin) to their labels."""
        self.progress, self.tokens_per_step = progress, tokens_per_step
        self.tokens_seen = tokens_seen
        self.shown = {"loss": "loss", "eval_loss": "eval loss", **(shown or {})}
        self.history: list[dict[str, float]] = []
        self.device: str | None = None  # set by the trainer's owner: where memory is counted
        self.start = time.perf_counter()
        self.first_step = self.first_tokens = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.start, self.first_step = time.perf_counter(), state.global_step
        self.first_tokens = self.tokens_seen() if self.tokens_seen else 0

    def tokens_per_second(self, step: int) -> float:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        if self.tokens_seen:
            return (self.tokens_seen() - self.first_tokens) / elapsed
        return (step - self.first_step) * self.tokens_per_step / elapsed

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        logs = dict(logs or {})
        step, total = state.global_step, state.max_steps
        entry = {"step": float(step), **{k: float(v) for k, v in logs.items() if _num(v)}}
        done = step - self.first_step
        if "loss" in logs:  # training logs: throughput and memory over time, for the plots
            from lmfast.hardware import peak_memory_gb

            if done:
                entry["tokens_per_second"] = round(self.tokens_per_second(step), 1)
            entry["peak_memory_gb"] = round(peak_memory_gb(self.device or "cpu"), 3)
        self.history.append(entry)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (total - step) if done else None
        metrics = {k: float(v) for k, v in logs.items() if k in self.shown and _num(v)}
        if done:
            metrics["tokens_per_second"] = round(self.tokens_per_second(step), 1)
        if eta is not None:
            metrics["eta_seconds"] = round(eta, 1)
        # What a live run page shows beside the loss: the schedule and the memory peak.
        if _num(logs.get("learning_rate")):
            metrics["learning_rate"] = float(logs["learning_rate"])
        if "peak_memory_gb" in entry:
            metrics["peak_memory_gb"] = entry["peak_memory_gb"]
        parts = [f"step {step}/{total}"]
        parts += [f"{label} {logs[k]:.4f}" for k, label in self.shown.items() if _num(logs.get(k))]
        if eta is not None:
            parts.append(f"ETA {eta:.0f}s")
        self.progress(step, total, ", ".join(parts), **metrics)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class SampleAnswers(TrainerCallback):
    """Greedy answers to a few prompts at each evaluation, logged with the step."""

    def __init__(self, tokenizer: Any, prompts: list[str], progress: ProgressFn) -> None:
        self.tokenizer, self.prompts, self.progress = tokenizer, prompts, progress
        self.samples: list[dict[str, Any]] = []

    def on_evaluate(
        self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any
    ) -> None:
        if not self.prompts or model is None:
            return
        from lmfast.training.generation import greedy_answers

        answers = greedy_answers(model, self.tokenizer, self.prompts, max_new_tokens=48)
        self.samples.append({"step": state.global_step, "answers": answers})
        shown = "; ".join(f"{p!r} -> {a!r}" for p, a in zip(self.prompts, answers, strict=True))
        self.progress(state.global_step, state.max_steps, f"samples: {shown}"[:500])


class MarkComplete(TrainerCallback):
    """Trainer writes a checkpoint folder in place; the marker is written after everything
    in it, so a resume never picks a checkpoint a crash left half-written."""

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir() and state.is_world_process_zero:
            from lmfast.artifacts import write_atomic

            write_atomic(folder / COMPLETE, str(state.global_step))


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint with a completion marker; half-written ones are removed."""
    import shutil

    if not output_dir.is_dir():
        return None
    found = []
    for path in output_dir.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if not step.isdigit():
            continue
        if (path / COMPLETE).is_file():
            found.append((int(step), path))
        else:
            shutil.rmtree(path, ignore_errors=True)
    return max(found)[1] if found else None


class LearningCheck(TrainerCallback):
    """Warns once, at CHECK_AT of the run, when the logged loss is still within STALL of
    the first one: the run goes on, and the warning names the setting to change."""

    def __init__(self, progress: ProgressFn) -> None:
        self.progress = progress
        self.first: float | None = None
        self.checked = False
        self.warnings: list[str] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or not _num(loss):
            return
        if self.first is None:
            self.first = float(loss)
            return
        step, total = state.global_step, state.max_steps
        if self.checked or total <= 0 or step < max(10, CHECK_AT * total):
            return
        self.checked = True
        # A loss that starts near zero has nothing to lose: the data is already known.
        if self.first > 0.2 and loss > (1 - STALL) * self.first:
            message = (
                f"the loss has not moved: {self.first:.3f} at the start, {loss:.3f} after "
                f"{step} of {total} steps; raise training.learning_rate (now "
                f"{args.learning_rate:g}; --lr), or check that the answers in the data are "
                "what the model should learn"
            )
            self.warnings.append(message)
            logger.warning(message)
            self.progress(step, total, f"warning: {message}")
