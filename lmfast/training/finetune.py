"""fine_tune: one typed function behind `lmfast train`, the MCP tool and the Python API.

It resolves the hardware plan, prepares packed token rows (prep_dataset), loads the model
with LoRA / QLoRA / full training, runs transformers' Trainer with resumable checkpoints,
and stores the result as an adapter (or model) artifact whose parents are the base model and
the dataset. Distillation and ORPO reuse `prepare`, `build` and the run folder layout.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from lmfast.artifacts import ArtifactStore, write_atomic
from lmfast.config import LMFastConfig
from lmfast.errors import LMFastError
from lmfast.hardware import peak_memory_gb, reset_peak_memory
from lmfast.hashing import config_hash
from lmfast.home import lmfast_home
from lmfast.plan import TrainingPlan
from lmfast.progress import ProgressFn, no_progress
from lmfast.training.launch import LaunchSettings, launched, world
from lmfast.training.objective import TrainingObjective

logger = logging.getLogger(__name__)


# A folder name under LMFAST_HOME/runs: no '..', no '/'. Shared by every training capability.
RunId = Annotated[
    str | None,
    Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$",
        description="Run folder under LMFAST_HOME/runs; the same run resumes from its last "
        "complete checkpoint. Default: derived from the recipe and the data's version.",
    ),
]


class FineTuneRequest(BaseModel):
    """Train a model on a dataset; everything else comes from the recipe."""

    config: LMFastConfig = Field(
        default_factory=LMFastConfig, description="The recipe: model, data, training sections."
    )
    name: str | None = Field(None, max_length=200, description="Name for the output artifact.")
    run_id: RunId = None
    fresh: bool = Field(False, description="Ignore earlier checkpoints of the same run.")
    profile: Literal["t4", "a100", "h100", "cpu"] | None = Field(
        None, description="Plan for a simulated machine instead of this one (checks recipes)."
    )
    launch: LaunchSettings = Field(
        default_factory=LaunchSettings,
        description="Train on several processes or machines (accelerate launch); the run id "
        "does not depend on it, so a run resumes on any number of processes.",
    )

    @model_validator(mode="after")
    def _absolute_paths(self) -> FineTuneRequest:
        """Local paths become absolute, so a run resumes from any folder (and the detached
        job worker reads the same files)."""
        data, model = self.config.data, self.config.model
        for section, key in (
            (data, "path"),
            (model, "reference"),
            *((s, "path") for s in data.sources),
        ):
            value = getattr(section, key)
            if value and not Path(value).is_absolute() and Path(value).expanduser().exists():
                setattr(section, key, str(Path(value).expanduser().resolve()))
        if model.tokenizer and Path(model.tokenizer).expanduser().exists():
            model.tokenizer = str(Path(model.tokenizer).expanduser().resolve())
        if model.template:
            from lmfast.training.templates import load_template, template_file

            if self.config.training.method == "pretrain":
                load_template(model.template)  # an unknown name or file fails on every face
            file, name = template_file(model.template)
            if file.expanduser().is_file():
                full = str(file.expanduser().resolve())
                model.template = f"{full}:{name}" if name else full
        evals = self.config.eval
        evals.tasks = [
            str(Path(t).expanduser().resolve()) if Path(t).expanduser().is_file() else t
            for t in evals.tasks
        ]
        return self


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


def _best_metric(config: LMFastConfig) -> tuple[str, bool]:
    """(Trainer metric name, higher is better) choosing the best checkpoint."""
    if config.eval.metric is None:
        return "eval_loss", False
    from lmfast.evaluation.report import LOWER_IS_BETTER

    task, metric = config.eval.metric.split(".", 1)
    return f"eval_{task}_{metric}", metric not in LOWER_IS_BETTER


def _training_args(config: LMFastConfig, plan: TrainingPlan, out: Path, tracker: list[str]) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(**training_kwargs(config, plan, out, tracker))


def training_kwargs(
    config: LMFastConfig, plan: TrainingPlan, out: Path, tracker: list[str]
) -> dict[str, Any]:
    """The recipe and plan as TrainingArguments fields (TRL's configs extend the same)."""
    t = config.training
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


def run_folder(
    request: FineTuneRequest, dataset_version: str | None, objective: dict[str, Any] | None = None
) -> Path:
    cfg = request.config.model_dump(mode="json")
    key: dict[str, Any] = {"config": cfg, "data": dataset_version}
    if objective:
        key["objective"] = objective
    run_id = request.run_id or "run-" + config_hash(key)[:12]
    return lmfast_home() / "runs" / run_id


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


def fine_tune(
    request: FineTuneRequest,
    progress: ProgressFn = no_progress,
    *,
    dataset: Any = None,
    store: ArtifactStore | None = None,
    objective: TrainingObjective | None = None,
    callbacks: list[Any] | None = None,
) -> FineTuneResult:
    """Train; resumable; returns the adapter or model artifact. `objective` replaces the
    cross-entropy loss (distillation) and keeps everything else. With request.launch for
    several processes, this process prepares the data and launches them (lmfast.training.
    launch); inside them, rank 0 saves the result and the other ranks return None.
    `callbacks`: more transformers TrainerCallbacks (tune's pruning)."""
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.hardware import PROFILES, detect_hardware
    from lmfast.observability.tracking import run_tags, tracked_run
    from lmfast.plan import plan_training
    from lmfast.registry import model_spec, resolve_model
    from lmfast.training import data as training_data
    from lmfast.training.callbacks import last_complete_checkpoint
    from lmfast.training.model import build

    store = store or ArtifactStore()
    config = request.config
    started = time.perf_counter()
    in_launch = launched()
    rank, local_processes, processes = world()
    if request.launch.distributed and not in_launch:
        processes = request.launch.num_processes
        _check_launchable(request, dataset, objective)
    hardware = PROFILES[request.profile] if request.profile else detect_hardware()
    scratch = None
    if config.training.method == "pretrain":
        from lmfast.training.pretrain import from_scratch

        scratch = from_scratch(config)  # the template, its tokenizer and its shape
        resolved, spec, model_name = None, scratch.spec, scratch.name
    else:
        resolved = resolve_model(config.model.reference, store=store)
        spec, model_name = model_spec(config.model.reference), resolved.name
    # contradictions fail before any loading
    plan = plan_training(config, hardware, spec, processes=processes)
    if scratch is not None:
        scratch.check_plan(plan)
    if config.training.max_seq_length > spec.context_length:
        raise LMFastError(
            f"training.max_seq_length={config.training.max_seq_length} exceeds "
            f"{model_name}'s context of {spec.context_length}; use at most that"
        )
    if config.eval.tasks:  # bad task files fail now, not after the model has loaded
        from lmfast.evaluation.tasks import load_task

        for task in config.eval.tasks:
            load_task(task)

    if config.data.streaming:
        training_data.check_streaming(config)
    progress(0, None, f"tokenizer of {model_name}")
    tokenizer = scratch.tokenizer if scratch else load_tokenizer(config.model.reference)
    if config.data.streaming:
        feed = training_data.streaming_feed(config, tokenizer, store)
    else:
        feed = training_data.prepared_feed(
            config, tokenizer, spec.context_length, progress, dataset=dataset, store=store
        )
    if scratch is not None and scratch.template.seq2seq:
        from lmfast.training.pretrain import seq2seq_feed

        feed = seq2seq_feed(feed, scratch, config.training.seed)
    plan = plan_training(
        config, hardware, spec, dataset_tokens=feed.tokens_per_epoch, processes=processes
    )
    if plan.max_seq_length != feed.seq_len:
        plan = plan.model_copy(update={"max_seq_length": feed.seq_len})

    run_dir = run_folder(
        request, feed.dataset_version, objective.fingerprint() if objective else None
    )
    checkpoints = run_dir / "checkpoints"
    if not in_launch:  # the launching process set the run folder up for its processes
        if request.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / "request.json", request.model_dump_json(indent=2))
        if request.launch.distributed:
            from lmfast.training.launch import launch

            return launch(
                request, FineTuneResult, run_dir, feed.dataset_artifact, plan.device, progress
            )
    resume = last_complete_checkpoint(checkpoints)

    if plan.num_threads:
        import torch

        # Processes on one machine share its cores.
        torch.set_num_threads(max(1, plan.num_threads // local_processes))
    progress(0, None, f"loading {model_name} for training")
    from transformers import set_seed

    set_seed(config.training.seed)  # adapter (or model) initialisation is part of the recipe
    trainable = scratch.build(config, plan) if scratch else build(resolved, config, plan)
    if objective is not None:
        objective.attach(trainable, feed, plan, progress)
    method = objective.method if objective else config.training.method
    tags = run_tags(
        config_hash=config_hash(config.model_dump(mode="json")),
        dataset_artifact=feed.dataset_artifact,
        dataset_version=feed.dataset_version,
        hardware=plan.hardware,
        backend=trainable.backend,
        method=method,
        base_model=model_name if scratch else config.model.reference,
        run_id=run_dir.name,
        plan=plan,
    )
    main = rank == 0
    with tracked_run(config.training.tracker if main else "none", run_dir, tags) as tracked:
        trainer, report, samples = _make_trainer(
            config, plan, trainable, feed, checkpoints, tracked.report_to, progress, objective
        )
        for callback in callbacks or []:
            trainer.add_callback(callback)
        est = plan.estimated_training_time_minutes
        progress(
            0,
            None,
            f"{trainable.backend} ({trainable.backend_reason}); trainable "
            f"{trainable.trainable_parameters:,} of {trainable.total_parameters:,} parameters "
            f"({trainable.trainable_ratio:.2%}); planned peak {plan.estimated_peak_memory_gb} "
            f"GB; estimated {est if est is not None else '?'} min"
            + (f"; resuming from {resume.name}" if resume else ""),
        )
        reset_peak_memory(plan.device)
        output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        metrics = run_metrics(output, trainer, trainable, report, plan, started)
        metrics["oom_splits"] = float(trainer.oom_splits)
        if feed.eval is not None:
            metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])
            metrics.update(trainer.last_task_metrics)
        elif trainer.eval_tasks:
            metrics.update(trainer.score_tasks())
        final_losses = [h["loss"] for h in report.history if "loss" in h]
        if final_losses:
            metrics["last_logged_loss"] = final_losses[-1]
        if processes > 1:
            metrics["processes"] = float(processes)
        if not main:
            return None  # type: ignore[return-value]  # rank 0 saves and reports the run
        result = _save_result(
            request,
            trainer,
            trainable,
            feed,
            plan,
            report,
            samples,
            metrics,
            run_dir,
            resume,
            store,
            objective,
        )
        pictures = [Path(result.path) / n for n in ("loss_curve.png", "training_metrics.png")]
        tracked.finish(metrics, [*pictures, run_dir / "request.json"])
    if tracked.run_id:
        result.tracking = {
            "tracker": "mlflow",
            "run_id": tracked.run_id,
            "uri": tracked.tracking_uri or "",
        }
    return result


