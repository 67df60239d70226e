"""The hook another training loss plugs into: distillation trains with fine_tune's data path,
trainer, checkpoints, resume, tracking and artifacts, and changes only the loss."""

from __future__ import annotations

from typing import Any, Protocol

from lmfast.progress import ProgressFn


class TrainingObjective(Protocol):
    method: str  # recorded in the run's tags and the artifact ("distill-online", ...)
    shown: dict[str, str]  # logged values relayed with progress -> their labels

    def fingerprint(self) -> dict[str, Any]:
        """Settings that make a different run (part of the run id, so resume is safe)."""
        ...

    def attach(self, trainable: Any, feed: Any, plan: Any, progress: ProgressFn) -> None:
        """Called once the student is built and the data is known (load a teacher, open and
        check stored logits)."""
        ...

    def loss(self, model: Any, inputs: dict[str, Any], rows: Any, num_items: Any) -> Any:
        """The training loss of one micro-batch (`rows`: the dataset rows, when prepared)."""
        ...

    def pop_logs(self) -> dict[str, float]:
        """The loss's parts averaged since the last call (logged with the loss)."""
        ...

    def parents(self) -> list[str]:
        """Artifacts the result also descends from (teacher, stored teacher logits)."""
        ...

    def summary(self) -> dict[str, Any]:
        """Kept in the trained artifact's manifest."""
        ...
