"""Run one task on one scorer: prompts in, per-example records and aggregate metrics out."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from lmfast.evaluation import metrics as m
from lmfast.evaluation.scorers import Scorer, encode_pair
from lmfast.evaluation.tasks import Example, Task

Progress = Callable[[int, int, str], None]  # (done, total, message)


class TaskScore(BaseModel):
    """One task's numbers for one model."""

    task: str = Field(description="Task name.")
    kind: str = Field(description="generation, multiple_choice or perplexity.")
    examples: int = Field(description="Examples scored.")
    metrics: dict[str, float] = Field(description="Metric -> value (accuracy and EM in 0-1).")
    stderr: dict[str, float] = Field(
        default_factory=dict, description="Standard error of each mean-valued metric."
    )
    seconds: float = Field(description="Wall time of the task.")
    examples_per_second: float = Field(description="Throughput.")
    generated_tokens: int = Field(0, description="Generation tasks: tokens produced.")


def run_task(
    scorer: Scorer,
    task: Task,
    *,
    limit: int | None = None,
    seed: int = 1234,
    progress: Progress | None = None,
) -> tuple[TaskScore, list[dict[str, Any]]]:
    """Score `task` (its first `limit` examples) and return the aggregate and the records."""
    examples = task.limited(limit)
    started = time.perf_counter()
    if task.kind == "multiple_choice":
        outcome = _multiple_choice(scorer, task, examples, seed, progress)
    elif task.kind == "generation":
        outcome = _generation(scorer, task, examples, seed, progress)
    else:
        outcome = _perplexity(scorer, task, examples, progress)
    values, stderr, records, generated = outcome
    seconds = time.perf_counter() - started
    score = TaskScore(
        task=task.name,
        kind=task.kind,
        examples=len(examples),
        metrics=values,
        stderr=stderr,
        seconds=round(seconds, 3),
        examples_per_second=round(len(examples) / seconds, 3) if seconds > 0 else 0.0,
        generated_tokens=generated,
    )
    return score, records


def _counter(progress: Progress | None, total: int, name: str) -> Callable[[int], None]:
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total, name)

    return tick


def _multiple_choice(
    scorer: Scorer, task: Task, examples: list[Example], seed: int, progress: Progress | None
) -> tuple[dict[str, float], dict[str, float], list[dict[str, Any]], int]:
    pairs, owners = [], []
    for k, e in enumerate(examples):
        context = task.mc_prompt(e, seed)
        for choice in e.choices:
            pairs.append(encode_pair(scorer, context, " " + choice))
            owners.append(k)
    scored = scorer.score(pairs, _counter(progress, len(pairs), f"{task.name}: choices"))
    by_example: list[list[float]] = [[] for _ in examples]
    for k, (ll, _greedy) in zip(owners, scored, strict=True):
        by_example[k].append(ll)
    records, acc, acc_norm = [], [], []
    for e, lls in zip(examples, by_example, strict=True):
        pred = max(range(len(lls)), key=lambda i: lls[i])
        normed = [ll / len(c) for ll, c in zip(lls, e.choices, strict=True)]
        pred_norm = max(range(len(normed)), key=lambda i: normed[i])
        probs = m.softmax(lls)
        acc.append(float(pred == e.answer_index))
        acc_norm.append(float(pred_norm == e.answer_index))
        records.append(
            {
                "index": e.index,
                "line": e.line,
                "question": e.question,
                "choices": e.choices,
                "answer": e.answer_index,
                "prediction": pred,
                "prediction_norm": pred_norm,
                "correct": pred == e.answer_index,
                "correct_norm": pred_norm == e.answer_index,
                "confidence": probs[pred],
                "loglikelihoods": lls,
            }
        )
    values, stderr = {}, {}
    for name, series in (("accuracy", acc), ("accuracy_norm", acc_norm)):
        if name in task.metrics:
            values[name], stderr[name] = m.mean_and_stderr(series)
    _, ece = m.calibration_bins([r["confidence"] for r in records], [r["correct"] for r in records])
    values["calibration_error"] = ece
    return values, stderr, records, 0


