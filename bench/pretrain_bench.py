"""Pretraining benchmark: the small template from scratch, LMFast vs. a plain transformers
Trainer loop on the same tokens, then 1 vs. 2 training processes (DDP on gloo).

    uv run python bench/pretrain_bench.py [--mb 8] [--steps 500] [--seq-len 256] [--ddp-steps 20]

1. Corpus: English documentation text from /usr/share/doc (the prep benchmark's source),
   cleaned and deduplicated by prep_dataset.
2. Tokenizer: `train_tokenizer` (byte-level BPE, 8192 tokens) on that dataset; held-out
   bytes per token beside SmolLM2's tokenizer.
3. LMFast: `fine_tune` with method=pretrain, template small, 5 % of the packed rows held out.
4. Peer: the same model config and initial weights (same seed), the same packed training
   rows, batch, learning-rate schedule and steps, through transformers' `Trainer` with its
   own causal-LM loss (what a user writes by hand).
5. Both models' held-out perplexity is measured by the same function on the same rows.
6. 1 vs 2 processes: the small template, same effective batch, first steps' losses compared.
Writes bench/results/pretrain.json and both loss curves in bench/results/pretrain_loss.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
WORK = Path(os.environ.get("LMFAST_BENCH_DIR", "/tmp/lmfast-pretrain-bench"))
os.environ.setdefault("LMFAST_HOME", str(WORK / "home"))
sys.path.insert(0, str(HERE))


def corpus(mb: float) -> Path:
    from prep_bench import _doc_files, _read  # the prep benchmark's documentation files

    out = WORK / "docs.jsonl"
    if out.is_file():
        return out
    import random

    files = _doc_files()
    random.Random(0).shuffle(files)
    size, rows = 0, []
    for f in files:
        text = _read(f)
        if not text or len(text) < 1000 or "copyright" in f.name.lower():
            continue  # licences are one text repeated
        rows.append(json.dumps({"id": str(f), "text": text[:20000]}))
        size += len(rows[-1])
        if size > mb * 1e6:
            break
    WORK.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(rows) + "\n")
    return out


def recipe(dataset: str, tokenizer: str, steps: int, seq_len: int, extra: list[str]) -> object:
    from lmfast.config import load_config

    return load_config(
        None,
        [
            "training.method=pretrain",
            "model.template=small",
            f"model.tokenizer={tokenizer}",
            f"data.path={dataset}",
            "data.validation_split=0.05",
            f"training.max_steps={steps}",
            f"training.max_seq_length={seq_len}",
            "training.micro_batch_size=8",
            "training.effective_batch_size=16",
            "training.learning_rate=2e-3",
            "training.warmup_ratio=0.05",
            "training.weight_decay=0.1",
            "training.logging_steps=10",
            "training.tracker=none",
            *extra,
        ],
    )


def held_out_ppl(model: object, arrays: object, rows: object) -> float:
    """exp(mean next-token NLL) over the rows' real tokens, one row at a time."""
    import torch

    model.eval()  # type: ignore[attr-defined]
    total, count = 0.0, 0
    with torch.no_grad():
        for r in rows:  # type: ignore[attr-defined]
            n = int(arrays.lengths[r])  # type: ignore[attr-defined]
            ids = torch.tensor(arrays.input_ids[r][:n], dtype=torch.long)[None]  # type: ignore[attr-defined]
            out = model(input_ids=ids, labels=ids)  # type: ignore[operator]
            total += float(out.loss) * (n - 1)
            count += n - 1
    return math.exp(total / count)


def plain_trainer(config: object, tokenized_id: str, tokenizer_id: str, steps: int) -> dict:
    """The peer: transformers' Trainer on the same packed rows, config and initial weights."""
    import numpy as np
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    from lmfast.artifacts import ArtifactStore
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.hardware import detect_hardware
    from lmfast.training.data import prepare
    from lmfast.training.templates import load_template

    tok = load_tokenizer(tokenizer_id)
    tokenized = config.model_copy(deep=True)  # type: ignore[attr-defined]
    tokenized.data.path = tokenized_id  # LMFast's packed rows and split, exactly
    data = prepare(tokenized, tok, 2048, store=ArtifactStore())
    arrays = data.arrays

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(data.train_rows)

        def __getitem__(self, i: int) -> dict:
            r = int(data.train_rows[i])
            ids = np.asarray(arrays.input_ids[r], dtype=np.int64)
            labels = ids.copy()
            labels[int(arrays.lengths[r]) :] = -100
            return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels)}

    set_seed(42)
    model = load_template("small").build(tok)
    args = TrainingArguments(
        output_dir=str(WORK / "plain"),
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        learning_rate=2e-3,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.1,
        max_steps=steps,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=detect_hardware().bf16,  # the dtype LMFast's plan picks on this machine
        seed=42,
        data_seed=42,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    torch.set_num_threads(os.cpu_count() or 1)
    trainer = Trainer(model=model, args=args, train_dataset=Rows())
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    # Real tokens per step as LMFast counts them: mean real tokens per training row x rows.
    tokens = steps * 16 * float(np.mean(arrays.lengths[data.train_rows]))
    return {
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1),
        "held_out_ppl": round(held_out_ppl(model, arrays, data.eval_rows), 2),
        "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
    }


