"""align_orpo: preference alignment with TRL's ORPO (no reference model) or DPO.

Around TRL's trainers LMFast keeps what fine_tune gives every run: the hardware plan, the
model built with LoRA / QLoRA / full weights, resumable checkpoints with completion markers,
progress with reward margins and log-odds ratios, MLflow tracking, and an adapter or model
artifact whose parents are the base and the preference dataset. It also measures what the
alignment is for: on held-out pairs, how often the model prefers the chosen answer, before
and after.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore
from lmfast.config import LMFastConfig
from lmfast.data.readers import DataError
from lmfast.defaults import Choice, DataShape, LengthProfile, choose_seq_len, derive
from lmfast.errors import LMFastError
from lmfast.hashing import config_hash
from lmfast.progress import ProgressFn, no_progress
from lmfast.training.run import (
    FineTuneResult,
    RunId,
    explain_plan,
    open_run,
    run_folder,
    run_metrics,
    save_trained,
    split_held_out,
    train,
    trained_result,
    training_kwargs,
    use_threads,
    with_tracking,
)

SHOWN = {
    "rewards/margins": "margin",
    "rewards/accuracies": "pairs won",
    "log_odds_ratio": "log-odds ratio",
}


class AlignRequest(BaseModel):
    """Align a model to preference pairs; everything else comes from the recipe."""

    config: LMFastConfig = Field(
        default_factory=LMFastConfig,
        description="The recipe: model, data (preference pairs), training (LoRA, steps, rate).",
    )
    method: Literal["orpo", "dpo"] = Field(
        "orpo",
        description="orpo: odds-ratio preference optimisation, no reference model (fits a "
        "T4); dpo: direct preference optimisation against the frozen base (LoRA: the base "
        "is the adapter switched off, so no second copy).",
    )
    beta: float = Field(
        0.1,
        gt=0.0,
        le=10.0,
        description="ORPO: weight of the odds-ratio term (lambda in the paper); DPO: beta.",
    )
    name: str | None = Field(None, max_length=200, description="Name for the output artifact.")
    run_id: RunId = None
    fresh: bool = Field(False, description="Ignore earlier checkpoints of the same run.")


class AlignResult(BaseModel):
    training: FineTuneResult = Field(description="The run and its adapter / model artifact.")
    method: str
    pairs: int = Field(description="Training pairs.")
    held_out_pairs: int = Field(description="Pairs the preference accuracy is measured on.")
    measured_on: str = Field(description="held-out, or train when there is no held-out split.")
    preference: dict[str, float] = Field(
        description="base_/aligned_ preference_accuracy (share of pairs where the chosen "
        "answer is likelier) and mean_margin (log-prob difference)."
    )


def _derived(
    config: LMFastConfig,
    pairs: list[dict[str, str]],
    tokenizer: Any,
    spec: Any,
    method: str,
    plan: Any,
) -> tuple[LMFastConfig, DataShape, list[Choice]]:
    """The recipe's unset settings chosen from the pairs, as fine_tune does for rows: a
    pair is one row of its prompt and answers (TRL cuts each at max_length)."""
    import numpy as np

    from lmfast.data.tokenize import length_profile

    sample = pairs[:: max(1, len(pairs) // 2000)]  # at most about 2,000 pairs tokenized
    prompt = [len(tokenizer(p["prompt"])["input_ids"]) for p in sample]
    chosen = [len(tokenizer(p["chosen"])["input_ids"]) for p in sample]
    rejected = [len(tokenizer(p["rejected"])["input_ids"]) for p in sample]
    longest = np.array(prompt) + np.maximum(chosen, rejected)
    lengths = LengthProfile(**length_profile(longest))
    lengths.documents = len(pairs)
    per_pair = float(np.mean(np.array(prompt) + np.array(chosen) + np.array(rejected)))
    shape = DataShape(
        kind="pairs", lengths=lengths, rows=len(pairs), tokens=max(1, round(per_pair * len(pairs)))
    )
    choices: list[Choice] = []
    if config.training.max_seq_length is None:
        choice = choose_seq_len(lengths, "pairs", spec.context_length, plan.device != "cpu")
        choices.append(choice)
        training = config.training.model_copy(update={"max_seq_length": choice.value})
        config = config.model_copy(update={"training": training})
    derived = derive(config, shape, method, spec.parameters)  # type: ignore[arg-type]
    return derived.config, shape, [*choices, *derived.choices]


def _trl_trainer(method: str) -> tuple[Any, Any]:
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    from trl import DPOConfig, DPOTrainer

    return DPOConfig, DPOTrainer


def align(request: AlignRequest, progress: ProgressFn = no_progress) -> AlignResult:
    """Train on preference pairs; resumable; returns the adapter or model artifact."""
    import datasets
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    from lmfast.alignment.margins import margin_summary, preference_margins
    from lmfast.alignment.preferences import prepare_preferences, render_pairs
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.hardware import detect_hardware
    from lmfast.observability.tracking import run_tags, tracked_run
    from lmfast.plan import plan_training
    from lmfast.registry import model_spec, resolve_model
    from lmfast.training.callbacks import LearningCheck, MarkComplete, ProgressReport
    from lmfast.training.model import build

    store = ArtifactStore()
    config = request.config
    started = time.perf_counter()
    if not config.data.path:
        raise DataError("data.path: give preference pairs (a JSONL file, folder or dataset id)")
    resolved = resolve_model(config.model.reference, store=store)
    if resolved.format == "adapter" and request.method == "dpo" and config.training.lora.enabled:
        # DPO's reference would be the adapter switched off, the model before SFT, not the
        # SFT model the pairs should be judged against.
        raise LMFastError(
            f"model.reference: {config.model.reference!r} is a LoRA adapter; DPO with LoRA "
            "judges against the adapter switched off (its base, before this adapter's "
            "training). Merge it first (`lmfast merge ADAPTER`) and align the merged model, "
            "or use method orpo, which needs no reference"
        )
    spec = model_spec(config.model.reference)
    hardware = detect_hardware()
    plan = plan_training(config, hardware, spec)
    dataset = prepare_preferences(config.data.path, store, progress)
    tokenizer = load_tokenizer(config.model.reference)
    pairs = render_pairs(dataset, tokenizer)
    train_pairs, held_out = split_held_out(
        pairs, config.data.validation_split, config.training.seed, "pairs"
    )
    if config.data.max_samples:
        train_pairs = train_pairs[: config.data.max_samples]
    config, shape, choices = _derived(config, train_pairs, tokenizer, spec, request.method, plan)
    mean_tokens = shape.tokens / shape.rows
    plan = plan_training(
        config, hardware, spec, dataset_tokens=shape.tokens, dataset_rows=shape.rows
    )
    plan = explain_plan(plan, config, shape, choices, progress)

    key = {
        "config": config.model_dump(mode="json"),
        "method": request.method,
        "beta": request.beta,
        "data": dataset.manifest.dataset_version,
    }
    run = open_run(run_folder("align", key, request.run_id), request, request.fresh)
    use_threads(plan)

    progress(0, None, f"loading {resolved.name} for {request.method.upper()}")
    set_seed(config.training.seed)
    trainable = build(resolved, config, plan)
    measure = held_out or train_pairs[:64]
    base = margin_summary(preference_margins(trainable.model, trainable.tokenizer, measure))
    tags = run_tags(
        config_hash=config_hash(config.model_dump(mode="json")),
        dataset_artifact=dataset.id,
        dataset_version=dataset.manifest.dataset_version,
        hardware=plan.hardware,
        backend=trainable.backend,
        method=request.method,
        base_model=config.model.reference,
        run_id=run.id,
        plan=plan,
    )
    args_cls, trainer_cls = _trl_trainer(request.method)
    kwargs = training_kwargs(config, plan, run.checkpoints, [])
    kwargs.update(
        beta=request.beta,
        max_length=config.training.max_seq_length,
        gradient_checkpointing=False,  # `build` already set it up as the plan says
        neftune_noise_alpha=None,
    )
    with tracked_run(config.training.tracker, run.folder, tags) as tracked:
        kwargs["report_to"] = tracked.report_to
        rows_per_step = plan.micro_batch_size * plan.gradient_accumulation_steps
        report = ProgressReport(progress, mean_tokens * rows_per_step, shown=SHOWN)
        trainer = trainer_cls(
            model=trainable.model,
            args=args_cls(**kwargs),
            train_dataset=datasets.Dataset.from_list(train_pairs),
            eval_dataset=datasets.Dataset.from_list(held_out) if held_out else None,
            processing_class=trainable.tokenizer,
            callbacks=[report, MarkComplete()],
        )
        trainer.remove_callback(PrinterCallback)
        check = LearningCheck(progress)
        trainer.add_callback(check)
        progress(
            0,
            None,
            f"{request.method.upper()} on {len(train_pairs)} pairs; trainable "
            f"{trainable.trainable_parameters:,} of {trainable.total_parameters:,} parameters"
            + (f"; resuming from {run.resume.name}" if run.resume else ""),
        )
        output = train(trainer, run, plan.device)
        aligned = margin_summary(preference_margins(trainer.model, trainable.tokenizer, measure))
        preference = {
            **{f"base_{k}": v for k, v in base.items()},
            **{f"aligned_{k}": v for k, v in aligned.items()},
        }
        metrics = {**run_metrics(output, trainer, trainable, report, plan, started), **preference}
        last = [h for h in report.history if "rewards/margins" in h]
        if last:
            metrics.update({k: last[-1][k] for k in SHOWN if k in last[-1]})
        art, curve = save_trained(
            store,
            config=config,
            name=request.name,
            model=trainer.model,
            trainable=trainable,
            parents=[dataset.id],
            dataset_version=dataset.manifest.dataset_version,
            report=report,
            samples=[],
            metrics=metrics,
            extra={
                "plan": plan.model_dump(mode="json"),
                "run_id": run.id,
                "method": request.method,
                "beta": request.beta,
            },
        )
        tracked.finish({k.replace("/", "_"): v for k, v in metrics.items()}, run.files(art.path))
    training = with_tracking(
        trained_result(
            art, curve, run, dataset.id, trainable, metrics, plan, warnings=check.warnings
        ),
        tracked,
    )
    return AlignResult(
        training=training,
        method=request.method,
        pairs=len(train_pairs),
        held_out_pairs=len(measure),
        measured_on="held-out" if held_out else "train",
        preference=preference,
    )
