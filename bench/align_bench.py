"""Alignment benchmark: ORPO and DPO on a preference set with checkable answers.

    uv run python bench/align_bench.py [--steps 60] [--pairs 240]

The set (built here, seeded): short factual questions (colours of things, animal sounds,
small sums, opposites) answered in a house style that writes the answer's key word in
capitals ("Snow is WHITE."). `chosen` is the right answer in that style; `rejected` is
either the same right answer in plain lower case (a formatting preference the base model
does not share) or a wrong answer in the house style (a content preference). Chosen and
rejected have the same words, so the margin is not a length preference. 20 % held out.
The embedded SmolLM2-135M-Instruct is aligned with LoRA by ORPO (no reference model) and by
DPO; for the base and each aligned model we report how often the chosen answer is the
likelier one on held-out pairs (summed log-prob margin), and LMFast's capitals and
arithmetic task accuracy (must not collapse). Results go to bench/results/align.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
WORK = Path(os.environ.get("LMFAST_BENCH_DIR", "/tmp/lmfast-align-bench"))
MODEL = "smollm2-135m-instruct"

COLOURS = {
    "banana": "yellow",
    "grass": "green",
    "snow": "white",
    "coal": "black",
    "the sky": "blue",
    "a tomato": "red",
    "an orange": "orange",
    "a plum": "purple",
    "chocolate": "brown",
    "a flamingo": "pink",
    "ash": "grey",
    "a lemon": "yellow",
}
SOUNDS = {
    "dog": "bark",
    "cat": "meow",
    "cow": "moo",
    "duck": "quack",
    "lion": "roar",
    "sheep": "baa",
    "owl": "hoot",
    "snake": "hiss",
    "horse": "neigh",
    "pig": "oink",
}
OPPOSITES = {
    "hot": "cold",
    "up": "down",
    "big": "small",
    "fast": "slow",
    "light": "dark",
    "happy": "sad",
    "open": "closed",
    "early": "late",
    "full": "empty",
    "old": "new",
}


def _house_style(text: str, key: str) -> str:
    """The answer's key word in capitals: 'Snow is WHITE.'"""
    head, sep, tail = text.rpartition(key)
    return head + sep.upper() + tail if sep else text


def pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        kind = rng.choice(["colour", "sound", "sum", "opposite"])
        if kind == "colour":
            thing, answer = rng.choice(list(COLOURS.items()))
            prompt = f"What colour is {thing}? Answer in a few words."
            wrong = rng.choice([c for c in set(COLOURS.values()) if c != answer])
            right_text, wrong_text = (
                f"{thing.capitalize()} is {answer}.",
                f"{thing.capitalize()} is {wrong}.",
            )
        elif kind == "sound":
            animal, answer = rng.choice(list(SOUNDS.items()))
            prompt = f"What sound does a {animal} make? Answer in a few words."
            wrong = rng.choice([s for s in SOUNDS.values() if s != answer])
            right_text, wrong_text = f"A {animal} says {answer}.", f"A {animal} says {wrong}."
        elif kind == "sum":
            a, b = rng.randint(2, 30), rng.randint(2, 30)
            prompt = f"What is {a} plus {b}? Answer in a few words."
            wrong = a + b + rng.choice([-3, -2, -1, 1, 2, 3])
            right_text, wrong_text = f"{a} plus {b} is {a + b}.", f"{a} plus {b} is {wrong}."
        else:
            word, answer = rng.choice(list(OPPOSITES.items()))
            prompt = f"What is the opposite of {word}? Answer in a few words."
            wrong = rng.choice([o for o in OPPOSITES.values() if o != answer])
            right_text, wrong_text = (
                f"The opposite of {word} is {answer}.",
                f"The opposite of {word} is {wrong}.",
            )
        # The house style writes the answer's key word in capitals. Half the pairs teach the
        # style (the same right answer, styled vs plain), half the content (right vs wrong,
        # both styled). Same lengths in words, so the summed log-prob margin is not a
        # length preference in disguise; the base model prefers plain lower case.
        key = str(answer if kind != "sum" else a + b)
        styled = _house_style(right_text, key)
        if kind != "sum" and rng.random() < 0.5:  # numbers have no capitals
            pair = {"prompt": prompt, "chosen": styled, "rejected": right_text, "kind": "style"}
        else:
            bad = _house_style(wrong_text, str(wrong))
            pair = {"prompt": prompt, "chosen": styled, "rejected": bad, "kind": "content"}
        out.append(pair)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--pairs", type=int, default=240)
    args = parser.parse_args()
    os.environ.setdefault("LMFAST_HOME", str(WORK / "home"))

    from lmfast.alignment import AlignRequest, align
    from lmfast.config import load_config
    from lmfast.evaluation.evaluate import EvaluateRequest, evaluate

    WORK.mkdir(parents=True, exist_ok=True)
    data = WORK / "prefs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs(args.pairs)))
    results = {}
    for method in ("orpo", "dpo"):
        config = load_config(
            None,
            [
                f"model.reference={MODEL}",
                f"data.path={data}",
                "data.validation_split=0.2",
                "training.max_seq_length=256",
                "training.learning_rate=2e-4",
                "training.warmup_ratio=0.1",
                f"training.max_steps={args.steps}",
                "training.micro_batch_size=8",
                "training.gradient_accumulation_steps=1",
                "training.logging_steps=5",
                "training.tracker=none",
            ],
        )
        result = align(AlignRequest(config=config, method=method, beta=0.1))
        results[method] = result
        print(method, result.preference, result.training.metrics["seconds"])

    report = evaluate(
        EvaluateRequest(
            models=[MODEL, *(r.training.artifact_id for r in results.values())],
            tasks=["capitals", "arithmetic"],
            backend="transformers",
            efficiency=False,
            tracker="none",
            name="alignment benchmark",
        )
    )
    rows = []
    for label, m in zip(["base", "ORPO", "DPO"], report.models, strict=True):
        task = {f"{t.task}.{k}": v for t in m.tasks for k, v in t.metrics.items()}
        r = results.get(label.lower())
        pref = next(iter(results.values())).preference
        acc = r.preference["aligned_preference_accuracy"] if r else pref["base_preference_accuracy"]
        margin = r.preference["aligned_mean_margin"] if r else pref["base_mean_margin"]
        rows.append(
            {
                "model": label,
                "held_out_chosen_preferred": acc,
                "mean_margin": margin,
                "capitals_accuracy": task.get("capitals.accuracy"),
                "arithmetic_exact_match": task.get("arithmetic.exact_match"),
                "train_seconds": r.training.metrics["seconds"] if r else None,
            }
        )
    out = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "steps": args.steps,
        "pairs": args.pairs,
        "held_out_pairs": next(iter(results.values())).held_out_pairs,
        "report": report.path,
        "rows": rows,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "align.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