def _generation(
    scorer: Scorer, task: Task, examples: list[Example], seed: int, progress: Progress | None
) -> tuple[dict[str, float], dict[str, float], list[dict[str, Any]], int]:
    spec = task.spec
    chat = spec.chat if spec.chat is not None else scorer.has_chat_template
    prompts = [
        scorer.render_chat(task.chat_messages(e, seed)) if chat else task.plain_prompt(e, seed)
        for e in examples
    ]
    outputs = scorer.generate(
        prompts, spec.max_tokens, spec.stop, _counter(progress, len(prompts), task.name)
    )
    preds = [m.extract(o.text, spec.extraction, spec.pattern) for o in outputs]
    refs = [
        m.extract(e.answer, spec.extraction, spec.pattern) or e.answer.strip() for e in examples
    ]
    per: dict[str, list[float]] = {
        "exact_match": [m.exact_match(p, r) for p, r in zip(preds, refs, strict=True)],
        "f1": [m.f1(p, r) for p, r in zip(preds, refs, strict=True)],
    }
    for kind in ("rouge1", "rouge2", "rougeL"):
        if kind in task.metrics:
            per[kind] = m.rouge(preds, refs, kind)
    values, stderr = {}, {}
    for name in task.metrics:
        if name == "bleu":
            values["bleu"] = m.bleu(preds, refs)
        else:
            values[name], stderr[name] = m.mean_and_stderr(per[name])
    records = []
    for i, (e, o, p, r) in enumerate(zip(examples, outputs, preds, refs, strict=True)):
        record = {
            "index": e.index,
            "line": e.line,
            "prompt": e.prompt or (e.messages or [{}])[-2].get("content", ""),
            "reference": r,
            "output": o.text,
            "extracted": p,
            "correct": bool(per["exact_match"][i]),
            "f1": per["f1"][i],
        }
        records.append(record)
    return values, stderr, records, sum(o.completion_tokens for o in outputs)


def perplexity_windows(
    ids: list[int], window: int, stride: int
) -> list[tuple[list[int], list[int]]]:
    """Sliding windows as (context, scored) pairs: each window scores only the tokens the
    previous one did not, with up to `window - stride` tokens of earlier text as context
    (the computation in transformers' perplexity guide). The first token has no context and
    is not scored."""
    pairs: list[tuple[list[int], list[int]]] = []
    prev_end = 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        target = end - prev_end
        chunk = ids[begin:end]
        context, scored = chunk[:-target], chunk[-target:]
        if not context:
            context, scored = chunk[:1], chunk[1:]
        if scored:
            pairs.append((context, scored))
        prev_end = end
        if end == len(ids):
            break
    return pairs


def _perplexity(
    scorer: Scorer, task: Task, examples: list[Example], progress: Progress | None
) -> tuple[dict[str, float], dict[str, float], list[dict[str, Any]], int]:
    # One token short of the context: an engine needs room past the prompt.
    window = min(task.spec.window or scorer.context_length, scorer.context_length - 1)
    stride = task.spec.stride or max(1, window // 2)
    stride = min(stride, window)
    pairs, owners = [], []
    for k, e in enumerate(examples):
        for pair in perplexity_windows(scorer.encode(e.text), window, stride):
            pairs.append(pair)
            owners.append(k)
    scored = scorer.score(pairs, _counter(progress, len(pairs), f"{task.name}: windows"))
    nll = [0.0] * len(examples)
    count = [0] * len(examples)
    for k, pair, (ll, _) in zip(owners, pairs, scored, strict=True):
        nll[k] -= ll
        count[k] += len(pair[1])
    total_nll, total_tokens = sum(nll), sum(count)
    total_bytes = sum(len(e.text.encode("utf-8")) for e in examples)
    values = {
        "perplexity": math.exp(total_nll / total_tokens) if total_tokens else math.nan,
        "bits_per_byte": total_nll / math.log(2) / total_bytes if total_bytes else math.nan,
        "tokens": float(total_tokens),
    }
    records = [
        {
            "index": e.index,
            "line": e.line,
            "tokens": c,
            "nll": n,
            "perplexity": math.exp(n / c) if c else math.nan,
        }
        for e, n, c in zip(examples, nll, count, strict=True)
    ]
    return values, {}, records, 0
