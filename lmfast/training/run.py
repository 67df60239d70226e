"""One shape for every training run, shared by fine_tune (and distill, which is fine_tune
with another objective; tune, whose trials are fine_tune runs) and align (TRL's trainers).
In torchtune's terms a recipe's lifecycle is setup, train, save, cleanup; here they are plain
functions a method calls in order, not a base class to inherit:

    run = open_run(run_folder("align", key, request.run_id), request, request.fresh)
    use_threads(plan)
    with tracked_run(config.training.tracker, run.folder, tags) as tracked:
        trainer = ...                                   # the method's own part
        output = train(trainer, run, plan.device)       # resumes from the last checkpoint
        art, curve = save_trained(store, ...)           # adapter or model artifact
        tracked.finish(metrics, run.files(art))
    return with_tracking(trained_result(art, curve, run, ...), tracked)

A new method is one module calling these plus a row in the capabilities table.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore, write_atomic
from lmfast.config import LMFastConfig
from lmfast.defaults import Choice, DataShape, Derived, few_steps_warning
from lmfast.errors import LMFastError
from lmfast.hardware import peak_memory_gb, reset_peak_memory
from lmfast.hashing import config_hash
from lmfast.home import lmfast_home
from lmfast.plan import TrainingPlan
from lmfast.progress import ProgressFn
from lmfast.training.launch import launched

# A folder name under LMFAST_HOME/runs: no '..', no '/'. Shared by every training capability.
RunId = Annotated[
    str | None,
    Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$",
        description="Run folder under LMFAST_HOME/runs; the same run resumes from its last "
        "complete checkpoint. Default: derived from the recipe and the data's version.",
    ),
]


class FineTuneResult(BaseModel):
    artifact_id: str = Field(description="The trained adapter (LoRA) or model (full) artifact.")
    kind: str = Field(description="adapter or model.")
    path: str
    run_id: str
    run_dir: str
    dataset_artifact: str
    backend: str
    backend_reason: str
    resumed_from_step: int | None
    metrics: dict[str, float]
    plan: TrainingPlan
    samples: list[dict[str, Any]] = Field(default_factory=list)
    loss_curve: str | None = None
    tracking: dict[str, str] = Field(
        default_factory=dict, description="Tracker run (MLflow: run id and store URI)."
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Why the run may not have learned (too few steps, a loss that did not "
        "move), each with the setting to change.",
    )


@dataclass(frozen=True)
class TrainingRun:
    """A run folder under LMFAST_HOME/runs and where training resumes from."""

    folder: Path
    resume: Path | None

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def resumed_from_step(self) -> int | None:
        return int(self.resume.name.split("-")[1]) if self.resume else None

    def files(self, artifact_path: Path | str) -> list[Path]:
        """What the tracker keeps of a finished run: the pictures and the request."""
        art = Path(artifact_path)
        return [art / "loss_curve.png", art / "training_metrics.png", self.folder / "request.json"]


def run_folder(prefix: str, key: dict[str, Any], run_id: str | None) -> Path:
    """The request's run folder: the given run id, else `prefix-<hash of key>` so the same
    recipe on the same data resumes the same run."""
    return lmfast_home() / "runs" / (run_id or f"{prefix}-" + config_hash(key)[:12])


def open_run(folder: Path, request: BaseModel, fresh: bool, *, setup: bool = True) -> TrainingRun:
    """Set the run folder up (unless another process did: `setup=False`): `fresh` starts it
    over, request.json records what was asked; then find the last complete checkpoint."""
    from lmfast.training.callbacks import last_complete_checkpoint

    if setup:
        if fresh and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / "request.json", request.model_dump_json(indent=2))
    return TrainingRun(folder, last_complete_checkpoint(folder / "checkpoints"))


def explain_plan(
    plan: TrainingPlan,
    config: LMFastConfig,
    shape: DataShape | None,
    choices: list[Choice],
    progress: ProgressFn,
    data_warnings: list[str] | None = None,
) -> TrainingPlan:
    """The plan with the settings chosen for it, their one-line summary and its warnings
    (its own, what prep found in the data, and too few steps), announced before the run
    starts."""
    warnings = list(plan.warnings)  # the plan's own: a peak past the memory budget
    warnings += [w for w in data_warnings or [] if w not in warnings]
    if plan.total_steps is not None:
        warning = few_steps_warning(config, plan.total_steps, shape.rows if shape else 0)
        if warning:
            warnings.append(warning)
    summary = None
    if shape is not None and choices:
        derived = Derived(config=config, choices=choices)
        summary = derived.summary(shape, plan.total_steps, plan.effective_batch_size)
    plan = plan.model_copy(update={"choices": choices, "summary": summary, "warnings": warnings})
    for line in plan.notes_for_people():
        progress(0, None, line)
    return plan


def use_threads(plan: TrainingPlan, local_processes: int = 1) -> None:
    """The plan's CPU threads, shared by the processes on this machine."""
    if plan.num_threads:
        import torch

        torch.set_num_threads(max(1, plan.num_threads // local_processes))


def train(trainer: Any, run: TrainingRun, device: str) -> Any:
    """Train from the run's last complete checkpoint (or from the start)."""
    reset_peak_memory(device)
    return trainer.train(resume_from_checkpoint=str(run.resume) if run.resume else None)


def with_tracking(result: FineTuneResult, tracked: Any) -> FineTuneResult:
    """Name the tracker run in the result, once the tracker has closed it."""
    if tracked.run_id:
        result.tracking = {
            "tracker": "mlflow",
            "run_id": tracked.run_id,
            "uri": tracked.tracking_uri or "",
        }
    return result


def _best_metric(config: LMFastConfig) -> tuple[str, bool]:
    """(Trainer metric name, higher is better) choosing the best checkpoint."""
    if config.eval.metric is None:
        return "eval_loss", False
    from lmfast.evaluation.report import LOWER_IS_BETTER

    task, metric = config.eval.metric.split(".", 1)
    return f"eval_{task}_{metric}", metric not in LOWER_IS_BETTER


def training_kwargs(
    config: LMFastConfig, plan: TrainingPlan, out: Path, tracker: list[str]
) -> dict[str, Any]:
    """The recipe and plan as TrainingArguments fields (TRL's configs extend the same)."""
    t = config.training
    if t.learning_rate is None or t.warmup_ratio is None:
        raise RuntimeError("training_kwargs needs a derived recipe (lmfast.defaults.derive)")
    evaluate = config.data.validation_split > 0
    eval_steps = t.eval_steps or t.save_steps
    best_metric, greater_is_better = _best_metric(config)
    distributed: dict[str, Any] = {}
    if launched():
        distributed["ddp_backend"] = "nccl" if plan.device.startswith("cuda") else "gloo"
        distributed["ddp_find_unused_parameters"] = False
    return dict(
        **distributed,
        output_dir=str(out),
        per_device_train_batch_size=plan.micro_batch_size,
        per_device_eval_batch_size=plan.micro_batch_size,
        gradient_accumulation_steps=plan.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=t.weight_decay,
        max_steps=t.max_steps or -1,
        num_train_epochs=t.epochs or 1.0,
        max_grad_norm=t.max_grad_norm,
        optim=plan.optimizer,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if evaluate and eval_steps else "no",
        eval_steps=eval_steps,
        load_best_model_at_end=bool(evaluate and t.save_steps and t.early_stopping_patience),
        metric_for_best_model=best_metric,
        greater_is_better=greater_is_better,
        seed=t.seed,
        data_seed=t.seed,
        fp16=plan.dtype == "float16",  # mixed precision: autocast on CUDA and on CPUs alike
        bf16=plan.dtype == "bfloat16",
        use_cpu=plan.device == "cpu",
        neftune_noise_alpha=t.neftune_noise_alpha,
        report_to=tracker,
        run_name=out.parent.name,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        save_only_model=False,
        prediction_loss_only=True,
    )


def run_metrics(
    output: Any, trainer: Any, trainable: Any, report: Any, plan: Any, started: float
) -> dict[str, float]:
    """What every training run reports: loss, steps, parameters, speed, memory, time."""
    return {
        "train_loss": float(output.training_loss),
        "steps": float(trainer.state.global_step),
        "trainable_parameters": float(trainable.trainable_parameters),
        "total_parameters": float(trainable.total_parameters),
        "trainable_ratio": trainable.trainable_ratio,
        "tokens_per_second": round(report.tokens_per_second(trainer.state.global_step), 1),
        "peak_memory_gb": round(peak_memory_gb(plan.device), 3),
        "planned_peak_memory_gb": plan.estimated_peak_memory_gb,
        "seconds": round(time.perf_counter() - started, 1),
    }


def trained_result(
    art: Any,
    curve: Path | None,
    run: TrainingRun,
    dataset_artifact: str,
    trainable: Any,
    metrics: dict[str, float],
    plan: TrainingPlan,
    samples: list[dict[str, Any]] | None = None,
    warnings: list[str] | None = None,
) -> FineTuneResult:
    """The result of a run saved by `save_trained` (fine_tune, distill and align)."""
    return FineTuneResult(
        artifact_id=art.id,
        kind=art.manifest.kind,
        path=str(art.path),
        run_id=run.id,
        run_dir=str(run.folder),
        dataset_artifact=dataset_artifact,
        backend=trainable.backend,
        backend_reason=trainable.backend_reason,
        resumed_from_step=run.resumed_from_step,
        metrics=metrics,
        plan=plan,
        samples=samples or [],
        loss_curve=str(art.path / "loss_curve.png") if curve else None,
        warnings=[*plan.warnings, *(warnings or [])],
    )


def save_trained(
    store: ArtifactStore,
    *,
    config: LMFastConfig,
    name: str | None,
    model: Any,
    trainable: Any,
    parents: list[str],
    dataset_version: str | None,
    report: Any,
    samples: list[dict[str, Any]],
    metrics: dict[str, float],
    extra: dict[str, Any],
    plots: Callable[[Path], Any] | None = None,
) -> tuple[Any, Path | None]:
    """A trained adapter (LoRA) or model (full) as an artifact whose first parent is the base,
    with its loss curve, log history and samples (and the method's own `plots`, drawn into
    the artifact's folder); (artifact, loss curve or None)."""
    from lmfast.observability.plots import loss_curve, training_metrics

    lora = config.training.lora.enabled
    scratch = config.training.method == "pretrain"
    # A model from scratch descends from its tokenizer (and data); others from their base.
    base = config.tokenizer_reference if scratch else config.model.reference
    if Path(base).expanduser().exists():
        base = str(Path(base).expanduser().resolve())
    origin = [base]
    if lora and not scratch and _is_adapter(base, store):
        # An adapter trained further: the new one descends from it and, like it, applies
        # to the adapter's own base (it holds the old weights plus the new training).
        from lmfast.registry import adapter_base, resolve_model

        base = adapter_base(resolve_model(base, store=store).path)
        origin = [config.model.reference, base]
    with store.create(
        "adapter" if lora else "model",
        name=name,
        parents=[*origin, *parents],
        config=config.model_dump(mode="json"),
        dataset_version=dataset_version,
    ) as draft:
        # Only the trained adapter: DPO adds a frozen "ref" copy beside it.
        kwargs = {"selected_adapters": ["default"]} if lora else {}
        model.save_pretrained(str(draft.path), **kwargs)
        trainable.tokenizer.save_pretrained(str(draft.path))
        if lora:  # the adapter names the base as LMFast resolves it, not a temporary path
            cfg_path = draft.path / "adapter_config.json"
            adapter_cfg = json.loads(cfg_path.read_text())
            adapter_cfg["base_model_name_or_path"] = base
            cfg_path.write_text(json.dumps(adapter_cfg, indent=2))
        title = f"{config.model.template} from scratch" if scratch else base
        curve = loss_curve(
            report.history,
            draft.path / "loss_curve.png",
            title=title,
            parts={k: v for k, v in report.shown.items() if k not in ("loss", "eval_loss")},
        )
        training_metrics(report.history, draft.path / "training_metrics.png", title=title)
        if plots is not None:
            plots(draft.path)
        (draft.path / "log_history.json").write_text(json.dumps(report.history, indent=2))
        if samples:
            (draft.path / "samples.json").write_text(json.dumps(samples, indent=2))
        draft.metrics = metrics
        draft.extra = {
            "backend": trainable.backend,
            "backend_reason": trainable.backend_reason,
            "base_model": None if scratch else base,
            **({"template": config.model.template, "tokenizer": base} if scratch else {}),
            **extra,
        }
    assert draft.artifact is not None
    return draft.artifact, curve


def split_held_out(items: list[Any], fraction: float, seed: int, noun: str) -> tuple[list, list]:
    """(training, held-out) items: a seeded random `fraction` held out, at least one, and
    never all of them (a DataError naming data.validation_split and the `noun`)."""
    import numpy as np

    from lmfast.data.readers import DataError

    if not fraction:
        return items, []
    order = np.random.default_rng(seed).permutation(len(items))
    n_eval = max(1, round(len(items) * fraction))
    if n_eval >= len(items):
        raise DataError(
            f"data.validation_split={fraction} leaves no training {noun} out of {len(items)}"
        )
    held = {int(i) for i in order[:n_eval]}
    return (
        [x for i, x in enumerate(items) if i not in held],
        [x for i, x in enumerate(items) if i in held],
    )


def _is_adapter(reference: str, store: Any) -> bool:
    from lmfast.registry import resolve_model

    try:
        return resolve_model(reference, store=store).format == "adapter"
    except LMFastError:  # a hub id or an alias not on disk: not an adapter of ours
        return False
