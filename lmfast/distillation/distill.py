"""distill: one typed function behind `lmfast distill`, the MCP tool and the Python API.

The student trains through fine_tune (same data path, trainer, checkpoints, resume, tracking
and artifacts) with the distillation objective in place of plain cross-entropy. Optionally
the student is first built from the teacher's layers; offline, the teacher's top-k
log-probabilities are stored once and the teacher is never loaded beside the student.
Afterwards teacher and student are evaluated side by side (evaluate) with decode speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from lmfast.artifacts import ArtifactStore
from lmfast.config import DEFAULT_MODEL, LMFastConfig
from lmfast.distillation.student import LayerChoice, StudentReport
from lmfast.errors import ConfigError
from lmfast.progress import ProgressFn, no_progress
from lmfast.training.finetune import FineTuneRequest
from lmfast.training.run import FineTuneResult, RunId


class DistillRequest(BaseModel):
    """Teach a student (config.model.reference, or one built from the teacher) to match a
    teacher's next-token distributions on a dataset."""

    config: LMFastConfig = Field(
        default_factory=LMFastConfig,
        description="The recipe: the student (model.reference), data, training, eval.",
    )
    teacher: str = Field(
        DEFAULT_MODEL, min_length=1, description="Teacher model reference (same tokenizer)."
    )
    mode: Literal["online", "offline"] = Field(
        "online",
        description="online: teacher in memory beside the student; offline: the teacher's "
        "top-k log-probabilities are stored once (teacher_labels artifact) and read back.",
    )
    alpha: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of the KL term; 1 - alpha weighs the labels' CE."
    )
    temperature: float = Field(
        2.0, gt=0.0, le=20.0, description="Softmax temperature of both distributions."
    )
    top_k: int = Field(
        32, ge=1, le=1024, description="Offline: teacher log-probabilities stored per token."
    )
    student_layers: LayerChoice | None = Field(
        None,
        description="Build the student from the teacher: 'every_other' layer or a list of "
        "layer indices (then leave model.reference unset).",
    )
    student_mlp_ratio: float | None = Field(
        None, gt=0.0, le=1.0, description="Built students: keep this share of MLP neurons."
    )
    eval_tasks: list[str] | None = Field(
        None,
        description="Tasks for the side-by-side report of teacher and student (default: "
        "eval.tasks; empty list: no report).",
    )
    eval_limit: int | None = Field(None, ge=1, description="At most this many examples per task.")
    name: str | None = Field(None, max_length=200, description="Name for the student artifact.")
    run_id: RunId = None
    fresh: bool = Field(False, description="Ignore earlier checkpoints of the same run.")

    @model_validator(mode="after")
    def _consistent(self) -> DistillRequest:
        path = Path(self.teacher).expanduser()
        if not path.is_absolute() and path.exists():
            self.teacher = str(path.resolve())
        model = self.config.model
        if self.student_layers is not None and model.reference not in (DEFAULT_MODEL, self.teacher):
            raise ValueError(
                f"student_layers builds the student from the teacher, but model.reference="
                f"{model.reference!r} names another student: give one or the other"
            )
        lora = self.config.training.lora
        if lora.enabled and "enabled" not in lora.model_fields_set:
            # A student learns all its weights unless the recipe asks for adapters; every
            # face (Python, CLI, MCP) gets this rule here, not a default of its own.
            self.config.training.lora = lora.model_copy(update={"enabled": False})
        if self.student_mlp_ratio is not None and self.student_layers is None:
            raise ValueError("student_mlp_ratio needs student_layers (it shapes a built student)")
        if self.mode == "offline" and self.config.data.streaming:
            raise ValueError(
                "mode='offline' stores teacher logits per row of a prepared dataset; "
                "streamed data (data.streaming=true) needs mode='online'"
            )
        return self


class DistillResult(BaseModel):
    training: FineTuneResult = Field(description="The student's run and artifact.")
    student: StudentReport | None = Field(None, description="The student built from the teacher.")
    teacher: str
    mode: str
    teacher_labels: dict[str, Any] | None = Field(
        None, description="Offline: the stored top-k artifact (id, bytes, k, coverage)."
    )
    evaluation: dict[str, Any] | None = Field(
        None, description="Side-by-side report: artifact id, path, per-model metrics."
    )


