"""Distillation benchmark: three students of the same half-depth shape on the same budget.

    uv run python bench/distill_bench.py [--steps 300] [--mb 0.3] [--seq-len 128] [--alpha 0.5]

Teacher: the embedded SmolLM2-135M-Instruct. Student: every other layer of it (15 of 30,
the last kept), initialised from the teacher's weights. Data: English documentation text
from /usr/share/doc (the prep benchmark's source), trained as continued pretraining, 5 %
held out. The three students differ only in the loss: plain cross-entropy (SFT), distilled
online (teacher in memory), distilled offline (stored top-32 teacher log-probabilities).
Afterwards the teacher, the untrained student and the three students are evaluated side by
side (held-out perplexity from training, LMFast's capitals and prose tasks, decode speed on
the transformers engine), and the table is written to bench/results/distill.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
WORK = Path(os.environ.get("LMFAST_BENCH_DIR", "/tmp/lmfast-distill-bench"))
sys.path.insert(0, str(HERE))
TEACHER = "smollm2-135m-instruct"


def corpus(mb: float) -> Path:
    from prep_bench import _doc_files, _read

    out = WORK / "docs.jsonl"
    if out.is_file():
        return out
    files = _doc_files()
    random.Random(0).shuffle(files)
    size, rows = 0, []
    for f in files:
        text = _read(f)
        if not text or len(text) < 1500 or "copyright" in f.name.lower():
            continue  # licences are one text repeated: they would teach nothing
        text = text[:6000]
        rows.append(json.dumps({"text": text}))
        size += len(text)
        if size > mb * 1e6:
            break
    WORK.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    return out


def recipe(data: Path, steps: int, student: str, seq_len: int) -> object:
    from lmfast.config import load_config

    return load_config(
        None,
        [
            f"model.reference={student}",
            f"data.path={data}",
            "data.validation_split=0.05",
            "training.method=cpt",
            "training.lora.enabled=false",
            f"training.max_seq_length={seq_len}",
            "training.learning_rate=2e-4",
            "training.warmup_ratio=0.1",
            f"training.max_steps={steps}",
            "training.micro_batch_size=8",
            "training.gradient_accumulation_steps=1",
            "training.logging_steps=5",
            "training.tracker=none",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--mb", type=float, default=0.3)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--alpha", type=float, default=0.5, help="Weight of the KL term.")
    parser.add_argument("--temperature", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("LMFAST_HOME", str(WORK / "home"))

    from lmfast.distillation import DistillRequest, build_student, distill
    from lmfast.evaluation.evaluate import EvaluateRequest, evaluate
    from lmfast.training import FineTuneRequest, fine_tune

    data = corpus(args.mb)
    student = build_student(TEACHER, "every_other")
    print(f"student: layers {student.layers}, {student.parameters:,} parameters "
          f"(teacher {student.teacher_parameters:,}), {student.expected_speedup}x fewer "
          "weights per token")  # fmt: skip
    config = recipe(data, args.steps, student.artifact_id, args.seq_len)
    runs: dict[str, dict] = {}

    t = time.perf_counter()
    sft = fine_tune(FineTuneRequest(config=config, name="student-sft"))
    runs["SFT only"] = {"artifact": sft.artifact_id, "metrics": sft.metrics,
                        "seconds": time.perf_counter() - t}  # fmt: skip
    for mode in ("online", "offline"):
        t = time.perf_counter()
        # alpha 0.5 at T = 1: pure KL (alpha 1) trailed SFT in a 120-step pilot.
        request = DistillRequest(
            config=config,
            teacher=TEACHER,
            mode=mode,
            alpha=args.alpha,
            temperature=args.temperature,
            eval_tasks=[],
            name=f"student-{mode}",
        )
        result = distill(request)
        runs[f"distilled {mode}"] = {
            "artifact": result.training.artifact_id,
            "metrics": result.training.metrics,
            "seconds": time.perf_counter() - t,
            "teacher_labels": result.teacher_labels,
        }
        print(mode, result.training.metrics.get("eval_loss"), result.teacher_labels)

    models = [TEACHER, student.artifact_id] + [r["artifact"] for r in runs.values()]
    report = evaluate(
        EvaluateRequest(
            models=models,
            tasks=["capitals", "prose"],
            backend="transformers",
            tracker="none",
            name="distillation benchmark",
        )
    )
    labels = ["teacher", "student, untrained", *runs]
    rows = []
    for label, m in zip(labels, report.models, strict=True):
        metrics = {f"{t.task}.{k}": v for t in m.tasks for k, v in t.metrics.items()}
        run = runs.get(label, {})
        eval_loss = run.get("metrics", {}).get("eval_loss")
        rows.append(
            {
                "model": label,
                "held_out_ppl": round(2.718281828**eval_loss, 2) if eval_loss else None,
                "capitals_accuracy": metrics.get("capitals.accuracy"),
                "prose_ppl": metrics.get("prose.perplexity"),
                "decode_tok_s": m.efficiency.get("decode_tokens_per_s"),
                "train_seconds": round(run["seconds"], 1) if run else None,
            }
        )
    teacher_speed = rows[0]["decode_tok_s"] or 0
    for r in rows:
        if r["decode_tok_s"] and teacher_speed:
            r["speedup_vs_teacher"] = round(r["decode_tok_s"] / teacher_speed, 2)
    out = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "steps": args.steps,
        "seq_len": args.seq_len,
        "alpha": args.alpha,
        "temperature": args.temperature,
        "corpus_mb": round(data.stat().st_size / 1e6, 2),
        "student": student.model_dump(),
        "offline_labels": runs["distilled offline"]["teacher_labels"],
        "report": report.path,
        "rows": rows,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "distill.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    sft_ppl = rows[2]["held_out_ppl"]
    for r in rows[3:]:
        print(f"{r['model']}: held-out perplexity {r['held_out_ppl']} vs SFT {sft_ppl} "
              f"({sft_ppl / r['held_out_ppl']:.3f}x lower)")  # fmt: skip


if __name__ == "__main__":
    main()
