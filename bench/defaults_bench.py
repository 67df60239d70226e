"""Do bare defaults learn? `lmfast train -d FILE` against the shipped recipe and a tuned one.

    uv run python bench/defaults_bench.py [--sizes 200,2000] [--tasks ledger,order,yaml]
        [--configs bare,recipe,tuned,planned] [--cpt] [--align [--align-pairs 300,2000]]
        [--memory]

Three chat tasks the embedded SmolLM2-135M-Instruct fails at (made-up formats: it scores
0-2 % before training), each at the given sizes, with 60 held-out conversations drawn apart
from the training ones:

- ledger: a date in words -> a ledger code ("D2021.03.14/Q1"), answers of ~10 tokens;
- order: an order note in varied phrasings -> one-line JSON with four fields, ~30 tokens;
- yaml: a CSV table of 3-5 rows -> a YAML list, 40-90 tokens.

For each, the held-out exact match (`lmfast eval`, greedy), optimizer steps, training time
and peak memory against the plan, for: bare defaults (`lmfast train -d FILE`, nothing
else), the shipped recipe (`-c examples/chat_sft_cpu.yaml`) and the best of a small
learning-rate x epochs grid (`--configs tuned`, the same runs `lmfast tune` would make);
`--configs planned` records only what bare defaults would do (`lmfast plan -d FILE`), for
sets too large to train here.
`--cpt`: continued pretraining on text nobody here wrote (the docstrings of Python's own
standard library modules, about 400,000 characters), held-out perplexity of other modules'
docstrings, bare against the shipped recipe. `--align`: `lmfast align -d pairs.jsonl` on
date questions (chosen: the ISO date; rejected: the date in words or a wrong ISO date),
greedy answers equal to the chosen one on held-out prompts, bare against
`--max-steps 60 --lr 1e-3`, at each of `--align-pairs` (300 by default). Every run is a
separate `lmfast` process. Results: bench/results/defaults.json.
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
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
REPO = HERE.parent
WORK = Path(os.environ.get("LMFAST_BENCH_DIR", "/tmp/lmfast-defaults-bench"))
RESULTS = HERE / "results" / "defaults.json"
HELD_OUT = 60

MONTHS = "January February March April May June July August September October November December"
MONTH_NAMES = MONTHS.split()
FIRST = "Ana Ben Chloe Dmitri Elena Farid Grace Hiro Ines Jonas Kofi Lena Mateo Nadia Omar Priya"
LAST = "Smith Ito Novak Silva Berg Khan Rossi Meyer Dubois Costa Park Olsen Haddad Moreau Lund"
CITIES = "Oslo Lyon Porto Graz Turku Malmo Ghent Bergen Split Krakow Tartu Bilbao Leeds Basel"
ITEMS = {
    "lamp": "lamps",
    "chair": "chairs",
    "kettle": "kettles",
    "rug": "rugs",
    "shelf": "shelves",
    "clock": "clocks",
    "mirror": "mirrors",
    "bench": "benches",
    "vase": "vases",
    "desk": "desks",
}
PARTS = [
    "bolt",
    "nut",
    "washer",
    "hinge",
    "spring",
    "gear",
    "valve",
    "clamp",
    "bracket",
    "rivet",
    "pulley",
    "gasket",
]


def _ledger(rng: random.Random) -> tuple[str, str]:
    d = date(2000, 1, 1) + timedelta(days=rng.randrange(365 * 30))
    words = f"{MONTH_NAMES[d.month - 1]} {d.day}, {d.year}"
    asks = ("Ledger code for {}", "Write the ledger code of {}.", "{} as a ledger code, please")
    return rng.choice(asks).format(
        words
    ), f"D{d.year}.{d.month:02d}.{d.day:02d}/Q{(d.month + 2) // 3}"


def _order(rng: random.Random) -> tuple[str, str]:
    who = f"{rng.choice(FIRST.split())} {rng.choice(LAST.split())}"
    item = rng.choice(list(ITEMS))
    qty, city = rng.randint(1, 30), rng.choice(CITIES.split())
    things = ITEMS[item] if qty > 1 else item
    notes = (
        f"Order note: {who} wants {qty} {things} delivered to {city}.",
        f"Please send {qty} {things} to {city}, ordered by {who}.",
        f"{who} from {city} ordered {qty} {things}.",
        f"New order - customer {who}, {qty} x {item}, ship to {city}",
    )
    answer = json.dumps({"customer": who, "item": item, "qty": qty, "city": city})
    return rng.choice(notes) + "\nAs order JSON:", answer


def _yaml(rng: random.Random) -> tuple[str, str]:
    rows = [
        (f"{rng.choice('ABCDEFGH')}{rng.randint(1, 99)}", rng.choice(PARTS), rng.randint(1, 500))
        for _ in range(rng.randint(3, 5))
    ]
    csv = "sku,name,qty\n" + "\n".join(f"{s},{n},{q}" for s, n, q in rows)
    out = "\n".join(f"- sku: {s}\n  name: {n}\n  qty: {q}" for s, n, q in rows)
    return f"Convert this CSV to a YAML list:\n{csv}", out


TASKS = {"ledger": _ledger, "order": _order, "yaml": _yaml}


def write_task(task: str, size: int) -> tuple[Path, Path]:
    """train.jsonl (chat) and heldout.jsonl (prompt/answer) for one task and size; held-out
    prompts never occur in training."""
    folder = WORK / "data" / f"{task}-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"{task}-{size}")
    held: dict[str, str] = {}
    while len(held) < HELD_OUT:
        p, a = TASKS[task](rng)
        held[p] = a
    train = []
    while len(train) < size:
        p, a = TASKS[task](rng)
        if p not in held:
            train.append(
                {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]}
            )
    train_file, held_file = folder / "train.jsonl", folder / "heldout.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in train))
    held_file.write_text(
        "".join(json.dumps({"prompt": p, "answer": a}) + "\n" for p, a in held.items())
    )
    return train_file, held_file


def lmfast(*args: str) -> dict[str, Any]:
    """Run one `lmfast ... --json` command in its own process; its JSON result."""
    env = {**os.environ, "LMFAST_HOME": str(WORK / "home"), "MLFLOW_TRACKING_URI": ""}
    cmd = [sys.executable, "-m", "lmfast", *args, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout[out.stdout.index("{") :])


def _find(tree: Any, key: str) -> float | None:
    if isinstance(tree, dict):
        if key in tree and isinstance(tree[key], int | float):
            return float(tree[key])
        for v in tree.values():
            found = _find(v, key)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for v in tree:
            found = _find(v, key)
            if found is not None:
                return found
    return None


def score(model: str, task_file: Path, metric: str = "exact_match") -> float:
    result = lmfast("eval", model, "-t", str(task_file), "--no-efficiency", "--tracker", "none")
    value = _find(result["models"], metric)
    assert value is not None, f"no {metric} in the evaluation of {model}"
    return value


def train(data: Path, *extra: str, command: str = "train") -> dict[str, Any]:
    started = time.perf_counter()
    result = lmfast(command, "-d", str(data), "--fresh", *extra)
    run = result.get("training", result)
    m, plan = run["metrics"], run["plan"]
    return {
        "artifact": run["artifact_id"],
        "steps": int(m["steps"]),
        "train_seconds": round(m["seconds"], 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "peak_memory_gb": round(m["peak_memory_gb"], 2),
        "planned_peak_memory_gb": plan["estimated_peak_memory_gb"],
        "seq_len": plan["max_seq_length"],
        "batch": plan["effective_batch_size"],
        "summary": plan.get("summary"),
        "warnings": run.get("warnings", []),
        "learning_rate": next(
            (c["value"] for c in plan.get("choices", []) if c["setting"].endswith("learning_rate")),
            None,
        ),
    }


CONFIGS: dict[str, list[str]] = {
    "bare": [],
    "recipe": ["-c", str(REPO / "examples" / "chat_sft_cpu.yaml")],
}
# The grid a tuner would search for a LoRA SFT run of this size: rate x passes.
GRID = [("3e-4", "3"), ("1e-3", "1"), ("1e-3", "3"), ("3e-3", "2")]


def chat_tasks(sizes: list[int], tasks: list[str], configs: list[str], out: dict) -> None:
    for task in tasks:
        for size in sizes:
            train_file, held_file = write_task(task, size)
            key = f"{task}-{size}"
            row = out.setdefault("chat", {}).setdefault(key, {})
            if configs != ["planned"] and "base" not in out.setdefault("base", {}).get(task, {}):
                out["base"].setdefault(task, {})["base"] = score("smollm2-135m-instruct", held_file)
            for name in configs:
                if name in row:
                    continue
                if name == "planned":  # what bare defaults would do, without training
                    plan = lmfast("plan", "-d", str(train_file))
                    row[name] = {
                        "steps": plan["total_steps"],
                        "estimated_minutes": plan["estimated_training_time_minutes"],
                        "planned_peak_memory_gb": plan["estimated_peak_memory_gb"],
                        "seq_len": plan["max_seq_length"],
                        "batch": plan["effective_batch_size"],
                        "summary": plan["summary"],
                        "warnings": plan["warnings"],
                    }
                elif name == "tuned":
                    trials = []
                    for lr, epochs in GRID:
                        r = train(train_file, "--lr", lr, "--epochs", epochs)
                        r["exact_match"] = score(r["artifact"], held_file)
                        r["grid"] = {"learning_rate": lr, "epochs": epochs}
                        trials.append(r)
                        print(key, "tuned trial", json.dumps(r), flush=True)
                    best = max(trials, key=lambda r: (r["exact_match"], -r["train_seconds"]))
                    row[name] = {**best, "trials": len(trials)}
                else:
                    r = train(train_file, *CONFIGS[name])
                    r["exact_match"] = score(r["artifact"], held_file)
                    row[name] = r
                print(key, name, json.dumps(row[name]), flush=True)
                save(out)


# Beside bare's own choice (5e-4, 2 passes on this corpus), which the tuned row also counts:
# twice the rate on one pass (the plan keeps 60+ steps with a smaller batch). A wider grid
# costs 25-40 minutes a point here, 10 of them the evaluation's 8k-token windows.
CPT_GRID = [("1e-3", "1")]
CPT_TRAIN_CHARS = 400_000
CPT_HELD_CHARS = 150_000


def cpt(out: dict, configs: list[str]) -> None:
    """Continued pretraining on the standard library's docstrings."""
    import pydoc
    import sys as _sys

    folder = WORK / "data" / "cpt"
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(n for n in _sys.stdlib_module_names if not n.startswith("_"))
    texts = []
    for n in names:
        try:
            module = __import__(n)
            doc = pydoc.render_doc(module, renderer=pydoc.plaintext)
        except Exception:  # modules that need a platform or print on import
            continue
        if 2000 < len(doc) < 200_000:
            texts.append(doc)
    rng = random.Random(0)
    rng.shuffle(texts)
    held, rest = texts[:12], texts[12:]
    # A domain corpus a 2-core CPU trains one pass over in about a quarter of an hour
    # (the whole standard library's ~3.4 M characters would take over an hour a run).
    train_texts, size = [], 0
    for t in rest:
        if size + len(t) > CPT_TRAIN_CHARS:
            continue
        train_texts.append(t)
        size += len(t)
    train_file, held_file = folder / "train.jsonl", folder / "heldout.txt"
    train_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in train_texts))
    held_file.write_text("\n\n".join(held)[:CPT_HELD_CHARS])
    row = out.setdefault(
        "cpt",
        {"documents": len(train_texts), "characters": size, "held_out_documents": len(held),
         "held_out_characters": min(CPT_HELD_CHARS, len(held_file.read_text()))},
    )  # fmt: skip
    if "base" not in row:
        row["base"] = score("smollm2-135m-instruct", held_file, "perplexity")
    for name, extra in {
        "bare": ["--method", "cpt"],
        "recipe": ["-c", str(REPO / "examples" / "continued_pretraining.yaml")],
    }.items():
        if name in row or name not in configs:
            continue
        r = train(train_file, *extra)
        r["perplexity"] = score(r["artifact"], held_file, "perplexity")
        row[name] = r
        print("cpt", name, json.dumps(r), flush=True)
        save(out)
    if "tuned" in configs and "tuned" not in row:
        trials = []
        if "bare" in row:  # bare's own settings are a point of the grid a tuner would try
            bare = row["bare"]
            trials.append({**bare, "grid": {"learning_rate": str(bare["learning_rate"]),
                                            "epochs": "bare"}})  # fmt: skip
        for lr, epochs in CPT_GRID:
            r = train(train_file, "--method", "cpt", "--lr", lr, "--epochs", epochs)
            r["perplexity"] = score(r["artifact"], held_file, "perplexity")
            r["grid"] = {"learning_rate": lr, "epochs": epochs}
            trials.append(r)
            print("cpt tuned trial", json.dumps(r), flush=True)
        best = min(trials, key=lambda r: r["perplexity"])
        row["tuned"] = {**best, "trials": len(trials)}
        save(out)


