"""`lmfast serve`: an OpenAI-compatible HTTP server over any LMFast engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lmfast.config import DEFAULT_MODEL, ServeConfig
from lmfast.errors import ConfigError, LMFastError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lmfast.registry import ResolvedModel


def build_app(
    model: str | None,
    config: ServeConfig,
    on_load_error: Callable[[str], None] | None = None,
) -> FastAPI:
    """Resolve `model` now (bad references fail before the server starts); load it in the
    background once the server runs."""
    from lmfast.inference import check_backend, load_engine
    from lmfast.registry import resolve_model
    from lmfast.serving.adapters import prepare_adapters
    from lmfast.serving.app import create_app

    reference = model or DEFAULT_MODEL
    resolved = resolve_model(reference)
    if config.backend != "auto":
        check_backend(resolved, config.backend)
    aliases = {reference, resolved.reference, str(resolved.path)}
    if resolved.name == DEFAULT_MODEL:
        aliases.add("default")
    if config.adapters and config.backend not in ("auto", "llamacpp"):
        raise ConfigError([("serve.adapters", "adapters are applied by llama.cpp; "
                            f"backend={config.backend!r} cannot serve them")])  # fmt: skip
    lora = prepare_adapters(config.adapters, resolved)
    draft = _draft_file(config, resolved)
    if clash := set(lora) & aliases:
        name = sorted(clash)[0]
        raise ConfigError([(f"serve.adapters.{name}", "that is a name of the base model")])

    def load():  # type: ignore[no-untyped-def]
        return load_engine(
            resolved,
            backend=config.backend,
            n_ctx=config.context_length,
            parallel=config.max_concurrency,
            queue_size=config.queue_size,
            adapters=lora,
            draft=draft,
            draft_max=config.draft_max,
            draft_min=config.draft_min,
            kv={
                "kv_unified": config.kv_unified,
                "kv_tokens": config.kv_cache_tokens,
                "cache_ram_mb": config.cache_ram_mb,
            },
        )

    def prepare(name: str, reference: str) -> str:
        if name in aliases:
            raise ConfigError([(f"serve.adapters.{name}", "that is a name of the base model")])
        return prepare_adapters({name: reference}, resolved)[name]

    return create_app(
        config, model_id=resolved.name, load=load, aliases=aliases, on_load_error=on_load_error,
        adapters=config.adapters, prepare_adapter=prepare,
    )  # fmt: skip


def _draft_file(config: ServeConfig, served: ResolvedModel) -> str | None:
    """The draft's GGUF file; the engine checks its vocabulary when it loads."""
    from lmfast.errors import ModelNotFoundError
    from lmfast.registry import resolve_model

    if config.draft is None:
        return None
    if served.format != "gguf" or config.backend not in ("auto", "llamacpp"):
        raise ConfigError([("serve.draft", "speculative decoding runs in llama.cpp: serve a "
                            f"GGUF model ({served.name} is {served.format}, backend "
                            f"{config.backend!r})")])  # fmt: skip
    try:
        draft = resolve_model(config.draft)
    except ModelNotFoundError as e:
        raise ConfigError([("serve.draft", str(e))]) from None
    if draft.format != "gguf":
        raise ConfigError([("serve.draft", f"{config.draft!r} is a {draft.format} model; the "
                            f"draft must be a GGUF file (lmfast export {draft.reference} "
                            "--format gguf)")])  # fmt: skip
    return str(draft.path)


def run_server(model: str | None, config: ServeConfig) -> None:
    """Serve until stopped. A model that fails to load, or an engine that crashed with no
    safer settings left to restart with, stops the server with an error (exit status 2 from
    the CLI) instead of leaving it up answering 503. A crash it can restart from is logged,
    fails the requests in flight (HTTP 500 with the reason) and serving goes on."""
    import uvicorn

    failure: list[str] = []
    server: uvicorn.Server | None = None

    def stop(reason: str) -> None:
        failure.append(reason)
        if server is not None:
            server.should_exit = True

    app = build_app(model, config, on_load_error=stop)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=config.host, port=config.port, log_level="info", timeout_graceful_shutdown=5
        )
    )
    server.run()
    if failure:
        raise LMFastError(f"the server stopped: {failure[0]}")
