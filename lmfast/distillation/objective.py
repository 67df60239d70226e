"""The distillation objective plugged into fine_tune's trainer (lmfast.training.objective)."""

from __future__ import annotations

from typing import Any

from lmfast.errors import LMFastError
from lmfast.progress import ProgressFn


class Distillation:
    """(1 - alpha) CE + alpha T^2 KL(teacher || student), online (teacher in memory) or
    offline (stored top-k teacher log-probabilities)."""

    shown = {"kl": "KL", "ce": "CE"}  # noqa: RUF012 (a class constant)

    def __init__(
        self,
        teacher: Any,
        *,
        alpha: float,
        temperature: float,
        labels: Any = None,
    ) -> None:
        """`teacher`: the resolved teacher model; `labels`: a teacher_labels artifact
        (offline mode) or None (online)."""
        self.teacher_ref, self.alpha, self.temperature = teacher, alpha, temperature
        self.labels_artifact = labels
        self.method = "distill-offline" if labels is not None else "distill-online"
        self.teacher: Any = None
        self.stored: Any = None
        self._sums = {"kl": 0.0, "ce": 0.0}
        self._count = 0

    def fingerprint(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "teacher": str(self.teacher_ref.path),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "labels": self.labels_artifact.id if self.labels_artifact is not None else None,
        }

    def attach(self, trainable: Any, feed: Any, plan: Any, progress: ProgressFn) -> None:
        from lmfast.data.tokenize import tokenizer_fingerprint

        student_vocab = tokenizer_fingerprint(trainable.tokenizer)
        if self.labels_artifact is not None:
            from lmfast.distillation.teacher_labels import open_teacher_labels

            self.stored = open_teacher_labels(self.labels_artifact.path)
            index = self.stored.index
            if index["tokenizer_fingerprint"] != student_vocab:
                raise LMFastError(vocab_mismatch(index["teacher"], "the student"))
            if index["dataset"] != feed.dataset_artifact:
                raise LMFastError(
                    f"teacher labels {self.labels_artifact.id} were made for dataset "
                    f"{index['dataset']}, not {feed.dataset_artifact}"
                )
            return
        from lmfast.distillation.teacher_labels import teacher_dtype
        from lmfast.loading import load_transformers

        progress(0, None, f"loading teacher {self.teacher_ref.name}")
        self.teacher, tokenizer = load_transformers(
            self.teacher_ref, dtype=teacher_dtype(self.teacher_ref, plan.dtype), device=plan.device
        )
        if tokenizer_fingerprint(tokenizer) != student_vocab:
            raise LMFastError(vocab_mismatch(self.teacher_ref.name, "the student"))
        self.teacher.eval()
        self.teacher.requires_grad_(False)

    def loss(self, model: Any, inputs: dict[str, Any], rows: Any, num_items: Any) -> Any:
        import torch

        from lmfast.distillation.loss import distillation_sums
        from lmfast.training.loss import labelled_hidden, normalise

        found = labelled_hidden(model, inputs)
        if found is None:
            raise LMFastError(
                f"{type(model).__name__}: distillation needs a decoder with a plain LM head"
            )
        hidden, targets, head = found
        logits = head(hidden)
        if self.stored is not None:
            if rows is None:
                raise LMFastError("offline distillation needs prepared (not streamed) data")
            ids, lps = self.stored.for_rows(rows.tolist())
            if len(ids) != len(targets):
                raise LMFastError(
                    f"stored teacher logits cover {len(ids)} positions of this batch, the "
                    f"student's labels {len(targets)}: the labels file does not match the data"
                )
            teacher: tuple[Any, ...] = (
                torch.from_numpy(ids.astype("int64")).to(logits.device),
                torch.from_numpy(lps.astype("float32")).to(logits.device),
            )
        else:
            with torch.no_grad():
                t_hidden, _, t_head = labelled_hidden(self.teacher, inputs)  # type: ignore[misc]
                t_logits = t_head(t_hidden)
            width = min(t_logits.shape[-1], logits.shape[-1])  # padded vocabularies differ
            logits, teacher = logits[..., :width], (t_logits[..., :width],)
        total, ce, kl = distillation_sums(logits, targets, teacher, self.alpha, self.temperature)
        self._sums["ce"] += float(ce)
        self._sums["kl"] += float(kl)
        self._count += int(targets.numel())
        return normalise(total, targets.numel(), num_items)

    def pop_logs(self) -> dict[str, float]:
        if not self._count:
            return {}
        logs = {k: round(v / self._count, 5) for k, v in self._sums.items()}
        self._sums, self._count = {"kl": 0.0, "ce": 0.0}, 0
        return logs

    def parents(self) -> list[str]:
        found = [str(self.teacher_ref.path)]
        return found + ([self.labels_artifact.id] if self.labels_artifact is not None else [])

    def summary(self) -> dict[str, Any]:
        return {"distillation": self.fingerprint()}


def vocab_mismatch(teacher: str, student: str) -> str:
    return (
        f"{student} and teacher {teacher} have different vocabularies: distillation compares "
        "their next-token distributions token by token, so the student must use the teacher's "
        "tokenizer (build one from the teacher with student_layers, or pick a model of the "
        "same family)"
    )
