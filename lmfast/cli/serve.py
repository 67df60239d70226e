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
    }
    cfg = load_config(config, values={f"serve.{k}": v for k, v in flags.items()})
    run_server(model, cfg.serve)
