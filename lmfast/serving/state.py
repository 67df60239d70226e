"""What every request handler shares: the server's state (engine, pipeline, metrics) and
the OpenAI-shaped error it answers with."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lmfast.config import ServeConfig
from lmfast.inference.base import Engine
from lmfast.pipeline import Pipeline


class APIError(Exception):
    """An error answered in OpenAI's JSON shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type_,
            param,
            code,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


class Metrics:
    """Prometheus metrics, one registry per app (tests create many apps)."""

    def __init__(self, state: ServerState) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "lmfast_requests", "HTTP requests", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "lmfast_request_duration_seconds", "Request latency", ["endpoint"], registry=r
        )
        self.ttft = Histogram(
            "lmfast_time_to_first_token_seconds", "Time to first token", registry=r
        )
        self.prompt_tokens = Counter("lmfast_prompt_tokens", "Prompt tokens processed", registry=r)
        self.completion_tokens = Counter("lmfast_completion_tokens", "Tokens generated", registry=r)
        self.cancelled = Counter(
            "lmfast_requests_cancelled",
            "Generations stopped because the client went away",
            registry=r,
        )
        self.rejected = Counter(
            "lmfast_requests_rejected", "Requests refused: queue full", registry=r
        )
        queue = Gauge("lmfast_queue_depth", "Requests waiting for a slot", registry=r)
        queue.set_function(lambda: state.engine.stats()["waiting"] if state.engine else 0)
        self.guard = Counter(
            "lmfast_guard_decisions",
            "Guard decisions by stage (input/output), check (pii/injection) and action",
            ["stage", "check", "action"],
            registry=r,
        )
        running = Gauge("lmfast_requests_running", "Requests being generated", registry=r)
        running.set_function(lambda: state.engine.stats()["running"] if state.engine else 0)
        threads = Gauge(
            "lmfast_engine_threads",
            "CPU threads the engine decodes with now (llama.cpp: the cores other processes "
            "leave free, unless a count was given)",
            registry=r,
        )
        threads.set_function(lambda: state.engine.stats().get("threads", 0) if state.engine else 0)
        for key, help_ in (
            ("prompt_cache_bytes", "Bytes of KV states kept in RAM for returning prompts"),
            ("prompt_cache_hits", "Prompts whose prefix was loaded from the RAM cache"),
        ):
            gauge = Gauge(f"lmfast_{key}", help_, registry=r)
            gauge.set_function(lambda k=key: state.engine.stats().get(k, 0) if state.engine else 0)
        if state.config.draft:
            self._speculative(state)

    def _speculative(self, state: ServerState) -> None:
        def stat(key: str) -> float:
            return state.engine.stats().get(key, 0) if state.engine else 0

        def rate() -> float:
            drafted = stat("draft_tokens")
            return stat("draft_accepted") / drafted if drafted else 0.0

        r = self.registry
        drafted = Gauge(
            "lmfast_draft_tokens", "Tokens the draft model proposed (speculative decoding)",
            registry=r,
        )  # fmt: skip
        drafted.set_function(lambda: stat("draft_tokens"))
        accepted = Gauge(
            "lmfast_draft_accepted_tokens", "Drafted tokens the served model kept", registry=r
        )
        accepted.set_function(lambda: stat("draft_accepted"))
        acceptance = Gauge(
            "lmfast_draft_acceptance_rate", "Accepted / drafted tokens since the start", registry=r
        )
        acceptance.set_function(rate)


@dataclass
class ServerState:
    model_id: str
    config: ServeConfig
    aliases: set[str] = field(default_factory=set)
    # Adapters served over the base, name -> what was given (listed in /v1/models).
    adapters: dict[str, str] = field(default_factory=dict)
    engine: Engine | None = None
    pipeline: Pipeline | None = None
    adapter_pipelines: dict[str, Pipeline] = field(default_factory=dict)
    load_error: str | None = None
    closing: bool = False
    # Called with the reason when the engine cannot run any more (`lmfast serve` exits).
    on_fatal: Callable[[str], None] | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    metrics: Metrics = field(init=False)
    hooks: Any = None  # the guard hooks every pipeline of this server runs
    # name, reference -> GGUF LoRA file, checked against the base (adapters loaded at run time)
    prepare_adapter: Callable[[str, str], str] | None = None

    def __post_init__(self) -> None:
        self.metrics = Metrics(self)

    def require_pipeline(self, requested_model: str) -> Pipeline:
        adapter = requested_model in self.adapters
        if not adapter and requested_model not in self.aliases | {self.model_id}:
            served = ", ".join(repr(m) for m in [self.model_id, *self.adapters])
            raise APIError(
                404,
                f"The model '{requested_model}' does not exist; this server serves {served}",
                param="model",
                code="model_not_found",
            )
        if self.pipeline is None:
            if self.load_error:
                raise APIError(
                    503,
                    f"the model failed to load: {self.load_error}",
                    type_="service_unavailable",
                    code="model_load_failed",
                )
            raise APIError(
                503,
                "the model is still loading; retry shortly",
                type_="service_unavailable",
                code="model_loading",
            )
        return self.adapter_pipelines[requested_model] if adapter else self.pipeline
