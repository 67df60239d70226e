"""fine_tune: one typed function behind `lmfast train`, the MCP tool and the Python API.

It resolves the hardware plan, prepares packed token rows (prep_dataset), loads the model
with LoRA / QLoRA / full training, runs transformers' Trainer with resumable checkpoints,
and stores the result as an adapter (or model) artifact whose parents are the base model and
the dataset. The run's shape (folder, resume, threads, saving, tracking) is
`training/run.py`, which align shares; distill and tune run through fine_tune itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from lmfast.artifacts import ArtifactStore
from lmfast.config import LMFastConfig
from lmfast.defaults import Choice, choose_seq_len, derive, seq_cap
from lmfast.errors import LMFastError
from lmfast.hashing import config_hash
from lmfast.plan import TrainingPlan
from lmfast.progress import ProgressFn, no_progress
from lmfast.training.launch import LaunchSettings, launched, world
from lmfast.training.objective import TrainingObjective
from lmfast.training.run import (
    FineTuneResult,
    RunId,
    TrainingRun,
    explain_plan,
    open_run,
    run_folder,
    run_metrics,
    save_trained,
    train,
    trained_result,
    training_kwargs,
    use_threads,
    with_tracking,
)

logger = logging.getLogger(__name__)


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


def _training_args(config: LMFastConfig, plan: TrainingPlan, out: Path, tracker: list[str]) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(**training_kwargs(config, plan, out, tracker))


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
    from lmfast.observability.tracking import run_tags, tracked_run
    from lmfast.training.model import build

    store = store or ArtifactStore()
    if request.config.training.method == "grpo":
        if objective is not None or dataset is not None:
            raise LMFastError("training.method=grpo takes its prompt rows from data.path only")
        from lmfast.training.grpo import grpo

        return grpo(request, progress, store, callbacks)
    started = time.perf_counter()
    in_launch = launched()
    rank, local_processes, _ = world()
    planned = plan_run(request, progress, dataset=dataset, store=store, objective=objective)
    request, config, plan, feed = planned.request, planned.config, planned.plan, planned.feed
    scratch, resolved, method = planned.scratch, planned.resolved, planned.method
    model_name, processes = planned.model_name, planned.processes

    key: dict[str, Any] = {"config": config.model_dump(mode="json"), "data": feed.dataset_version}
    if objective is not None and objective.fingerprint():
        key["objective"] = objective.fingerprint()
    # The launching process sets the run folder up for the processes it starts.
    run = open_run(run_folder("run", key, request.run_id), request, request.fresh,
                   setup=not in_launch)  # fmt: skip
    if request.launch.distributed and not in_launch:
        from lmfast.training.launch import launch

        return launch(
            request, FineTuneResult, run.folder, feed.dataset_artifact, plan.device, progress
        )
    use_threads(plan, local_processes)
    progress(0, None, f"loading {model_name} for training")
    from transformers import set_seed

    set_seed(config.training.seed)  # adapter (or model) initialisation is part of the recipe
    trainable = scratch.build(config, plan) if scratch else build(resolved, config, plan)
    if objective is not None:
        objective.attach(trainable, feed, plan, progress)
    tags = run_tags(
        config_hash=config_hash(config.model_dump(mode="json")),
        dataset_artifact=feed.dataset_artifact,
        dataset_version=feed.dataset_version,
        hardware=plan.hardware,
        backend=trainable.backend,
        method=method,
        base_model=model_name if scratch else config.model.reference,
        run_id=run.id,
        plan=plan,
    )
    main = rank == 0
    with tracked_run(config.training.tracker if main else "none", run.folder, tags) as tracked:
        trainer, report, samples = _make_trainer(
            config, plan, trainable, feed, run.checkpoints, tracked.report_to, progress, objective
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
            + (f"; resuming from {run.resume.name}" if run.resume else ""),
        )
        output = train(trainer, run, plan.device)
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
            run,
            store,
            objective,
        )
        tracked.finish(metrics, run.files(result.path))
    return with_tracking(result, tracked)


@dataclass
class PlannedRun:
    """What fine_tune settles before it loads the model: the recipe with every derived
    setting filled in, the hardware plan with its reasons, and the prepared data."""

    request: FineTuneRequest
    config: LMFastConfig
    plan: TrainingPlan
    feed: Any  # training.data.Feed
    method: str
    model_name: str
    processes: int
    resolved: Any = None  # registry.ResolvedModel; None when pretraining from scratch
    scratch: Any = None  # training.pretrain.Scratch when pretraining from scratch


def plan_run(
    request: FineTuneRequest,
    progress: ProgressFn = no_progress,
    *,
    dataset: Any = None,
    store: ArtifactStore | None = None,
    objective: TrainingObjective | None = None,
) -> PlannedRun:
    """Everything fine_tune decides before training: check the recipe, prepare the data
    (cached as dataset artifacts, which the run then reuses) and derive the settings the
    recipe leaves open. `lmfast plan --data` shows it without training."""
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.hardware import PROFILES, detect_hardware
    from lmfast.plan import plan_training
    from lmfast.registry import model_spec, resolve_model
    from lmfast.training import data as training_data

    store = store or ArtifactStore()
    config = request.config
    if config.training.method == "grpo":
        raise LMFastError(
            "training.method=grpo: its steps and batch come from the prompts and the "
            "generations per prompt at run time; plan it with `lmfast plan` without --data"
        )
    _, _, processes = world()
    if request.launch.distributed and not launched():
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
    if (config.training.max_seq_length or 0) > spec.context_length:
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
    method = objective.method if objective else config.training.method
    config, feed, choices = feed_and_seq(
        config, tokenizer, spec, plan.device != "cpu", progress, dataset, store
    )
    if scratch is not None and scratch.template.seq2seq:
        from lmfast.training.pretrain import seq2seq_feed

        feed = seq2seq_feed(feed, scratch, config.training.seed)
    derived = derive(
        config,
        feed.shape(),
        "distill" if method.startswith("distill") else method,  # type: ignore[arg-type]
        spec.parameters,
        processes=processes,
    )
    config = derived.config
    request = request.model_copy(update={"config": config})
    plan = plan_training(
        config,
        hardware,
        spec,
        dataset_tokens=feed.tokens_per_epoch,
        processes=processes,
        dataset_rows=feed.rows,
        labelled_share=feed.labelled_share,
    )
    if plan.max_seq_length != feed.seq_len:
        plan = plan.model_copy(update={"max_seq_length": feed.seq_len})
    plan = explain_plan(
        plan, config, feed.shape(), [*choices, *derived.choices], progress, feed.warnings
    )
    return PlannedRun(
        request=request,
        config=config,
        plan=plan,
        feed=feed,
        method=method,
        model_name=model_name,
        processes=processes,
        resolved=resolved,
        scratch=scratch,
    )


def feed_and_seq(
    config: LMFastConfig,
    tokenizer: Any,
    spec: Any,
    gpu: bool,
    progress: ProgressFn,
    dataset: Any,
    store: ArtifactStore,
) -> tuple[LMFastConfig, Any, list[Choice]]:
    """The training rows, at the recipe's sequence length or one chosen from the data: the
    data is prepared at the longest length the plan would derive, its documents' token
    counts choose the length, and it is packed again when that differs (prep keeps both
    as cached dataset artifacts)."""
    from lmfast.training import data as training_data

    t = config.training
    if config.data.streaming:
        if t.max_seq_length:
            return config, training_data.streaming_feed(config, tokenizer, store), []
        seq = seq_cap(spec.context_length, gpu)
        choice = Choice(
            setting="training.max_seq_length",
            value=seq,
            reason="a stream has no length profile: the longest length this machine trains well",
        )
        config = _with_training(config, max_seq_length=seq)
        return config, training_data.streaming_feed(config, tokenizer, store), [choice]
    unfiltered = config
    config, choices = _filters_choice(config)
    seq = t.max_seq_length or seq_cap(spec.context_length, gpu)
    feed = training_data.prepared_feed(
        config, tokenizer, spec.context_length, progress, dataset, store, seq_len=seq
    )
    if feed.seq_fixed:  # a tokenized dataset artifact: prepared before, not filtered here
        config, choices = unfiltered, []
    if t.max_seq_length:
        return config, feed, choices
    if feed.seq_fixed:
        choice = Choice(
            setting="training.max_seq_length",
            value=feed.seq_len,
            reason="the tokenized dataset's rows (prepared with lmfast prep --seq-len)",
        )
    else:
        choice = choose_seq_len(feed.lengths, feed.kind, spec.context_length, gpu)
        if choice.value != feed.seq_len:
            progress(0, None, f"packing the data into rows of {choice.value} tokens")
            feed = training_data.prepared_feed(
                config,
                tokenizer,
                spec.context_length,
                progress,
                dataset,
                store,
                seq_len=int(choice.value),
            )
    return _with_training(config, max_seq_length=feed.seq_len), feed, [*choices, choice]


def _filters_choice(config: LMFastConfig) -> tuple[LMFastConfig, list[Choice]]:
    """The prep preset for data prepared here, recorded in the config with its reason."""
    from lmfast.training.data import training_filters

    if config.data.filters != "auto":
        return config, []
    preset = training_filters(config)
    reason = (
        "pretraining from scratch: prep's filters for raw text (length, repetition, bad words)"
        if preset == "document"
        else "the data is what you chose to learn: only length and bad-word filters "
        "(data.filters=document also drops repeated lines and boilerplate)"
    )
    data = config.data.model_copy(update={"filters": preset})
    return config.model_copy(update={"data": data}), [
        Choice(setting="data.filters", value=preset, reason=reason)
    ]


def _with_training(config: LMFastConfig, **updates: Any) -> LMFastConfig:
    return config.model_copy(update={"training": config.training.model_copy(update=updates)})


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

    from lmfast.training.callbacks import (
        LearningCheck,
        MarkComplete,
        ProgressReport,
        SampleAnswers,
    )
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
    check = LearningCheck(progress)
    callbacks: list[Any] = [report, samples, check, MarkComplete()]
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
    trainer.learning_check = check
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
    run: TrainingRun,
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
            "run_id": run.id,
            "method": objective.method if objective else config.training.method,
            **(objective.summary() if objective else {}),
        },
    )
    return trained_result(
        art,
        curve,
        run,
        feed.dataset_artifact,
        trainable,
        metrics,
        plan,
        samples.samples,
        trainer.learning_check.warnings,
    )