def align(out: dict, configs: list[str], pairs: int) -> None:
    folder = WORK / "data" / f"align-{pairs}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    asks = (
        "What is {} as a date?",
        "Give the date: {}.",
        "Write {} as a date, please.",
        "Date of {}?",
    )
    seen: dict[str, tuple[str, str]] = {}
    while len(seen) < max(pairs, 300) + 60:
        d = date(1990, 1, 1) + timedelta(days=rng.randrange(365 * 40))
        words = f"the {_ordinal(d.day)} of {MONTH_NAMES[d.month - 1]} {d.year}"
        prompt = rng.choice(asks).format(words)
        if rng.random() < 0.5:
            wrong = f"{MONTH_NAMES[d.month - 1]} {d.day}, {d.year}"
        else:
            wrong = (d + timedelta(days=rng.choice((-1, 1, 30)))).isoformat()
        seen[prompt] = (d.isoformat(), wrong)
    items = list(seen.items())
    # The rng draws the same prompts whatever the size, so items 300-359 are the same 60
    # held-out prompts for every size (and for the 300-pair runs measured before sizes).
    held, train_pairs = items[300:360], items[:300] + items[360:]
    pairs_file, held_file = folder / "pairs.jsonl", folder / "heldout.jsonl"
    pairs_file.write_text(
        "".join(
            json.dumps({"prompt": p, "chosen": c, "rejected": r}) + "\n"
            for p, (c, r) in train_pairs
        )
    )
    held_file.write_text(
        "".join(json.dumps({"prompt": p, "answer": c}) + "\n" for p, (c, _) in held)
    )
    row = out.setdefault(f"align-{pairs}", {"pairs": len(train_pairs), "held_out": len(held)})
    if "base" not in row:
        row["base"] = score("smollm2-135m-instruct", held_file)
    for name, extra in {"bare": [], "tuned": ["--max-steps", "60", "--lr", "1e-3"]}.items():
        if name in row or name not in configs:
            continue
        r = train(pairs_file, *extra, command="align")
        r["exact_match"] = score(r["artifact"], held_file)
        row[name] = r
        print("align", name, json.dumps(r), flush=True)
        save(out)


