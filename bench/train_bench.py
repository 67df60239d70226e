"""Fine-tuning benchmark: does `lmfast train` teach the embedded model a new skill on 2 cores,
and how fast does it train compared with TRL's SFTTrainer on the same data and LoRA settings?

Learning: a made-up transformation the base model cannot know ("reverse the words, upper-case
them, join with ' | '"), a train split and a held-out test split; held-out exact match with
greedy decoding before and after `lmfast train` (the real command, as a user runs it).

Throughput: real (non-padding) tokens per second of LMFast's SFT vs TRL SFTTrainer with its
defaults (`uv sync --group bench` installs TRL), same model, data, LoRA settings and steps.

    uv run python bench/train_bench.py [--train 400 --test 50 --steps 150] [--skip-trl]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "music",
    "garden",
    "window",
    "silver",
    "yellow",
    "ocean",
    "forest",
    "candle",
    "paper",
    "tiger",
    "rocket",
    "planet",
    "winter",
    "summer",
    "bridge",
    "castle",
    "dragon",
    "engine",
    "violin",
    "pencil",
    "mirror",
]
MODEL = "smollm2-135m-instruct"


def make_task(n: int, rng: random.Random) -> list[dict[str, str]]:
    rows = []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(2, 4))
        prompt = "Encode: " + " ".join(words)
        answer = " | ".join(w.upper() for w in reversed(words))
        rows.append({"prompt": prompt, "answer": answer})
    return rows


def write_chats(rows: list[dict[str, str]], path: Path) -> None:
    with open(path, "w") as f:
        for r in rows:
            turns = [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["answer"]},
            ]
            f.write(json.dumps({"messages": turns}) + "\n")


def exact_match(model_ref: str, rows: list[dict[str, str]]) -> float:
    from lmfast.loading import load_transformers
    from lmfast.training.generation import greedy_answers

    model, tok = load_transformers(model_ref)
    answers = greedy_answers(model, tok, [r["prompt"] for r in rows], max_new_tokens=24)
    hits = sum(a.strip() == r["answer"] for a, r in zip(answers, rows, strict=True))
    return hits / len(rows)


def run_lmfast(
    data: Path, steps: int, home: Path, extra: tuple[str, ...] = ()
) -> tuple[dict, float]:
    cmd = [
        sys.executable, "-m", "lmfast", "train", "-m", MODEL, "-d", str(data),
        "--max-steps", str(steps), "--lr", "2e-3", "--seq-len", "256", "--json", "--fresh",
        "training.micro_batch_size=8", "training.gradient_accumulation_steps=1",
        "training.lora.rank=16", "training.lora.alpha=32", "training.lora.dropout=0",
        "training.logging_steps=10", "training.warmup_ratio=0.05", *extra,
    ]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "LMFAST_HOME": str(home)}
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"lmfast train failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout), wall


def run_trl(data: Path, steps: int, batch: int) -> dict[str, float]:
    """TRL SFTTrainer with its defaults (padding-free off, no packing), same LoRA and steps."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from lmfast.loading import load_transformers

    torch.manual_seed(0)
    model, tok = load_transformers(MODEL)
    ds = load_dataset("json", data_files=str(data), split="train")
    args = SFTConfig(
        output_dir=str(data.parent / "trl-out"), max_steps=steps,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        learning_rate=2e-3, logging_steps=10, save_strategy="no", report_to=[],
        max_length=256, use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora
    )
    real = 0

    collate = trainer.data_collator

    def counting(features):  # type: ignore[no-untyped-def]
        nonlocal real
        batch_ = collate(features)
        mask = batch_.get("attention_mask")
        real += int(mask.sum()) if mask is not None else int(batch_["input_ids"].numel())
        return batch_

    trainer.data_collator = counting
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return {"tokens_per_second": real / seconds, "seconds": seconds, "real_tokens": real}


def memory(data: Path, home: Path, steps: int) -> None:
    """Peak memory of the training phase (model loaded, steps running), LoRA vs full, same
    model, batch 8 x 256 and steps; each run is its own process."""
    runs = {
        "LoRA r=16, dropout 0 (default)": (),
        "LoRA r=16, dropout 0.05": ("training.lora.dropout=0.05",),
        "full fine-tuning": ("training.lora.enabled=false", "training.learning_rate=1e-5"),
        "LoRA r=16, gradient checkpointing": ("model.gradient_checkpointing=true",),
        "full fine-tuning, gradient checkpointing": (
            "training.lora.enabled=false", "training.learning_rate=1e-5",
            "model.gradient_checkpointing=true",
        ),
    }  # fmt: skip
    rows = {}
    for name, extra in runs.items():
        result, _ = run_lmfast(data, steps, home, extra)
        m = result["metrics"]
        rows[name] = {
            "peak_gb": m["peak_memory_gb"],
            "planned_gb": m["planned_peak_memory_gb"],
            "tokens_per_second": m["tokens_per_second"],
            "dtype": result["plan"]["dtype"],
        }
        print(name, rows[name], flush=True)
    full, lora = rows["full fine-tuning"]["peak_gb"], rows["LoRA r=16, dropout 0 (default)"]
    ckpt = "gradient checkpointing"
    full_ckpt = rows[f"full fine-tuning, {ckpt}"]["peak_gb"]
    report = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "steps": steps,
        "runs": rows,
        "lora_over_full": round(lora["peak_gb"] / full, 3),
        "lora_over_full_checkpointing": round(rows[f"LoRA r=16, {ckpt}"]["peak_gb"] / full_ckpt, 3),
    }
    print(json.dumps(report, indent=2))
    out = Path(__file__).parent / "results" / "train_memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--test", type=int, default=50)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument(
        "--throughput-only", action="store_true", help="skip exact match; time both trainers"
    )
    ap.add_argument("--memory", action="store_true", help="peak memory, LoRA vs full")
    ap.add_argument("--work", default="/tmp/lmfast-train-bench")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    rows = make_task(a.train + a.test, rng)
    seen = {r["prompt"] for r in rows[: a.train]}
    test = [r for r in rows[a.train :] if r["prompt"] not in seen]
    data = work / "train.jsonl"
    write_chats(rows[: a.train], data)
    if a.memory:
        memory(data, work / "home", a.steps)
        return
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    before = after = None
    if not a.throughput_only:
        before = exact_match(MODEL, test)
    result, wall = run_lmfast(data, a.steps, work / "home")
    os.environ["LMFAST_HOME"] = str(work / "home")
    if not a.throughput_only:
        after = exact_match(result["artifact_id"], test)
    m = result["metrics"]
    report = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "task": f"{a.train} train / {len(test)} held-out examples, {a.steps} steps x 8 rows",
        "exact_match_before": before,
        "exact_match_after": after,
        "train_seconds": m["seconds"],
        "lmfast_wall_seconds": round(wall, 1),
        "lmfast_tokens_per_second": m["tokens_per_second"],
        "lmfast_peak_memory_gb": m["peak_memory_gb"],
        "train_loss": m["train_loss"],
    }
    if not a.skip_trl:
        trl = run_trl(data, a.steps, 8)
        report["trl_tokens_per_second"] = round(trl["tokens_per_second"], 1)
        report["throughput_ratio"] = round(m["tokens_per_second"] / trl["tokens_per_second"], 2)
    print(json.dumps(report, indent=2))
    name = "train_throughput.json" if a.throughput_only else "train.json"
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
