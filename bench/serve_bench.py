"""Serving benchmark: `lmfast serve` vs raw llama-cpp-python on the same GGUF, in one run.

    uv run python bench/serve_bench.py [--tokens 128] [--runs 3]

1. Raw llama-cpp-python (`Llama.create_chat_completion(stream=True)`): time to first token and
   decode tokens/s for one stream.
2. `lmfast serve` in a subprocess, driven by the official `openai` client over HTTP/SSE: the
   same single-stream figures, then aggregate tokens/s with 1, 4 and 16 concurrent clients.

Prints a Markdown table and the ratios; writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import openai

from lmfast.hardware import cpu_cores
from lmfast.registry import resolve_model

PROMPT = [{"role": "user", "content": "Write a long story about a dragon who learns to fly."}]
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def raw_llama(path: str, tokens: int, runs: int) -> dict[str, float]:
    from llama_cpp import Llama

    from lmfast.inference.cpu_backend import load_backends
    from lmfast.inference.selfcheck import checked_settings

    # The same CPU variant LMFast's engine runs (a multi-variant build loads none by itself).
    load_backends(checked_settings(path).variant)

    llm = Llama(model_path=path, n_ctx=2048, n_threads=cpu_cores(), verbose=False)
    ttfts, rates = [], []
    for _ in range(runs + 1):  # first run warms up
        t0 = time.perf_counter()
        first = last = None
        n = 0
        for chunk in llm.create_chat_completion(
            messages=[SYSTEM, *PROMPT], max_tokens=tokens, temperature=0, stream=True
        ):
            if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index]
                now = time.perf_counter()
                first = first or now
                last = now
                n += 1
        assert first is not None and last is not None
        ttfts.append(first - t0)
        rates.append((n - 1) / (last - first))
    del llm
    return {"ttft_s": statistics.median(ttfts[1:]), "decode_tok_s": statistics.median(rates[1:])}


def engine_hop(path: str, tokens: int, runs: int, rounds: int = 3) -> dict[str, float]:
    """Single-stream decode through the engine API, in this process (`LlamaCppEngine`) and in
    the child process every face uses (`EngineProcess`), interleaved over `rounds`: what the
    crash isolation costs, without HTTP in the way."""
    from lmfast.inference.base import ChatMessage, Delta, EngineRequest, SamplingParams
    from lmfast.inference.engine_process import EngineProcess
    from lmfast.inference.llamacpp import LlamaCppEngine

    def decode_rate(engine: Any) -> float:
        prompt = engine.render_chat([ChatMessage.model_validate(m) for m in [SYSTEM, *PROMPT]])
        rates = []
        for _ in range(runs + 1):
            request = EngineRequest(prompt, SamplingParams(max_tokens=tokens, temperature=0))
            first = last = None
            n = 0
            for event in engine.submit(request):
                if isinstance(event, Delta) and event.text:
                    now = time.perf_counter()
                    first = first or now
                    last, n = now, n + 1
            assert first is not None and last is not None
            rates.append((n - 1) / (last - first))
        return statistics.median(rates[1:])

    found: dict[str, list[float]] = {"in_process": [], "child_process": []}
    for _ in range(rounds):
        for label, cls in (("in_process", LlamaCppEngine), ("child_process", EngineProcess)):
            engine = cls(path, n_ctx=2048)
            try:
                found[label].append(decode_rate(engine))
            finally:
                engine.close()
    out = {k: statistics.median(v) for k, v in found.items()}
    out["ratio"] = out["child_process"] / out["in_process"]
    return out


def one_stream(client: openai.OpenAI, tokens: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first = last = None
    n_chunks, completion = 0, 0
    stream = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=PROMPT,
        max_tokens=tokens,  # type: ignore[arg-type]
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage:
            completion = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            now = time.perf_counter()
            first = first or now
            last = now
            n_chunks += 1
    assert first is not None and last is not None
    return first - t0, (n_chunks - 1) / (last - first), completion


def concurrent(base: str, clients: int, tokens: int) -> dict[str, float]:
    """`clients` simultaneous requests from the official async client (one event loop, so
    the load generator itself stays light on this 2-core machine)."""

    async def run() -> tuple[list[int], list[str], float]:
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=300)

        async def one(i: int) -> int | str:
            try:
                r = await client.chat.completions.create(
                    model="smollm2-135m-instruct",
                    messages=PROMPT,  # type: ignore[arg-type]
                    max_tokens=tokens,
                    temperature=0.7,
                    seed=i,
                )
                return r.usage.completion_tokens if r.usage else 0
            except Exception as e:
                return type(e).__name__

        t0 = time.perf_counter()
        out = await asyncio.gather(*(one(i) for i in range(clients)))
        wall = time.perf_counter() - t0
        await client.close()
        return [x for x in out if isinstance(x, int)], [x for x in out if isinstance(x, str)], wall

    totals, errors, wall = asyncio.run(run())
    return {
        "clients": clients,
        "errors": len(errors),
        "tokens": sum(totals),
        "wall_s": wall,
        "aggregate_tok_s": sum(totals) / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--port", type=int, default=8391)
    args = ap.parse_args()
    path = str(resolve_model().path)

    raw = raw_llama(path, args.tokens, args.runs)
    print(f"raw llama-cpp-python: {raw}", flush=True)
    hop = engine_hop(path, args.tokens, args.runs)
    print(f"engine in this process vs in its child process: {hop}", flush=True)

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmfast",
            "serve",
            "--port",
            str(args.port),
            "--parallel",
            "16",
            "--ctx-size",
            "2048",
            "--queue-size",
            "64",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{args.port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        one_stream(client, args.tokens)  # warm-up
        singles = [one_stream(client, args.tokens) for _ in range(args.runs)]
        served = {
            "ttft_s": statistics.median(s[0] for s in singles),
            "decode_tok_s": statistics.median(s[1] for s in singles),
        }
        print(f"lmfast serve (1 stream): {served}", flush=True)
        conc = [concurrent(base, n, args.tokens) for n in (1, 4, 16)]
        for row in conc:
            print(f"concurrency {row}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)

    ratio = served["decode_tok_s"] / raw["decode_tok_s"]
    scale = conc[2]["aggregate_tok_s"] / conc[0]["aggregate_tok_s"]
    machine = f"{platform.machine()}, {cpu_cores()} cores, {platform.python_version()}"
    table = "\n".join(
        [
            f"Serving benchmark, {date.today()}, {machine}, SmolLM2-135M-Instruct Q4_1, "
            f"{args.tokens} tokens, greedy for single stream",
            "",
            "| measure | raw llama-cpp-python | lmfast serve (openai client, SSE) | ratio |",
            "|---|---|---|---|",
            f"| single-stream decode tokens/s | {raw['decode_tok_s']:.1f} | "
            f"{served['decode_tok_s']:.1f} | {ratio:.2f}x |",
            f"| time to first token | {raw['ttft_s'] * 1000:.0f} ms | "
            f"{served['ttft_s'] * 1000:.0f} ms | |",
            f"| engine API single stream, in process vs child process (crash isolation) | "
            f"{hop['in_process']:.1f} | {hop['child_process']:.1f} | {hop['ratio']:.2f}x |",
            *[
                f"| {r['clients']} concurrent clients: aggregate tokens/s | | "
                f"{r['aggregate_tok_s']:.1f} ({r['errors']} errors) | "
                f"{r['aggregate_tok_s'] / conc[0]['aggregate_tok_s']:.2f}x of 1 client |"
                for r in conc
            ],
        ]
    )
    print()
    print(table)
    print(
        f"\nsingle stream vs raw: {ratio:.2f}x (target >= 0.9); "
        f"16 clients vs 1: {scale:.2f}x (target >= 1.5)"
    )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "serve.json").write_text(
        json.dumps(
            {
                "date": str(date.today()),
                "machine": machine,
                "raw": raw,
                "engine_hop": hop,
                "served": served,
                "concurrency": conc,
                "single_ratio": ratio,
                "scale_16_vs_1": scale,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
