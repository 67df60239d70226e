"""Evaluation: perplexity, multiple-choice accuracy, generation metrics, lm-evaluation-harness
and comparison reports, on any model LMFast resolves."""

from __future__ import annotations

from lmfast.evaluation.evaluate import EvaluateRequest, EvaluateResult, evaluate
from lmfast.evaluation.tasks import Task, TaskError, TaskSpec, load_task, sample_tasks

__all__ = [
    "EvaluateRequest",
    "EvaluateResult",
    "Task",
    "TaskError",
    "TaskSpec",
    "evaluate",
    "load_task",
    "sample_tasks",
]
