"""training.method=grpo: group-relative policy optimisation with TRL's GRPOTrainer.

For each prompt the model samples `num_generations` completions; the reward functions
(lmfast.training.rewards) score them, and each completion is pushed up or down by how it
compares with its group. Around TRL's trainer LMFast keeps what every run has (the hardware
plan, LoRA / QLoRA / full weights, resumable checkpoints, progress with reward, spread, KL
and completion length, tracking, an adapter or model artifact) and measures what GRPO is
for: the rewards of greedy answers to held-out prompts, before and after.

Prompt rows are JSONL objects with `prompt` (a string or chat messages) and any other fields
the rewards read (answer, tools, tool, schema, pattern).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

from lmfast.artifacts import ArtifactStore
from lmfast.config import LMFastConfig
from lmfast.data.readers import DataError
from lmfast.defaults import MAX_EPOCHS, MIN_STEPS, Choice, DataShape, LengthProfile, derive
from lmfast.errors import LMFastError
from lmfast.hashing import config_hash
from lmfast.progress import ProgressFn
from lmfast.training.run import (
    FineTuneResult,
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
    "reward": "reward",
    "reward_std": "spread",
    "kl": "KL",
    "completions/mean_length": "length",
}
PROMPTS_FORMAT = "prompts"
HELD_OUT_MAX = 64  # held-out prompts answered greedily before and after training
# Longest completion a run derives (the base model's greedy answers are read up to this):
# on a CPU sampling is most of a step's time, and a batch samples until its longest
# completion ends.
PROBE_TOKENS = {"cpu": 128, "gpu": 512}
MIN_COMPLETION = 32
SHOWN_PROBLEMS = 10


def grpo(
    request: Any, progress: ProgressFn, store: ArtifactStore, callbacks: list[Any] | None = None
) -> FineTuneResult:
    """Train `request.config` (training.method=grpo) on its prompt rows; resumable.
    `callbacks`: more transformers TrainerCallbacks."""
    import datasets
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    from lmfast.data.tokenize import load_tokenizer
    from lmfast.hardware import PROFILES, detect_hardware
    from lmfast.observability.plots import reward_curve
    from lmfast.observability.tracking import run_tags, tracked_run
    from lmfast.plan import plan_training
    from lmfast.registry import model_spec, resolve_model
    from lmfast.training.callbacks import MarkComplete, ProgressReport
    from lmfast.training.generation import greedy_batch
    from lmfast.training.model import build
    from lmfast.training.rewards import load_rewards

    config: LMFastConfig = request.config
    started = time.perf_counter()
    if request.launch.distributed:
        raise LMFastError("launch: training.method=grpo runs in one process")
    if config.data.streaming:
        raise LMFastError("data.streaming: GRPO reads its prompt rows whole; drop streaming")
    if not config.data.path:
        raise DataError("data.path: give prompt rows (JSONL with a 'prompt' field)")
    load_rewards(config.training.grpo)  # a bad reward fails before any loading
    resolved = resolve_model(config.model.reference, store=store)
    spec = model_spec(config.model.reference)
    hardware = PROFILES[request.profile] if request.profile else detect_hardware()
    dataset_id, version, rows = prepare_prompts(config.data.path, store, progress)
    tokenizer = load_tokenizer(config.model.reference)
    rendered = render_prompts(rows, tokenizer)
    nested = frozenset(k for r in rows for k, v in r.items() if isinstance(v, (list, dict)))
    rewards = load_rewards(config.training.grpo, nested - {"prompt"})
    train_rows, held_out = split_held_out(
        rendered, config.data.validation_split, config.training.seed, "prompts"
    )
    held_out = held_out[:HELD_OUT_MAX]
    if config.data.max_samples:
        train_rows = train_rows[: config.data.max_samples]
    plan = plan_training(config, hardware, spec)  # the model's device and dtype
    use_threads(plan)
    progress(0, None, f"loading {resolved.name} for GRPO")
    set_seed(config.training.seed)
    trainable = build(resolved, config, plan)
    # Greedy answers to the held-out prompts: the accuracy before training, and how long
    # this model's answers run, which sizes the completions.
    measure = held_out or train_rows[:HELD_OUT_MAX]
    budget = config.training.grpo.max_completion_length or _probe_tokens(plan.device)
    answers = greedy_batch(trainable.model, trainable.tokenizer, [r["prompt"] for r in measure],
                           budget)  # fmt: skip
    config, shape, choices = derive_grpo(
        config, train_rows, tokenizer, spec, plan.device, [len(ids) for _, ids in answers]
    )
    g = config.training.grpo
    completion_len = int(g.max_completion_length or budget)
    before = score_answers(rewards, measure, _cut(answers, completion_len, tokenizer))
    plan = plan_training(
        config, hardware, spec, dataset_tokens=shape.tokens, dataset_rows=shape.rows
    )
    plan = _fit_micro_batch(plan, config)
    plan = explain_plan(plan, config, shape, choices, progress)
    measured = f"{'held-out' if held_out else 'training'} rewards ({len(measure)} prompts, greedy)"
    progress(0, None, f"{measured} before: " + _fmt(before))
    key = {"config": config.model_dump(mode="json"), "data": version}
    run = open_run(run_folder("grpo", key, request.run_id), request, request.fresh)
    tags = run_tags(
        config_hash=config_hash(config.model_dump(mode="json")),
        dataset_artifact=dataset_id,
        dataset_version=version,
        hardware=plan.hardware,
        backend=trainable.backend,
        method="grpo",
        base_model=config.model.reference,
        run_id=run.id,
        plan=plan,
    )
    from trl import GRPOConfig

    kwargs = training_kwargs(config, plan, run.checkpoints, [])
    kwargs.update(
        num_generations=g.num_generations,
        max_completion_length=completion_len,
        temperature=g.temperature,
        beta=g.beta,
        reward_weights=g.reward_weights,
        gradient_checkpointing=False,  # `build` already set it up as the plan says
        neftune_noise_alpha=None,
        log_completions=False,
        # Training turns the KV cache off on the model; sampling needs it (about 3x faster).
        generation_kwargs={"use_cache": True},
        logging_steps=min(config.training.logging_steps, 5),
    )
    with tracked_run(config.training.tracker, run.folder, tags) as tracked:
        kwargs["report_to"] = tracked.report_to
        per_step = plan.effective_batch_size * shape.tokens / shape.rows
        report = ProgressReport(progress, per_step, shown=SHOWN)
        report.device = plan.device
        trainer = _trainer_class()(
            model=trainable.model,
            reward_funcs=rewards,
            args=GRPOConfig(**kwargs),
            train_dataset=datasets.Dataset.from_list([_columns(r) for r in train_rows]),
            processing_class=trainable.tokenizer,
            callbacks=[report, MarkComplete()],
        )
        trainer.remove_callback(PrinterCallback)
        for callback in callbacks or []:
            trainer.add_callback(callback)
        progress(
            0,
            None,
            f"GRPO on {len(train_rows)} prompts x {g.num_generations} completions; "
            f"rewards {', '.join(g.rewards)}; trainable {trainable.trainable_parameters:,} of "
            f"{trainable.total_parameters:,} parameters"
            + (f"; resuming from {run.resume.name}" if run.resume else ""),
        )
        output = train(trainer, run, plan.device)
        after = held_out_rewards(
            trainer.model, trainable.tokenizer, rewards, measure, completion_len
        )
        progress(plan.total_steps or 0, plan.total_steps, f"{measured} after: " + _fmt(after))
        metrics = run_metrics(output, trainer, trainable, report, plan, started)
        metrics.update({f"base_reward_{k}": v for k, v in before.items()})
        metrics.update({f"trained_reward_{k}": v for k, v in after.items()})
        metrics["generation_share"] = trainer.generation_share()
        metrics["train_seconds"] = float(output.metrics.get("train_runtime", 0.0))
        metrics["completions_per_second"] = (
            metrics["steps"] * plan.effective_batch_size / max(metrics["train_seconds"], 1e-9)
        )
        logged = [h for h in report.history if "reward" in h]
        if logged:
            metrics["last_reward"] = logged[-1]["reward"]
            metrics["first_reward"] = logged[0]["reward"]
        warnings = reward_warnings(report.history)
        for w in warnings:
            progress(trainer.state.global_step, plan.total_steps, f"warning: {w}")
        art, curve = save_trained(
            store,
            config=config,
            name=request.name,
            model=trainer.model,
            trainable=trainable,
            parents=[dataset_id],
            dataset_version=version,
            report=report,
            samples=[],
            metrics=metrics,
            extra={"plan": plan.model_dump(mode="json"), "run_id": run.id, "method": "grpo"},
            plots=lambda folder: reward_curve(report.history, folder / "reward_curve.png"),
        )
        tracked.finish({k.replace("/", "_"): v for k, v in metrics.items()}, run.files(art.path))
    return with_tracking(
        trained_result(art, curve, run, dataset_id, trainable, metrics, plan, warnings=warnings),
        tracked,
    )


def _trainer_class() -> Any:
    """GRPOTrainer that times its sampling: generation is most of a step on a CPU, and the
    share tells a user where the time goes."""
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):  # type: ignore[misc]
        generation_seconds = 0.0
        started: float | None = None

        def _generate(self, prompts: list) -> Any:
            begin = time.perf_counter()
            if self.started is None:
                self.started = begin
            try:
                return super()._generate(prompts)
            finally:
                self.generation_seconds += time.perf_counter() - begin

        def generation_share(self) -> float:
            if self.started is None:
                return 0.0
            return self.generation_seconds / max(time.perf_counter() - self.started, 1e-9)

    return TimedGRPOTrainer


# -- prompt rows ---------------------------------------------------------------------------


def _check_row(record: Any) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"a JSON object is needed, got {type(record).__name__}")
    prompt = record.get("prompt")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("'prompt' is empty")
        return
    if (
        isinstance(prompt, list)
        and prompt
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m
            for m in prompt
        )
    ):
        return
    raise ValueError(
        "'prompt' must be a non-empty string or a list of {role, content} messages"
        + ("" if "prompt" in record else f" (fields: {', '.join(sorted(record)) or 'none'})")
    )


def read_prompt_files(source: str) -> list[dict[str, Any]]:
    """Every row of the JSONL files `source` names; a DataError lists bad rows by file:line."""
    import orjson

    from lmfast.data.readers import expand_inputs

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    bad = 0
    for path in expand_inputs([source]):
        if not path.name.endswith((".jsonl", ".json")):
            raise DataError(f"data.path: {path.name}: GRPO reads prompt rows from JSONL files")
        with open(path, "rb") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                    _check_row(record)
                    rows.append(record)
                except (orjson.JSONDecodeError, ValueError) as e:
                    bad += 1
                    if len(problems) < SHOWN_PROBLEMS:
                        problems.append(f"{path.name}:{line_no}: {e}")
    if bad:
        more = f" (and {bad - len(problems)} more)" if bad > len(problems) else ""
        raise DataError(
            f"{bad} of {bad + len(rows)} prompt rows are unusable{more}; each row needs "
            "'prompt' (a string or messages) plus the fields its rewards read:\n  "
            + "\n  ".join(problems)
        )
    if not rows:
        raise DataError(f"data.path: {source!r} holds no prompt rows")
    return rows


def prepare_prompts(
    source: str, store: ArtifactStore, progress: ProgressFn
) -> tuple[str, str, list[dict[str, Any]]]:
    """(dataset artifact id, version, rows): the prompt rows as a dataset artifact (reused
    when the same rows were stored before), so the run's lineage names its data."""
    if store.exists(source):
        art = store.get(source)
        if art.manifest.extra.get("report", {}).get("format") != PROMPTS_FORMAT:
            raise DataError(
                f"data.path: {source!r} is not a prompt dataset; give the JSONL prompt rows"
            )
        rows = [json.loads(x) for x in (art.path / "data.jsonl").read_text().splitlines() if x]
        return art.id, art.manifest.dataset_version or "", rows
    rows = read_prompt_files(source)
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    for art in store.list("dataset"):
        if (
            art.manifest.dataset_version == version
            and art.manifest.extra.get("report", {}).get("format") == PROMPTS_FORMAT
        ):
            return art.id, version, rows
    progress(0, None, f"storing {len(rows):,} prompt rows from {source} as a dataset")
    with store.create("dataset", name=Path(source).stem, dataset_version=version) as draft:
        (draft.path / "data.jsonl").write_text(text, encoding="utf-8")
        draft.extra = {"report": {"format": PROMPTS_FORMAT, "rows": len(rows), "source": source}}
    assert draft.artifact is not None
    return draft.artifact.id, version, rows


