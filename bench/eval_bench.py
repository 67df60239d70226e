"""Evaluation benchmark: LMFast vs lm-evaluation-harness's HF model class, same tasks, one run.

The embedded SmolLM2-135M-Instruct on LMFast's sample tasks (multiple choice: capitals,
reading; generation: arithmetic). LMFast scores the GGUF with llama.cpp (continuous
batching, 8 sequences together) and, as a control, the same model dequantized into
transformers; lm-evaluation-harness runs its `hf` model class on the same model folder and
the same prompts (LMFast writes the harness YAML for each task). Reported: examples per
second and the accuracies, so speed and agreement are read off one table.

    uv run python bench/eval_bench.py [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

MC = ["capitals", "reading"]
GEN = ["arithmetic"]


def lmfast_rows(backend: str, batch: int) -> dict[str, tuple[float, float, int]]:
    """task -> (examples/s, headline metric, examples)."""
    from lmfast.evaluation.runner import run_task
    from lmfast.evaluation.scorers import load_scorer
    from lmfast.evaluation.tasks import load_task

    scorer = load_scorer(None, backend=backend, batch_size=batch)  # type: ignore[arg-type]
    out = {}
    try:
        for name in MC + GEN:
            task = load_task(name)
            score, _ = run_task(scorer, task)
            metric = score.metrics.get("accuracy", score.metrics.get("exact_match"))
            out[name] = (score.examples_per_second, metric, score.examples)
    finally:
        scorer.close()
    return out


def harness_rows(folder: Path, batch: int) -> dict[str, tuple[float, float, int]]:
    from lm_eval.models.huggingface import HFLM

    from lmfast.evaluation.harness import local_task_yaml, run_harness
    from lmfast.evaluation.tasks import load_task
    from lmfast.registry import resolve_model

    tasks_dir = Path(tempfile.mkdtemp(prefix="lmfast-harness-"))
    lm = HFLM(pretrained=str(folder), batch_size=batch, device="cpu", dtype="float32")
    out = {}
    for name in MC + GEN:
        task = load_task(name)
        harness_name = local_task_yaml(task, tasks_dir)
        started = time.perf_counter()
        # LMFast's alias gives SmolLM2 a default system prompt; give the harness the same one
        # so both routes see identical chat prompts.
        result = run_harness(
            lm,
            [harness_name],
            include_path=tasks_dir,
            apply_chat_template=name in GEN,
            system_instruction=resolve_model(None).default_system if name in GEN else None,
        )[harness_name]
        seconds = time.perf_counter() - started
        metric = result.get("acc", result.get("exact_match"))
        out[name] = (len(task.examples) / seconds, metric, len(task.examples))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="bench/results/eval.json")
    args = parser.parse_args()

    from lmfast.loading import load_transformers, save_transformers

    folder = Path(tempfile.mkdtemp(prefix="lmfast-smollm2-hf-"))
    model, tok = load_transformers(None, dtype="float32")
    save_transformers(model, tok, folder)
    del model

    results = {
        "LMFast (llama.cpp, GGUF)": lmfast_rows("llamacpp", args.batch_size),
        "LMFast (transformers)": lmfast_rows("transformers", args.batch_size),
        "lm-eval hf": harness_rows(folder, args.batch_size),
    }
    peer = results["lm-eval hf"]
    print(f"\nEvaluation, {date.today()}, {platform.machine()} {os.cpu_count()} cores")
    print("| task | examples | route | examples/s | vs lm-eval hf | score |")
    print("|---|---|---|---|---|---|")
    for task in MC + GEN:
        for route, rows in results.items():
            eps, metric, n = rows[task]
            ratio = eps / peer[task][0]
            kind = "accuracy" if task in MC else "exact match"
            print(f"| {task} | {n} | {route} | {eps:.2f} | {ratio:.2f}x | {kind} {metric:.1%} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": str(date.today()),
                "machine": f"{platform.machine()} {os.cpu_count()} cores",
                "batch_size": args.batch_size,
                "results": {
                    route: {
                        t: {"examples_per_s": r[0], "score": r[1], "examples": r[2]}
                        for t, r in rows.items()
                    }
                    for route, rows in results.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
