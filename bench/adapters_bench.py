"""Many fine-tunes over one base: one `lmfast serve` with N LoRA adapters against N servers of
one adapter each (serving N fine-tunes where every model name needs a process of its own, as
Ollama's runners do), in one run, with the defaults users meet (`--parallel 4`, the model's
context up to 8,192 tokens).

    uv run python bench/adapters_bench.py [--adapters 4] [--tokens 64]

The adapters are LoRA r=16 on every projection of the embedded SmolLM2-135M-Instruct, as
`lmfast train` makes them, with random B matrices: memory and speed do not depend on what an
adapter learned. Memory: resident (RSS) and proportional (PSS: pages shared between
processes, such as the mmapped base GGUF, split among them) set size of every server and its
llama.cpp child, after each model name answered a request. Speed: aggregate tokens/s of N
concurrent clients each on its own adapter, against N clients on the base model, in the same
server (llama.cpp applies an adapter to a whole batch, so different adapters take turns).

Prints a Markdown table; writes bench/results/adapters.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil

from lmfast.config import DEFAULT_MODEL
from lmfast.hardware import cpu_cores

ASK = [{"role": "user", "content": "Write a short story about a dragon who learns to fly."}]


def make_adapters(n: int, folder: Path) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model

    from lmfast.loading import load_transformers
    from lmfast.registry import resolve_model

    base, _ = load_transformers(DEFAULT_MODEL, dtype="float32")
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    out = []
    for i in range(n):
        torch.manual_seed(i)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.01)
        path = folder / f"adapter{i}"
        model.save_pretrained(str(path))
        cfg = json.loads((path / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = str(resolve_model(DEFAULT_MODEL).path)
        (path / "adapter_config.json").write_text(json.dumps(cfg))
        out.append(path)
    return out


@contextmanager
def server(port: int, adapters: dict[str, Path], home: Path) -> Any:
    cmd = [sys.executable, "-m", "lmfast", "serve", "--port", str(port)]
    for name, path in adapters.items():
        cmd += ["--adapter", f"{name}={path}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LMFAST_HOME": str(home)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the server on port {port} exited with {proc.returncode}")
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def memory(proc: subprocess.Popen) -> dict[str, float]:
    p = psutil.Process(proc.pid)
    procs = [p, *p.children(recursive=True)]
    rss = sum(x.memory_info().rss for x in procs)
    pss = sum(x.memory_full_info().pss for x in procs)
    return {"rss_mb": rss / 2**20, "pss_mb": pss / 2**20, "processes": len(procs)}


def ask(base: str, model: str, tokens: int) -> str:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=300)
    out = client.chat.completions.create(model=model, messages=ASK, max_tokens=tokens,  # type: ignore[arg-type]
                                         temperature=0)  # fmt: skip
    return out.choices[0].message.content or ""


def aggregate(base: str, models: list[str], tokens: int) -> float:
    async def run() -> float:
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=600)

        async def one(model: str) -> int:
            r = await client.chat.completions.create(model=model, messages=ASK,  # type: ignore[arg-type]
                                                     max_tokens=tokens, temperature=0)  # fmt: skip
            return r.usage.completion_tokens if r.usage else 0

        t0 = time.perf_counter()
        done = await asyncio.gather(*(one(m) for m in models))
        wall = time.perf_counter() - t0
        await client.close()
        return sum(done) / wall

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--adapters", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--port", type=int, default=8491)
    args = ap.parse_args()
    n = args.adapters
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "home"
        paths = make_adapters(n, work)
        names = {f"a{i}": p for i, p in enumerate(paths)}

        with server(args.port, names, home) as (base, proc):
            replies = {m: ask(base, m, 16) for m in [DEFAULT_MODEL, *names]}
            one_server = memory(proc)
            # Same-size requests, alternating the two workloads so drift hits both alike.
            mixed, plain = [], []
            for _ in range(2):
                mixed.append(aggregate(base, list(names), args.tokens))
                plain.append(aggregate(base, [DEFAULT_MODEL] * n, args.tokens))
        print(f"one server, {n} adapters: {one_server}", flush=True)

        separate = []
        with ExitStack() as stack:
            for i, (name, path) in enumerate(names.items()):
                base_i, proc_i = stack.enter_context(server(args.port + 1 + i, {name: path}, home))
                ask(base_i, name, 16)
                separate.append(proc_i)
            each = [memory(p) for p in separate]
        many = {k: sum(e[k] for e in each) for k in ("rss_mb", "pss_mb", "processes")}
        print(f"{n} servers, one adapter each: {many}", flush=True)

    distinct = len(set(replies.values()))
    result = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {cpu_cores()} cores, Python {platform.python_version()}",
        "model": DEFAULT_MODEL,
        "adapters": n,
        "one_server": one_server,
        "separate_servers": many,
        "separate_each": each,
        "aggregate_tok_s": {"one_adapter_per_client": mixed, "base_for_every_client": plain},
        "distinct_replies": distinct,
    }
    out = Path(__file__).parent / "results" / "adapters.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    best_mixed, best_plain = max(mixed), max(plain)
    print(f"\nMulti-adapter serving, {date.today()}, {result['machine']}, {DEFAULT_MODEL}, "
          f"{n} LoRA r=16 adapters, defaults (--parallel 4)\n")  # fmt: skip
    print("| measure | one server, every adapter | one server per adapter | ratio |")
    print("|---|---|---|---|")
    for key, label in (("pss_mb", "memory, PSS (MB)"), ("rss_mb", "memory, RSS sum (MB)")):
        print(f"| {label} | {one_server[key]:.0f} | {many[key]:.0f} | "
              f"{one_server[key] / many[key]:.2f}x |")  # fmt: skip
    print(f"| processes | {one_server['processes']} | {many['processes']} | |")
    print(f"\n{n} clients, one adapter each: {best_mixed:.1f} tokens/s; {n} clients on the base: "
          f"{best_plain:.1f} tokens/s ({best_mixed / best_plain:.2f}x); "
          f"{distinct} distinct greedy replies from {n + 1} model names")  # fmt: skip


if __name__ == "__main__":
    main()