def render_prompts(rows: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """Rows with `prompt` rendered by the chat template up to the assistant's turn (the
    text the model continues), the original kept as `messages`."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the model's tokenizer has no chat template, so prompts cannot be rendered; "
            "train an instruct model (or one whose tokenizer carries a template)"
        )
    out = []
    for row in rows:
        prompt = row["prompt"]
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        out.append({**row, "prompt": text})
    return out


def _columns(row: dict[str, Any]) -> dict[str, Any]:
    """Arrow keeps one type per column: nested values (tools, schemas) travel as JSON text,
    which the built-in rewards read back."""
    return {
        k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
        for k, v in row.items()
    }


# -- settings --------------------------------------------------------------------------------


def derive_grpo(
    config: LMFastConfig,
    rows: list[dict[str, Any]],
    tokenizer: Any,
    spec: Any,
    device: str,
    answer_lengths: list[int] | None = None,
) -> tuple[LMFastConfig, DataShape, list[Choice]]:
    """The unset settings chosen from the prompts and the model: the completion length
    from the model's own greedy answers (`answer_lengths`, tokens up to the end token), a
    batch of 4 prompts' groups (8 on a GPU), enough passes for MIN_STEPS steps, the
    learning rate (a tenth of SFT's) and warm-up."""
    import numpy as np

    from lmfast.data.tokenize import length_profile

    t = config.training
    g = t.grpo
    choices: list[Choice] = []
    sample = rows[:: max(1, len(rows) // 2000)]
    prompt_tokens = np.array([len(tokenizer(r["prompt"])["input_ids"]) for r in sample])
    updates: dict[str, Any] = {}
    completion = g.max_completion_length
    if completion is None:
        cap = _probe_tokens(device)
        if answer_lengths:
            p90 = int(np.percentile(answer_lengths, 90))
            completion = min(cap, max(MIN_COMPLETION, 1 << math.ceil(math.log2(p90))))
            reason = (
                f"90 % of the model's greedy answers to {len(answer_lengths)} prompts end "
                f"within {p90} tokens"
            )
            if p90 >= cap:
                where = "a CPU" if device == "cpu" else "a GPU"
                reason = (
                    f"the model's answers run to {cap} tokens and more: cut at {cap}, the "
                    f"longest worth sampling on {where}"
                )
        else:
            completion, reason = 128, "the model's answers were not measured"
        choices.append(
            Choice(setting="training.grpo.max_completion_length", value=completion, reason=reason)
        )
        updates["grpo"] = g.model_copy(update={"max_completion_length": completion})
    if int(prompt_tokens.max()) + completion > spec.context_length:
        raise DataError(
            f"the longest prompt ({int(prompt_tokens.max())} tokens) plus "
            f"max_completion_length={completion} exceeds the model's context of "
            f"{spec.context_length}"
        )
    seq = int(np.percentile(prompt_tokens, 99)) + completion
    if t.max_seq_length is None:
        updates["max_seq_length"] = seq  # sizes the memory plan; TRL cuts nothing here
    lengths = LengthProfile(**length_profile(prompt_tokens + completion))
    lengths.documents = len(rows)
    completions = len(rows) * g.num_generations
    per = float(prompt_tokens.mean()) + completion
    shape = DataShape(kind="prompts", lengths=lengths, rows=completions,
                      tokens=max(1, round(per * completions)))  # fmt: skip
    batch = t.explicit_batch_size
    if batch is not None and batch % g.num_generations:
        raise LMFastError(
            f"training.effective_batch_size={batch} is not a multiple of "
            f"training.grpo.num_generations={g.num_generations}: each step scores whole groups"
        )
    if batch is None:
        groups = 8 if device != "cpu" else 4
        groups = max(1, min(groups, len(rows)))
        batch = groups * g.num_generations
        choices.append(
            Choice(
                setting="training.effective_batch_size",
                value=batch,
                reason=f"{groups} prompts x {g.num_generations} completions a step: each group "
                "is its own baseline, and sampling dominates a step's time",
            )
        )
        updates["effective_batch_size"] = batch
    if t.epochs is None and t.max_steps is None:
        per_epoch = math.ceil(completions / batch)
        epochs = float(min(MAX_EPOCHS, max(1, math.ceil(MIN_STEPS / per_epoch))))
        choices.append(
            Choice(
                setting="training.epochs",
                value=epochs,
                reason=f"one pass is {per_epoch} steps; at least {MIN_STEPS} are needed to "
                f"learn, and at most {MAX_EPOCHS} passes",
            )
        )
        updates["epochs"] = epochs
    config = config.model_copy(update={"training": t.model_copy(update=updates)})
    derived = derive(config, None, "grpo", spec.parameters)  # rate and warm-up
    return derived.config, shape, [*choices, *derived.choices]


def _probe_tokens(device: str) -> int:
    return PROBE_TOKENS["cpu" if device == "cpu" else "gpu"]


def _fit_micro_batch(plan: Any, config: LMFastConfig) -> Any:
    """TRL samples a whole generation batch (micro-batch x accumulation) at once and needs
    it to split into groups: the micro-batch divides the batch."""
    batch = config.training.effective_batch_size or plan.effective_batch_size
    micro = max(1, min(plan.micro_batch_size, batch))
    while batch % micro:
        micro -= 1
    return plan.model_copy(update={"micro_batch_size": micro, "effective_batch_size": batch,
                                   "gradient_accumulation_steps": batch // micro})  # fmt: skip


# -- measuring -------------------------------------------------------------------------------


def held_out_rewards(
    model: Any, tokenizer: Any, rewards: list[Any], rows: list[dict[str, Any]], max_new: int
) -> dict[str, float]:
    """Mean of each reward over greedy answers to `rows` (a deterministic measurement)."""
    from lmfast.training.generation import greedy_batch

    prompts = [r["prompt"] for r in rows]
    return score_answers(rewards, rows, greedy_batch(model, tokenizer, prompts, max_new))


def score_answers(
    rewards: list[Any], rows: list[dict[str, Any]], answers: list[tuple[str, list[int]]]
) -> dict[str, float]:
    from lmfast.training.rewards import score

    return score(
        rewards,
        [_columns(r) for r in rows],
        [a for a, _ in answers],
        [r["prompt"] for r in rows],
        [ids for _, ids in answers],
    )


def _cut(
    answers: list[tuple[str, list[int]]], tokens: int, tokenizer: Any
) -> list[tuple[str, list[int]]]:
    """Answers as a run limited to `tokens` would have them."""
    return [
        (a, ids)
        if len(ids) <= tokens
        else (tokenizer.decode(ids[:tokens], skip_special_tokens=True).strip(), ids[:tokens])
        for a, ids in answers
    ]


def reward_warnings(history: list[dict[str, float]]) -> list[str]:
    """Say so when GRPO had nothing to learn from or did not improve."""
    logged = [h for h in history if "reward" in h]
    if len(logged) < 4:
        return []
    warnings = []
    flat = [h.get("frac_reward_zero_std", 0.0) for h in logged]
    if sum(flat) / len(flat) > 0.8:
        warnings.append(
            "in most groups every completion got the same reward, so there was nothing to "
            "learn from; use graded rewards, a higher training.grpo.temperature or more "
            "training.grpo.num_generations"
        )
    quarter = max(1, len(logged) // 4)
    first = sum(h["reward"] for h in logged[:quarter]) / quarter
    last = sum(h["reward"] for h in logged[-quarter:]) / quarter
    if last <= first:
        warnings.append(
            f"the mean reward did not rise ({first:.3f} in the first quarter, {last:.3f} in "
            "the last); try a higher training.learning_rate or more steps"
        )
    return warnings


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items())