def distill(
    request: DistillRequest,
    progress: ProgressFn = no_progress,
    *,
    store: ArtifactStore | None = None,
) -> DistillResult:
    from lmfast.distillation.objective import Distillation, vocab_mismatch
    from lmfast.registry import resolve_model
    from lmfast.training.finetune import fine_tune

    store = store or ArtifactStore()
    config = request.config
    teacher = resolve_model(request.teacher, store=store)
    student = None
    if request.student_layers is not None:
        from lmfast.distillation.student import build_student

        student = build_student(
            request.teacher,
            request.student_layers,
            request.student_mlp_ratio,
            store=store,
            progress=progress,
        )
        config = config.model_copy(
            update={"model": config.model.model_copy(update={"reference": student.artifact_id})}
        )
    else:
        _check_vocabularies(request.teacher, config.model.reference, vocab_mismatch)

    labels = None
    if request.mode == "offline":
        labels = _teacher_labels(request, config, progress, store)
        # Train on the very dataset artifact the stored logits were computed on.
        dataset = labels.manifest.parents[0]
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"path": dataset})}
        )
    objective = Distillation(
        teacher, alpha=request.alpha, temperature=request.temperature, labels=labels
    )
    training = fine_tune(
        FineTuneRequest(
            config=config, name=request.name, run_id=request.run_id, fresh=request.fresh
        ),
        progress,
        store=store,
        objective=objective,
    )
    result = DistillResult(
        training=training,
        student=student,
        teacher=request.teacher,
        mode=request.mode,
        teacher_labels=None
        if labels is None
        else {
            "artifact_id": labels.id,
            "bytes": int(labels.manifest.metrics["bytes"]),
            "k": request.top_k,
            "positions": int(labels.manifest.metrics["positions"]),
            "coverage": labels.manifest.metrics["coverage"],
        },
    )
    tasks = config.eval.tasks if request.eval_tasks is None else request.eval_tasks
    if tasks:
        result.evaluation = _side_by_side(request, training, tasks, progress)
    return result


def _check_vocabularies(teacher: str, student: str, message: Any) -> None:
    """Refuse a student whose tokenizer differs, before anything heavy loads."""
    from lmfast.data.tokenize import load_tokenizer, tokenizer_fingerprint

    if tokenizer_fingerprint(load_tokenizer(teacher)) != tokenizer_fingerprint(
        load_tokenizer(student)
    ):
        raise ConfigError([("model.reference", message(teacher, f"student {student!r}"))])


def _teacher_labels(
    request: DistillRequest, config: LMFastConfig, progress: ProgressFn, store: ArtifactStore
) -> Any:
    """Prepare the dataset as training will read it, then store the teacher's top-k on it."""
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.distillation.teacher_labels import generate_teacher_labels
    from lmfast.hardware import detect_hardware
    from lmfast.plan import plan_training
    from lmfast.registry import model_spec
    from lmfast.training.finetune import feed_and_seq

    spec = model_spec(config.model.reference)
    plan = plan_training(config, detect_hardware(), spec)
    # The rows fine_tune would train on, at the sequence length it would choose.
    _, feed, _ = feed_and_seq(
        config,
        load_tokenizer(config.model.reference),
        spec,
        plan.device != "cpu",
        progress,
        None,
        store,
    )
    return generate_teacher_labels(
        request.teacher,
        feed.dataset_artifact,
        k=request.top_k,
        method=config.training.method,
        batch_size=plan.micro_batch_size,
        dtype=plan.dtype,
        device=plan.device,
        store=store,
        progress=progress,
    )


def _side_by_side(
    request: DistillRequest, training: FineTuneResult, tasks: list[str], progress: ProgressFn
) -> dict[str, Any]:
    from lmfast.evaluation.evaluate import EvaluateRequest, evaluate

    progress(0, None, "evaluating teacher and student side by side")
    # One backend for both, so decode speeds compare like for like.
    report = evaluate(
        EvaluateRequest(
            models=[request.teacher, training.artifact_id],
            tasks=tasks,
            limit=request.eval_limit,
            backend="transformers",
            name=f"distill {training.artifact_id}",
        ),
        progress,
    )
    return {
        "artifact_id": report.artifact_id,
        "path": report.path,
        "models": {
            m.label: {
                **{f"{t.task}.{k}": v for t in m.tasks for k, v in t.metrics.items()},
                **m.efficiency,
            }
            for m in report.models
        },
    }
