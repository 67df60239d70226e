"""`lmfast serve`: an OpenAI-compatible HTTP server over any LMFast engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmfast.config import DEFAULT_MODEL, ServeConfig

if TYPE_CHECKING:
    from fastapi import FastAPI


def build_app(model: str | None, config: ServeConfig) -> FastAPI:
    """Resolve `model` now (bad references fail before the server starts); load it in the
    background once the server runs."""
    from lmfast.inference import load_engine
    from lmfast.registry import resolve_model
    from lmfast.serving.app import create_app

    reference = model or DEFAULT_MODEL
    resolved = resolve_model(reference)
    aliases = {reference, resolved.reference, str(resolved.path)}
    if resolved.name == DEFAULT_MODEL:
        aliases.add("default")

    def load():  # type: ignore[no-untyped-def]
        return load_engine(
            resolved,
            backend=config.backend,
            n_ctx=config.context_length,
            parallel=config.max_concurrency,
            queue_size=config.queue_size,
        )

    return create_app(config, model_id=resolved.name, load=load, aliases=aliases)


def run_server(model: str | None, config: ServeConfig) -> None:
    import uvicorn

    app = build_app(model, config)
    uvicorn.run(
        app, host=config.host, port=config.port, log_level="info", timeout_graceful_shutdown=5
    )
