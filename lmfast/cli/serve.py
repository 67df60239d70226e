"""`lmfast serve`: the OpenAI-compatible HTTP server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lmfast.cli.options import GuardOpt
from lmfast.config import DEFAULT_MODEL


def serve_command(
    model: Annotated[str, typer.Argument(help="Model to serve.")] = DEFAULT_MODEL,
    host: Annotated[str | None, typer.Option(help="Interface (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 8000).")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="Bearer token clients must send (or env LMFAST_API_KEY); required off loopback."
        ),
    ] = None,
    backend: Annotated[str | None, typer.Option(help="auto, llamacpp, transformers, vllm.")] = None,
    parallel: Annotated[
        int | None, typer.Option(help="Requests decoded together (continuous batching).")
    ] = None,
    queue_size: Annotated[
        int | None, typer.Option(help="Requests allowed to wait; more get HTTP 429.")
    ] = None,
    ctx_size: Annotated[int | None, typer.Option(help="Context window per request.")] = None,
    max_tokens_default: Annotated[
        int | None,
        typer.Option(help="Tokens generated when a request sets no max_tokens (default 1024)."),
    ] = None,
    cors_origin: Annotated[
        list[str] | None, typer.Option(help="Allow this CORS origin (repeatable).")
    ] = None,
    guard: GuardOpt = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option(
            "--adapter",
            help="Serve a LoRA adapter over MODEL as the model NAME: NAME=ADAPTER (artifact "
            "id, PEFT folder or GGUF LoRA; repeatable; llama.cpp).",
        ),
    ] = None,
    adapter_updates: Annotated[
        bool | None,
        typer.Option(
            "--adapter-updates",
            help="Allow POST /v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM's "
            "routes) while serving.",
        ),
    ] = None,
    kv_unified: Annotated[
        bool | None,
        typer.Option(
            "--kv-unified/--no-kv-unified",
            help="Slots share one KV pool (default) or keep a private window each.",
        ),
    ] = None,
    kv_cache_tokens: Annotated[
        int | None, typer.Option(help="Tokens the shared KV pool holds (default: one window).")
    ] = None,
    cache_ram: Annotated[
        int | None,
        typer.Option(help="MiB of RAM for the states of conversations that lost their slot."),
    ] = None,
    draft: Annotated[
        str | None,
        typer.Option(
            help="Speculative decoding: a GGUF draft model with MODEL's vocabulary (id, path "
            "or artifact); output unchanged (llama.cpp)."
        ),
    ] = None,
    draft_max: Annotated[
        int | None, typer.Option(help="Most tokens the draft guesses per step (default 8).")
    ] = None,
    draft_min: Annotated[
        int | None,
        typer.Option(
            help="Fewest tokens the draft guesses per step (default 0: as many as pay off "
            "on this machine, timed at start)."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML recipe.")] = None,
) -> None:
    """Serve MODEL over an OpenAI-compatible API (/v1/chat/completions, /v1/completions)."""
    from lmfast.config import load_config
    from lmfast.serving import run_server
    from lmfast.serving.adapters import parse_adapter_options

    flags = {
        "host": host,
        "port": port,
        "backend": backend,
        "max_concurrency": parallel,
        "queue_size": queue_size,
        "context_length": ctx_size,
        "default_max_tokens": max_tokens_default,
        "cors_origins": cors_origin,
        "api_key": api_key or os.environ.get("LMFAST_API_KEY"),
        "guard": guard,
        "adapters": parse_adapter_options(adapter) if adapter else None,
        "draft": draft,
        "draft_max": draft_max,
        "draft_min": draft_min,
        "adapter_updates": adapter_updates,
        "kv_unified": kv_unified,
        "kv_cache_tokens": kv_cache_tokens,
        "cache_ram_mb": cache_ram,
    }
    cfg = load_config(config, values={f"serve.{k}": v for k, v in flags.items()})
    run_server(model, cfg.serve)


def speculate_command(
    model: Annotated[str, typer.Argument(help="The model the draft drafts for (GGUF).")],
    draft: Annotated[str, typer.Option(help="Draft model (GGUF with MODEL's vocabulary).")],
    prompts: Annotated[
        Path | None,
        typer.Option(
            help="Prompts to measure on: a text file (one per line) or JSONL with a prompt, "
            "text or messages field (default: 8 built-in questions)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many prompts.")] = 32,
    max_tokens: Annotated[int, typer.Option(min=1, max=4096, help="Tokens per reply.")] = 128,
    draft_max: Annotated[
        int, typer.Option(min=1, max=64, help="Most tokens the draft guesses per step.")
    ] = 8,
    draft_min: Annotated[
        int,
        typer.Option(
            min=0, max=64, help="Fewest tokens drafted per step (0: as many as pay off here)."
        ),
    ] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Measure speculative decoding: MODEL's greedy replies with and without DRAFT, prompt by
    prompt, alternating; prints acceptance, speed-up and whether every reply is the same."""
    from lmfast.cli.output import console
    from lmfast.inference.draft_measure import SAMPLE_PROMPTS, measure_draft, read_prompts
    from lmfast.registry import resolve_model

    served, drafting = resolve_model(model), resolve_model(draft)
    for field, resolved in (("MODEL", served), ("--draft", drafting)):
        if resolved.format != "gguf":
            raise typer.BadParameter(
                f"{resolved.name} is a {resolved.format} model; speculative decoding runs in "
                f"llama.cpp on GGUF files (lmfast export {resolved.reference} --format gguf)",
                param_hint=field,
            )
    try:
        texts = (read_prompts(prompts) if prompts else SAMPLE_PROMPTS)[:limit]
    except (OSError, ValueError) as e:
        raise typer.BadParameter(str(e), param_hint="--prompts") from None
    with console.status("measuring") as status:
        report = measure_draft(
            served.path, drafting.path, texts, max_tokens=max_tokens, draft_max=draft_max,
            draft_min=draft_min,
            progress=lambda done, total, msg: status.update(msg),
        )  # fmt: skip
    if json_out:
        print(report.model_dump_json(indent=2))
        return
    accepted = (
        f"acceptance {report.acceptance:.0%} ({report.accepted} of {report.drafted} drafted)"
        if report.drafted
        else "nothing drafted: on this machine checking guesses costs what decoding them does "
        "(--draft-min N to draft anyway)"
    )
    console.print(
        f"{report.prompts} prompts, {report.tokens} tokens: {report.tokens_per_s_alone:.1f} "
        f"tokens/s alone, {report.tokens_per_s_with_draft:.1f} with the draft "
        f"({report.speedup:.2f}x); {accepted}; replies identical: "
        f"{'yes' if report.identical else 'NO'}"
    )