MEMORY_SETTINGS = [  # (sequence length, micro-batch, LoRA): rows full of text
    (256, 8, True),
    (512, 4, True),
    (1024, 2, True),
    (1024, 4, True),
    (256, 8, False),
    (1024, 4, False),
]


def memory(out: dict) -> None:
    """The plan's peak-memory estimate against the measured peak (resident set since
    training began), on rows full of text, 4 optimizer steps each; LoRA against full
    fine-tuning at equal settings."""
    folder = WORK / "data" / "memory"
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    words = (MONTHS + " " + FIRST + " " + LAST + " " + CITIES).split() + PARTS
    texts = [" ".join(rng.choice(words) for _ in range(3000)) for _ in range(40)]
    data = folder / "text.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    rows = out.setdefault("memory", {})
    for seq, micro, lora in MEMORY_SETTINGS:
        key = f"seq{seq}-micro{micro}-{'lora' if lora else 'full'}"
        if key in rows:
            continue
        extra = ["--method", "cpt", "--seq-len", str(seq), "--max-steps", "4",
                 f"training.micro_batch_size={micro}", "training.gradient_accumulation_steps=1",
                 "training.tracker=none"]  # fmt: skip
        rows[key] = train(data, *extra, *([] if lora else ["--full"]))
        print("memory", key, json.dumps(rows[key]), flush=True)
        save(out)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def table(out: dict) -> str:
    """The results as the Markdown tables docs/benchmarks.md carries."""
    lines = [
        "| task, conversations | base | setup | held-out exact match | steps | training s "
        "| peak GB (planned) |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in out.get("chat", {}).items():
        task = key.split("-")[0]
        base = out.get("base", {}).get(task, {}).get("base")
        if "planned" in row:
            r = row["planned"]
            lines.append(
                f"| {key} | | bare, planned only (`lmfast plan -d`; not trained here) | - | "
                f"{r['steps']} | about {r['estimated_minutes'] * 60:.0f} (estimate) | - "
                f"({r['planned_peak_memory_gb']:.2f}) |"
            )
        for name in ("bare", "recipe", "tuned"):
            r = row.get(name)
            if not r:
                continue
            setup = (
                name
                if name != "tuned"
                else (
                    f"tuned (best of {r['trials']}: lr {r['grid']['learning_rate']}, "
                    f"{r['grid']['epochs']} epochs)"
                )
            )
            lines.append(
                f"| {key} | {base:.0%} | {setup} | {r['exact_match']:.1%} | {r['steps']} | "
                f"{r['train_seconds']:.0f} | {r['peak_memory_gb']:.2f} "
                f"({r['planned_peak_memory_gb']:.2f}) |"
            )
    for key in sorted((k for k in out if k.startswith("align-")), key=lambda k: int(k[6:])):
        a = out[key]
        lines += ["", f"Alignment, {a['pairs']} pairs, {a['held_out']} held-out prompts "
                  f"(base {a['base']:.1%} greedy answers equal to the chosen one):", "",
                  "| setup | greedy = chosen | steps | training s | peak GB (planned) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name in ("bare", "tuned"):
            if name in a:
                r = a[name]
                lines.append(
                    f"| {name} | {r['exact_match']:.1%} | {r['steps']} | "
                    f"{r['train_seconds']:.0f} | {r['peak_memory_gb']:.2f} "
                    f"({r['planned_peak_memory_gb']:.2f}) |"
                )
    for key in ("cpt", "cpt_document_filters"):
        c = out.get(key)
        if not c:
            continue
        lines += ["", f"Continued pretraining ({key}), {c['documents']} pages, "
                  f"{c['characters']:,} characters; held-out perplexity (base {c['base']:.2f}):",
                  "", "| setup | held-out perplexity | steps | training s | peak GB (planned) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name in ("bare", "recipe", "tuned"):
            r = c.get(name)
            if not r:
                continue
            setup = name if name != "tuned" else (
                f"tuned (best of {r['trials']}: lr {r['grid']['learning_rate']}, "
                f"{r['grid']['epochs']} epochs)"
            )  # fmt: skip
            lines.append(
                f"| {setup} | {r['perplexity']:.2f} | {r['steps']} | {r['train_seconds']:.0f} | "
                f"{r['peak_memory_gb']:.2f} ({r['planned_peak_memory_gb']:.2f}) |"
            )
    if "memory" in out:
        lines += ["", "| setting | peak GB | planned GB | planned / measured |",
                  "|---|---|---|---|"]  # fmt: skip
        for key, r in out["memory"].items():
            ratio = r["planned_peak_memory_gb"] / r["peak_memory_gb"]
            lines.append(
                f"| {key} | {r['peak_memory_gb']:.2f} | {r['planned_peak_memory_gb']:.2f} | "
                f"{ratio:.2f} |"
            )
    return "\n".join(lines)


def save(out: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(RESULTS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200,2000")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--configs", default="bare,recipe,tuned")
    ap.add_argument("--cpt", action="store_true")
    ap.add_argument("--align", action="store_true")
    ap.add_argument("--align-pairs", default="300", help="Preference-set sizes, e.g. 300,2000.")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--table", action="store_true", help="Print the tables and stop.")
    ap.add_argument("--chat", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    out = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if "align" in out:  # measured before alignment had sizes: always 300 pairs
        out["align-300"] = out.pop("align")
    if args.table:
        print(table(out))
        return
    out["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    out["date"] = date.today().isoformat()
    if args.chat:
        sizes = [int(s) for s in args.sizes.split(",")]
        chat_tasks(sizes, args.tasks.split(","), args.configs.split(","), out)
    if args.memory:
        memory(out)
    if args.cpt:
        cpt(out, args.configs.split(","))
    if args.align:
        for pairs in args.align_pairs.split(","):
            align(out, args.configs.split(","), int(pairs))
    save(out)


if __name__ == "__main__":
    main()
