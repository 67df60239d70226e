"""The OpenAI-compatible HTTP server: app factory, model loading, auth, errors, metrics."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmfast.config import ServeConfig
from lmfast.inference.base import Engine
from lmfast.pipeline import Pipeline
from lmfast.serving.adapters import AdapterEngine, register_adapter_routes
from lmfast.serving.routes import register_routes
from lmfast.serving.state import APIError, ServerState
from lmfast.serving.tokenizer_routes import register_tokenizer_routes

log = logging.getLogger("lmfast.serve")


# Routes that need the API key when one is set (the tokenizer routes sit at the root, where
# vLLM and lm-evaluation-harness's remote tokenizer expect them).
PROTECTED = ("/v1/", "/tokenize", "/detokenize", "/tokenizer_info")


class _AuthAndMetrics:
    """Pure ASGI middleware (BaseHTTPMiddleware would hide client disconnects): checks the
    bearer token on /v1/ routes and records request counts and latency."""

    def __init__(self, app: Any, state: ServerState, api_key: str | None) -> None:
        self.app, self.state, self.api_key = app, state, api_key

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.state.metrics
        path, start = scope["path"], time.perf_counter()
        if self.api_key and path.startswith(PROTECTED) and scope["method"] != "OPTIONS":
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            token = header[7:] if header.lower().startswith("bearer ") else ""
            if not secrets.compare_digest(token.encode(), self.api_key.encode()):
                msg = "missing API key" if not token else "incorrect API key"
                error = APIError(
                    401,
                    f"{msg}: send 'Authorization: Bearer <key>'",
                    type_="authentication_error",
                    code="invalid_api_key",
                )
                await error.response()(scope, receive, send)
                metrics.requests.labels(path, "401").inc()
                return
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "other")
            metrics.requests.labels(endpoint, str(status)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - start)


def create_app(
    config: ServeConfig,
    *,
    model_id: str,
    load: Callable[[], Engine],
    aliases: set[str] | None = None,
    on_load_error: Callable[[str], None] | None = None,
    adapters: dict[str, str] | None = None,
    prepare_adapter: Callable[[str, str], str] | None = None,
) -> FastAPI:
    """An app serving the engine `load()` returns; loading runs in the background so the
    server answers /health (503 'loading') at once. A failed load is logged, reported on
    /health, and passed to `on_load_error` (`lmfast serve` stops with an error there)."""
    from lmfast.guardrails.policy import load_policy

    load_policy(config.guard)  # a typo or a bad file fails here, before the server starts
    state = ServerState(
        model_id=model_id, config=config, aliases=aliases or set(), on_fatal=on_load_error,
        adapters=dict(adapters or {}), prepare_adapter=prepare_adapter,
    )  # fmt: skip

    def _load() -> None:
        from lmfast.guardrails.guard import Decision, guard_hooks

        def count(d: Decision) -> None:
            state.metrics.guard.labels(d.stage, d.check, d.action).inc()

        try:
            hooks = guard_hooks(config.guard, on_decision=count)
            engine = load()
        except Exception as e:
            state.load_error = f"{type(e).__name__}: {e}"
            log.error("model %s failed to load: %s", model_id, state.load_error)
            if on_load_error is not None:
                on_load_error(f"the model failed to load: {state.load_error}")
            return
        if state.closing:  # the server stopped while we loaded
            engine.close()
            return
        state.adapter_pipelines = {
            name: Pipeline(AdapterEngine(engine, name), hooks, model=name)  # type: ignore[arg-type]
            for name in state.adapters
        }
        state.hooks = hooks
        state.engine, state.pipeline = engine, Pipeline(engine, hooks, model=model_id)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = threading.Thread(target=_load, name="lmfast-load", daemon=True)
        loader.start()
        yield
        state.closing = True  # a load still running closes its engine when it ends
        if state.engine is not None:
            await asyncio.to_thread(state.engine.close)

    app = FastAPI(title="LMFast", version="1", lifespan=lifespan)
    app.state.lmfast = state
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )

    api_key = config.api_key.get_secret_value() if config.api_key else None

    app.add_middleware(_AuthAndMetrics, state=state, api_key=api_key)

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid":
            # loc is ("body", character offset): a position, not a parameter.
            pos = first.get("loc", (None, None))[-1]
            reason = (first.get("ctx") or {}).get("error", "JSON decode error")
            return APIError(
                400, f"the request body is not valid JSON: {reason} at character {pos}"
            ).response()
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        if "input" in first and first.get("type") not in ("missing", "json_invalid"):
            msg += f" (got {first['input']!r})"[:300]
        message = f"{param}: {msg}" if param else msg
        return APIError(400, message, param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return APIError(exc.status_code, str(exc.detail), type_=type_).response()

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return APIError(
            500, f"internal error: {type(exc).__name__}", type_="server_error"
        ).response()

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.pipeline is not None:
            return JSONResponse({"status": "ok", "model": state.model_id})
        status = "error" if state.load_error else "loading"
        return JSONResponse({"status": status, "detail": state.load_error}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            generate_latest(state.metrics.registry).decode(), media_type="text/plain; version=0.0.4"
        )

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": state.model_id,
                    "object": "model",
                    "created": state.created,
                    "owned_by": "lmfast",
                },
                # vLLM's shape for LoRA models: the base they apply to, and their source.
                *(
                    {
                        "id": name,
                        "object": "model",
                        "created": state.created,
                        "owned_by": "lmfast",
                        "parent": state.model_id,
                        "root": ref,
                    }
                    for name, ref in state.adapters.items()
                ),
            ],
        }

    register_routes(app, state)
    register_adapter_routes(app, state)
    register_tokenizer_routes(app, state)
    return app
