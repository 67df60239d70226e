"""Quantization benchmark: size, held-out perplexity and llama.cpp decode speed of f16, q8_0,
q5_k_m, q4_k_m and LMFast's calibrated mixed precision, for the embedded SmolLM2-135M-Instruct
and for a model LMFast fine-tuned (whose task accuracy must survive quantization).

    uv run python bench/quantize_bench.py [--steps 80]

Held-out text and calibration text are disjoint slices of English documentation from
/usr/share/doc (the prep benchmark's source). The fine-tuned model is SmolLM2 with a LoRA
adapter trained on synthetic two-number sums and differences; its accuracy is measured on
200 other such problems (exact match, greedy) after each quantization. Writes
bench/results/quantize.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
WORK = Path(os.environ.get("LMFAST_BENCH_DIR", "/tmp/lmfast-quantize-bench"))
sys.path.insert(0, str(HERE))
MODEL = "smollm2-135m-instruct"
TYPES = ["f16", "q8_0", "q5_k_m", "q4_k_m", "mixed"]


def texts() -> tuple[Path, Path]:
    """(calibration, held-out) text files of about 40 KB each, from different documents."""
    from prep_bench import _doc_files, _read

    files = _doc_files()
    random.Random(1).shuffle(files)
    chunks = []
    for f in files:
        text = _read(f)
        if text and len(text) > 2000 and "copyright" not in f.name.lower():
            chunks.append(text[:4000])
        if len(chunks) == 20:
            break
    WORK.mkdir(parents=True, exist_ok=True)
    calibration, held_out = WORK / "calibration.txt", WORK / "held_out.txt"
    calibration.write_text("\n\n".join(chunks[:10]))
    held_out.write_text("\n\n".join(chunks[10:]))
    return calibration, held_out


def arithmetic(n: int, seed: int, exclude: set[str]) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < n:
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        op = rng.choice("+-")
        if op == "-" and b > a:
            a, b = b, a
        prompt = f"What is {a} {op} {b}? Answer with the number only."
        if prompt in exclude:
            continue
        exclude.add(prompt)
        out.append((prompt, str(a + b if op == "+" else a - b)))
    return out


def fine_tuned(steps: int) -> tuple[str, Path]:
    """(adapter id, held-out task file) of SmolLM2 taught short arithmetic answers."""
    from lmfast.config import load_config
    from lmfast.training import FineTuneRequest, fine_tune

    seen: set[str] = set()
    test = arithmetic(200, 7, seen)
    train = arithmetic(800, 3, seen)
    data = WORK / "arithmetic_train.jsonl"
    chats = [
        {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]}
        for p, a in train
    ]
    data.write_text("\n".join(json.dumps(c) for c in chats))
    task = WORK / "arithmetic_test.jsonl"
    task.write_text("\n".join(json.dumps({"prompt": p, "answer": a}) for p, a in test))
    (WORK / "arithmetic_test.yaml").write_text(
        "description: two-number sums and differences, held out\npath: arithmetic_test.jsonl\n"
        "kind: generation\nmetrics: [exact_match]\nextraction: last_number\nmax_tokens: 12\n"
        'stop: ["\\n"]\n'
    )
    config = load_config(None, [
        f"model.reference={MODEL}", f"data.path={data}", "training.method=sft",
        "training.max_seq_length=128", f"training.max_steps={steps}",
        "training.micro_batch_size=16", "training.learning_rate=1e-3", "training.tracker=none",
    ])  # fmt: skip
    result = fine_tune(FineTuneRequest(config=config, name="arithmetic adapter"))
    return result.artifact_id, WORK / "arithmetic_test.yaml"


def accuracy(models: list[str], task: Path) -> list[float]:
    from lmfast.evaluation.evaluate import EvaluateRequest, evaluate

    report = evaluate(EvaluateRequest(
        models=models, tasks=[str(task)], backend="llamacpp", tracker="none", efficiency=False,
        name="quantized accuracy",
    ))  # fmt: skip
    return [m.tasks[0].metrics["exact_match"] for m in report.models]


def sweep(model: str, calibration: Path, held_out: Path) -> list[dict]:
    from lmfast.export import QuantizeRequest, quantize

    rows = []
    for kind in TYPES:
        r = quantize(QuantizeRequest(
            model=model, type=kind, calibration=str(calibration), calibration_tokens=1024,
            eval_text=str(held_out),
        ))  # fmt: skip
        rows.append({
            "type": kind, "path": r.path, "mb": round(r.bytes / 1e6, 1),
            "size_vs_f16": r.size_vs_f16, "perplexity": r.metrics["perplexity"],
            "perplexity_change": r.metrics["perplexity_change"],
            "decode_tok_s": r.metrics["decode_tokens_per_s"], "tensor_types": r.tensor_types,
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()
    os.environ.setdefault("LMFAST_HOME", str(WORK / "home"))
    calibration, held_out = texts()
    embedded = sweep(MODEL, calibration, held_out)
    adapter, task = fine_tuned(args.steps)
    tuned = sweep(adapter, calibration, held_out)
    scores = accuracy([r["path"] for r in tuned] + [MODEL], task)
    for r, s in zip(tuned, scores, strict=False):
        r["arithmetic_accuracy"] = s
    out = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "held_out_tokens_note": "perplexity on ~40 KB of /usr/share/doc text unseen in calibration",
        "embedded": embedded,
        "fine_tuned": {"adapter": adapter, "base_accuracy": scores[-1], "rows": tuned},
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "quantize.json").write_text(json.dumps(out, indent=2))
    for label, rows in (("embedded", embedded), ("fine-tuned", tuned)):
        print(f"\n{label}: type | MB | size vs f16 | perplexity (vs f16) | decode tok/s | accuracy")
        for r in rows:
            print(f"{r['type']} | {r['mb']} | {r['size_vs_f16']:.1%} | {r['perplexity']:.3f} "
                  f"({r.get('perplexity_change', 0):+.1%}) | {r.get('decode_tok_s', '-')} | "
                  f"{r.get('arithmetic_accuracy', '-')}")  # fmt: skip


if __name__ == "__main__":
    main()
