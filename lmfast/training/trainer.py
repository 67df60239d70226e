"""transformers' Trainer with the changes LMFast needs.

The loss comes from the LM head at labelled positions only (lmfast.training.loss); running
out of memory splits the micro-batch in two and goes on from the same step (the effective
batch, and so the run, stays the same); a checkpoint write that fills the disk stops with a
clear error while the previous checkpoint stays intact. Imported only when training starts:
transformers is heavy.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from lmfast.errors import LMFastError
from lmfast.training.loss import masked_lm_loss


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _out_of_memory(e: BaseException) -> bool:
    # CUDA raises OutOfMemoryError; CPU allocation failures are plain RuntimeErrors.
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e)
    )


def _split(inputs: dict[str, Any], parts: int) -> list[dict[str, Any]]:
    n = next(iter(inputs.values())).shape[0]
    size = -(-n // parts)
    return [{k: v[i : i + size] for k, v in inputs.items()} for i in range(0, n, size)]


class LMFastTrainer(Trainer):
    # Micro-batches run as this many pieces after out-of-memory errors (1: not split).
    oom_splits: int = 1
    notice: Callable[[str], None] = staticmethod(lambda message: None)
    _snapshot_params: list[Any] | None = None
    # LMFast tasks scored at each evaluation (eval.tasks), with the tokenizer they need.
    eval_tasks: list[Any] = []  # noqa: RUF012 (replaced per instance, never mutated)
    eval_tokenizer: Any = None
    eval_batch_size: int = 8
    eval_limit: int | None = None
    last_task_metrics: dict[str, float] = {}  # noqa: RUF012 (replaced, never mutated)
    _tuner_layers: list[Any] | None = None
    # Another training loss over the same batches (distillation); None: masked cross-entropy.
    objective: Any = None
    learning_check: Any = None  # callbacks.LearningCheck: its warnings go into the result

    def training_step(
        self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> Any:
        """One micro-batch; on out-of-memory, the rest of it again in halves (and every later
        micro-batch too), with the loss normalised over the whole micro-batch so the update
        is the one the recipe asked for."""
        pending = _split(inputs, self.oom_splits) if self.oom_splits > 1 else [inputs]
        total = None
        while pending:
            piece = pending[0]
            saved = self._grad_snapshot(model)
            try:
                loss = super().training_step(model, piece, num_items_in_batch)
            except RuntimeError as e:  # torch.OutOfMemoryError is one
                if not _out_of_memory(e):
                    raise
                rows = piece["input_ids"].shape[0]
                if rows == 1:
                    raise
                self._restore_grads(model, saved)
                del e
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self.oom_splits *= 2
                pending[:1] = _split(piece, 2)
                if num_items_in_batch is None:  # pieces normalise by the whole micro-batch
                    labels = inputs["labels"][:, 1:]
                    ga = self.current_gradient_accumulation_steps
                    num_items_in_batch = int((labels != -100).sum()) * ga
                self.notice(
                    f"out of memory at step {self.state.global_step + 1}: micro-batch "
                    f"{rows} -> {-(-rows // 2)} rows, {self.oom_splits}x accumulation per "
                    "micro-batch; continuing from the same step"
                )
                continue
            pending.pop(0)
            total = loss if total is None else total + loss
        return total

    def _grad_snapshot(self, model: Any) -> list[tuple[Any, Any]] | None:
        """Gradients before a piece runs, so a piece that fails half-way through backward
        adds nothing. Kept only for adapters (a few MB); full fine-tuning would double the
        gradient memory, so there a failed backward's partial gradient stays in the step."""
        if self._snapshot_params is None:
            params = [p for p in model.parameters() if p.requires_grad]
            total = sum(p.numel() for p in model.parameters())
            small = sum(p.numel() for p in params) <= 0.1 * total
            self._snapshot_params = params if small else []
        params = self._snapshot_params
        if not params:
            return None
        return [(p, None if p.grad is None else p.grad.clone()) for p in params]

    @staticmethod
    def _restore_grads(model: Any, saved: list[tuple[Any, Any]] | None) -> None:
        if saved is not None:
            for p, g in saved:
                p.grad = g

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        """The held-out loss, plus the recipe's eval tasks (eval.tasks) scored on the model
        being trained, as `eval_<task>_<metric>`: logged, tracked, and usable for the best
        checkpoint and early stopping."""
        output = super().evaluation_loop(*args, **kwargs)
        if self.eval_tasks:
            prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
            output.metrics.update(self.score_tasks(prefix))
        return output

    def score_tasks(self, prefix: str = "eval") -> dict[str, float]:
        from lmfast.evaluation.runner import run_task
        from lmfast.evaluation.scorers import TransformersScorer

        scorer = TransformersScorer(
            self.model, self.eval_tokenizer, batch_size=self.eval_batch_size, owns_model=False
        )
        found: dict[str, float] = {}
        with self.accelerator.autocast():
            for task in self.eval_tasks:
                score, _ = run_task(scorer, task, limit=self.eval_limit)
                for name, value in score.metrics.items():
                    found[f"{prefix}_{task.name}_{name}"] = value
        self.last_task_metrics = found
        return found

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        rows = inputs.pop("row", None)
        # accelerate applies mixed precision by wrapping model.forward, which the masked loss
        # bypasses (it calls the decoder and the head itself): enter autocast here.
        with self.accelerator.autocast(), self._adapter_inputs_uncast(self.model):
            if self.objective is not None and model.training:
                # Held-out loss stays plain cross-entropy, so runs of any objective compare.
                loss = self.objective.loss(model, inputs, rows, num_items_in_batch)
            else:
                loss = masked_lm_loss(model, inputs, num_items_in_batch)
        if loss is None:  # an architecture the fast path does not cover
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        processes = self.accelerator.num_processes
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items counts every process's labels and DDP averages gradients over the
            # processes: scale back, as the Trainer does for its own loss.
            loss = loss * processes
        return (loss, {}) if return_outputs else loss

    @contextlib.contextmanager
    def _adapter_inputs_uncast(self, model: Any) -> Iterator[None]:
        """Under autocast, peft's cast of each adapter's input to the adapter's float32
        dtype only makes copies (autocast runs the matmul in 16-bit anyway): about 0.6 GB of
        saved activations for SmolLM2-135M at 8 x 256 tokens. Outside autocast (sample
        generation) the cast is needed, so it is switched off only here."""
        if not torch.is_autocast_enabled(model.device.type) or not hasattr(model, "peft_config"):
            yield
            return
        if self._tuner_layers is None:
            from peft.tuners.tuners_utils import BaseTunerLayer

            self._tuner_layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        for m in self._tuner_layers:
            m.cast_input_dtype_enabled = False
        try:
            yield
        finally:
            for m in self._tuner_layers:
                m.cast_input_dtype_enabled = True

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The objective's own terms (e.g. KL and cross-entropy), averaged since the last log."""
        if self.objective is not None and "loss" in logs:
            logs = {**logs, **self.objective.pop_logs()}
        super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        out = Path(self.args.output_dir)
        step = self.state.global_step
        try:
            super()._save_checkpoint(model, trial)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            shutil.rmtree(out / f"checkpoint-{step}", ignore_errors=True)
            previous = sorted(out.glob("checkpoint-*"))
            need = _folder_bytes(previous[-1]) if previous else 0
            raise LMFastError(
                f"disk full while writing checkpoint {step} in {out}: about "
                f"{need / 2**20:.0f} MB are needed per checkpoint. The previous checkpoint is "
                "intact; free space and run the same command to resume."
            ) from None