def _check_launchable(
    request: FineTuneRequest, dataset: Any, objective: TrainingObjective | None
) -> None:
    """What cannot cross to other processes, refused before anything loads."""
    if dataset is not None:
        raise LMFastError(
            "launch: an in-memory dataset cannot reach other processes; save it to a file or "
            "prepare it (`lmfast prep`) and give data.path"
        )
    if request.config.data.streaming:
        raise LMFastError(
            "launch: data.streaming=true runs in one process; prepare the dataset first "
            "(`lmfast prep --tokenizer ...`) so every process reads its own share of the rows"
        )
    if objective is not None:
        raise LMFastError(f"launch: {objective.method} runs in one process")


def _make_trainer(
    config: LMFastConfig,
    plan: TrainingPlan,
    trainable: Any,
    feed: Any,
    checkpoints: Path,
    report_to: list[str],
    progress: ProgressFn,
    objective: TrainingObjective | None = None,
) -> tuple[Any, Any, Any]:
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback

    from lmfast.training.callbacks import MarkComplete, ProgressReport, SampleAnswers
    from lmfast.training.trainer import LMFastTrainer

    args = _training_args(config, plan, checkpoints, report_to)
    rows_per_step = plan.effective_batch_size  # every process's rows: the run's throughput
    report = ProgressReport(
        progress,
        feed.tokens_per_row * rows_per_step,
        feed.tokens_seen,
        shown=objective.shown if objective else None,
    )
    report.device = plan.device
    samples = SampleAnswers(trainable.tokenizer, config.training.sample_prompts, progress)
    callbacks: list[Any] = [report, samples, MarkComplete()]
    if config.training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(config.training.early_stopping_patience))
    trainer = LMFastTrainer(
        model=trainable.model,
        args=args,
        train_dataset=feed.train,
        eval_dataset=feed.eval,
        data_collator=feed.collator,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes through `progress`, not print
    trainer.objective = objective
    if config.eval.tasks:
        from lmfast.evaluation.tasks import load_task

        trainer.eval_tasks = [load_task(t) for t in config.eval.tasks]
        trainer.eval_tokenizer = trainable.tokenizer
        trainer.eval_batch_size = config.eval.batch_size
        trainer.eval_limit = config.eval.limit

    def notice(message: str) -> None:
        logger.warning(message)
        progress(trainer.state.global_step, trainer.state.max_steps or None, message)

    trainer.notice = notice  # type: ignore[method-assign]
    return trainer, report, samples


def _save_result(
    request: FineTuneRequest,
    trainer: Any,
    trainable: Any,
    feed: Any,
    plan: TrainingPlan,
    report: Any,
    samples: Any,
    metrics: dict[str, float],
    run_dir: Path,
    resume: Path | None,
    store: ArtifactStore,
    objective: TrainingObjective | None = None,
) -> FineTuneResult:
    config = request.config
    art, curve = save_trained(
        store,
        config=config,
        name=request.name,
        model=trainer.model,
        trainable=trainable,
        parents=[feed.dataset_artifact, *(objective.parents() if objective else [])],
        dataset_version=feed.dataset_version,
        report=report,
        samples=samples.samples,
        metrics=metrics,
        extra={
            "plan": plan.model_dump(mode="json"),
            "run_id": run_dir.name,
            "method": objective.method if objective else config.training.method,
            **(objective.summary() if objective else {}),
        },
    )
    return trained_result(
        art, curve, run_dir, feed.dataset_artifact, trainable, resume, metrics, plan,
        samples.samples,
    )  # fmt: skip


def trained_result(
    art: Any,
    curve: Path | None,
    run_dir: Path,
    dataset_artifact: str,
    trainable: Any,
    resume: Path | None,
    metrics: dict[str, float],
    plan: TrainingPlan,
    samples: list[dict[str, Any]] | None = None,
) -> FineTuneResult:
    """The result of a run saved by `save_trained` (fine_tune, distill and align)."""
    return FineTuneResult(
        artifact_id=art.id,
        kind=art.manifest.kind,
        path=str(art.path),
        run_id=run_dir.name,
        run_dir=str(run_dir),
        dataset_artifact=dataset_artifact,
        backend=trainable.backend,
        backend_reason=trainable.backend_reason,
        resumed_from_step=int(resume.name.split("-")[1]) if resume else None,
        metrics=metrics,
        plan=plan,
        samples=samples or [],
        loss_curve=str(art.path / "loss_curve.png") if curve else None,
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
) -> tuple[Any, Path | None]:
    """A trained adapter (LoRA) or model (full) as an artifact whose first parent is the base,
    with its loss curve, log history and samples; (artifact, loss curve or None)."""
    from lmfast.observability.plots import loss_curve, training_metrics

    lora = config.training.lora.enabled
    scratch = config.training.method == "pretrain"
    # A model from scratch descends from its tokenizer (and data); others from their base.
    base = config.tokenizer_reference if scratch else config.model.reference
    if Path(base).expanduser().exists():
        base = str(Path(base).expanduser().resolve())
    with store.create(
        "adapter" if lora else "model",
        name=name,
        parents=[base, *parents],
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