def lmfast_run(config: object) -> dict:
    from lmfast.artifacts import ArtifactStore
    from lmfast.data.tokenize import load_tokenizer, open_tokens
    from lmfast.loading import load_transformers
    from lmfast.training.data import prepare
    from lmfast.training.finetune import FineTuneRequest, fine_tune

    started = time.perf_counter()
    result = fine_tune(FineTuneRequest(config=config, fresh=True, run_id="bench-lmfast"))  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    model, _ = load_transformers(result.artifact_id)
    tok = load_tokenizer(config.tokenizer_reference)  # type: ignore[attr-defined]
    tokenized = config.model_copy(deep=True)  # type: ignore[attr-defined]
    tokenized.data.path = result.dataset_artifact  # the rows it trained on, not a new prep
    data = prepare(tokenized, tok, 2048, store=ArtifactStore())
    arrays = open_tokens(ArtifactStore().get(result.dataset_artifact).path / "tokens")
    history = json.loads((Path(result.path) / "log_history.json").read_text())
    return {
        "artifact": result.artifact_id,
        "dataset": result.dataset_artifact,
        "seconds": round(seconds, 1),
        "train_seconds": result.metrics["seconds"],
        "tokens_per_second": result.metrics["tokens_per_second"],
        "eval_loss": round(result.metrics["eval_loss"], 4),
        "held_out_ppl": round(held_out_ppl(model, arrays, data.eval_rows), 2),
        "losses": [h["loss"] for h in history if "loss" in h],
        "loss_curve": result.loss_curve,
    }


def processes(dataset: str, tokenizer: str, n: int, steps: int, seq_len: int) -> dict:
    from lmfast.training.finetune import FineTuneRequest, fine_tune
    from lmfast.training.launch import LaunchSettings

    cfg = recipe(dataset, tokenizer, steps, seq_len, ["training.logging_steps=1"])
    cfg.training.micro_batch_size = 4  # type: ignore[attr-defined]
    cfg.training.effective_batch_size = 16  # type: ignore[attr-defined]
    started = time.perf_counter()
    result = fine_tune(
        FineTuneRequest(
            config=cfg,  # type: ignore[arg-type]
            fresh=True,
            run_id=f"bench-procs-{n}",
            launch=LaunchSettings(num_processes=n, main_process_port=29611),
        )
    )
    history = json.loads((Path(result.path) / "log_history.json").read_text())
    return {
        "processes": n,
        "seconds": round(time.perf_counter() - started, 1),
        "tokens_per_second": result.metrics["tokens_per_second"],
        "losses": [round(h["loss"], 5) for h in history if "loss" in h],
    }


def plot(results: dict, out: Path) -> Path:
    """Both training-loss curves on one chart (LMFast logs step 1, then every 10 steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine, peer = results["lmfast"]["losses"], results["trainer"]["losses"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot([1, *range(10, 10 * len(mine), 10)], mine, label="LMFast (fine_tune, pretrain)")
    ax.plot(range(10, 10 * len(peer) + 1, 10), peer, label="transformers Trainer", alpha=0.8)
    ax.set_xlabel("optimizer step (16 x 256 tokens)")
    ax.set_ylabel("train cross-entropy (nats/token)")
    ax.set_title(
        f"small template from scratch; held-out perplexity {results['lmfast']['held_out_ppl']}"
        f" vs {results['trainer']['held_out_ppl']}"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=8.0)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--ddp-steps", type=int, default=20)
    parser.add_argument("--plot-only", action="store_true", help="Redraw from the last results.")
    args = parser.parse_args()
    results_file = HERE / "results" / "pretrain.json"
    if args.plot_only:
        print(plot(json.loads(results_file.read_text()), HERE / "results" / "pretrain_loss.png"))
        return

    from lmfast.data import PrepRequest, prep_dataset
    from lmfast.training.tokenizer import TokenizerTrainRequest, train_tokenizer

    docs = corpus(args.mb)
    prepped = prep_dataset(PrepRequest(inputs=[str(docs)]))
    print("dataset", prepped.artifact_id, flush=True)
    tok = train_tokenizer(TokenizerTrainRequest(corpus=[prepped.artifact_id], vocab_size=8192))
    print("tokenizer", tok.model_dump_json(), flush=True)

    config = recipe(prepped.artifact_id, tok.artifact_id, args.steps, args.seq_len, [])
    mine = lmfast_run(config)
    print("lmfast", json.dumps(mine), flush=True)
    peer = plain_trainer(config, mine["dataset"], tok.artifact_id, args.steps)
    print("trainer", json.dumps(peer), flush=True)
    one = processes(mine["dataset"], tok.artifact_id, 1, args.ddp_steps, args.seq_len)
    two = processes(mine["dataset"], tok.artifact_id, 2, args.ddp_steps, args.seq_len)
    diffs = [abs(a - b) for a, b in zip(one["losses"], two["losses"], strict=False)]
    results = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "corpus_mb": round(docs.stat().st_size / 1e6, 2),
        "dataset": prepped.artifact_id,
        "tokenizer": tok.model_dump(),
        "steps": args.steps,
        "seq_len": args.seq_len,
        "lmfast": mine,
        "trainer": peer,
        "speed_ratio": round(mine["tokens_per_second"] / peer["tokens_per_second"], 2),
        "processes": {"one": one, "two": two, "max_loss_difference": max(diffs)},
    }
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, HERE / "results" / "pretrain_loss.png")
    print(json.dumps({k: v for k, v in results.items() if k not in ("tokenizer",)}, indent=2))


if __name__ == "__main__":
    main()
