"""Decoding beside other work: llama.cpp with every core (llama-server's and Ollama's
default) against LMFast's engine, which decodes with the cores other processes leave free.

    uv run python bench/contention_bench.py [--tokens 48] [--repeats 2] [--seconds 30]

The same embedded GGUF and the same engine code, one process, runs alternating; only the
thread policy differs. Each scenario starts its background load in its own process first:

- idle: nothing else runs;
- one busy process: a single-threaded Python loop (a build, a notebook cell, a browser tab);
- an `lmfast train` run: `lmfast train --method cpt -d FILE` (LoRA on the embedded model,
  the plan's settings: rows of 1,024 tokens, one thread per core), as users run it. Its
  optimizer steps per second while each policy decodes are reported too: what the decoding
  costs the training job.

Each policy gets `--repeats` windows of `--seconds` of back-to-back greedy generations (a
server in use while the load runs), alternating. Printed: decode tokens/s over the window,
median time to first token, the load's steps/s, and the LMFast / all-cores ratio. Results:
bench/results/contention.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "contention.json"
PROMPT = "Write a long story about a cat who travels the world. " * 12


def _spin(counter: Any) -> None:
    while True:
        with counter.get_lock():
            counter.value += 1
        for _ in range(20_000):
            pass


def _train(counter: Any, home: str) -> None:
    """`lmfast train --method cpt -d FILE` as users run it (the CLI, its job worker, the
    plan's settings: rows of 1,024 tokens, one thread per core), its optimizer steps counted
    from the job store."""
    import random
    import subprocess
    import sys

    from lmfast.jobs.store import JobStore

    rng = random.Random(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "over", "hills"]
    data = Path(home) / "text.jsonl"
    data.write_text("".join(
        json.dumps({"text": " ".join(rng.choice(words) for _ in range(3000))}) + "\n"
        for _ in range(40)
    ))  # fmt: skip
    env = {**os.environ, "LMFAST_HOME": home, "MLFLOW_TRACKING_URI": ""}
    cmd = [
        sys.executable,
        "-m",
        "lmfast",
        "train",
        "--method",
        "cpt",
        "-d",
        str(data),
        "--max-steps",
        "100000",
        "training.logging_steps=1",
        "training.tracker=none",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = JobStore(Path(home))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the cleanup below
    try:
        while proc.poll() is None:
            jobs = store.list()
            if jobs:
                counter.value = int(jobs[0].step)
            time.sleep(0.5)
    finally:  # the job outlives its client: stop the worker too
        for job in store.list():
            if job.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(job.pid, 9)
        proc.kill()


def _generate(engine: Any, tokens: int) -> tuple[float, float, int]:
    from lmfast.inference.base import EngineRequest, Finished, SamplingParams

    request = EngineRequest(prompt=PROMPT, params=SamplingParams(temperature=0, max_tokens=tokens))
    start = time.perf_counter()
    first = None
    for event in engine.submit(request):
        if isinstance(event, Finished):
            return time.perf_counter() - start, (first or start) - start, event.completion_tokens
        if first is None and event.text:
            first = time.perf_counter()
    raise RuntimeError("the generation did not finish")


def _window(engine: Any, tokens: int, seconds: float, counter: Any) -> dict[str, float]:
    """Generations back to back for `seconds` (the last one runs to its end), as a server in
    use while the load runs: decode tokens/s, median time to first token, the load's steps/s."""
    before, start = counter.value, time.perf_counter()
    total, busy, ttfts = 0, 0.0, []
    while time.perf_counter() - start < seconds:
        took, ttft, n = _generate(engine, tokens)
        total, busy = total + n, busy + took
        ttfts.append(ttft)
    elapsed = time.perf_counter() - start
    return {"tokens_per_s": total / busy, "ttft_s": statistics.median(ttfts),
            "load_steps_per_s": (counter.value - before) / elapsed,
            "threads": engine.stats()["threads"], "generations": len(ttfts)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30.0, help="Length of each window.")
    args = ap.parse_args()

    from lmfast.hardware import cpu_cores
    from lmfast.inference.llamacpp import LlamaCppEngine
    from lmfast.registry import ALIASES, embedded_gguf

    cores = cpu_cores()
    gguf = embedded_gguf(ALIASES["smollm2-135m-instruct"])
    engines = {
        "fixed": LlamaCppEngine(gguf, n_ctx=1024, n_threads=cores),
        "lmfast": LlamaCppEngine(gguf, n_ctx=1024),
    }
    for engine in engines.values():  # warm: first-run costs out of the figures
        _generate(engine, 4)
    ctx = mp.get_context("spawn")
    scratch = tempfile.TemporaryDirectory(prefix="lmfast-contention-")  # the job's LMFAST_HOME
    scenarios: dict[str, Any] = {
        "idle": None,
        "one busy process": (_spin, ()),
        "an `lmfast train` run": (_train, (scratch.name,)),
    }
    out: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {cores} cores",
        "tokens": args.tokens,
        "scenarios": {},
    }
    for name, load in scenarios.items():
        counter = ctx.Value("q", 0)
        proc = None
        if load is not None:
            proc = ctx.Process(target=load[0], args=(counter, *load[1]), daemon=True)
            proc.start()
            while counter.value < 2:  # the model built, steps running
                if not proc.is_alive():
                    raise RuntimeError(f"the {name} load stopped (exit {proc.exitcode})")
                time.sleep(0.5)
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in engines}
        try:
            for _ in range(args.repeats):
                for policy, engine in engines.items():  # alternating windows
                    runs[policy].append(_window(engine, args.tokens, args.seconds, counter))
                    print(name, policy, json.dumps(runs[policy][-1]), flush=True)
        finally:
            if proc is not None:
                proc.terminate()
                proc.join(timeout=30)
                proc.kill()
        row = {
            policy: {
                key: statistics.median(r[key] for r in rs)
                for key in ("tokens_per_s", "ttft_s", "load_steps_per_s", "threads")
            }
            for policy, rs in runs.items()
        }
        out["scenarios"][name] = row
    for engine in engines.values():
        engine.close()
    scratch.cleanup()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(RESULTS)
    print(table(out))


def table(out: dict[str, Any]) -> str:
    lines = [
        f"Decoding beside other work, {out['date']}, {out['machine']}, embedded "
        f"SmolLM2-135M-Instruct Q4_1, {out['tokens']} tokens greedy:",
        "",
        "| beside | decode tokens/s, all cores / LMFast | ratio | first token s, all cores / "
        "LMFast | the load's steps/s, all cores / LMFast |",
        "|---|---|---|---|---|",
    ]
    for name, row in out["scenarios"].items():
        f, m = row["fixed"], row["lmfast"]
        steps = (
            f"{f['load_steps_per_s']:.2f} / {m['load_steps_per_s']:.2f}" if name != "idle" else "-"
        )
        lines.append(
            f"| {name} | {f['tokens_per_s']:.1f} / {m['tokens_per_s']:.1f} "
            f"({m['threads']:.0f} threads) | {m['tokens_per_s'] / f['tokens_per_s']:.1f}x | "
            f"{f['ttft_s']:.2f} / {m['ttft_s']:.2f} | {steps} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
