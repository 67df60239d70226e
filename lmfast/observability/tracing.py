"""Tracing: every generation as an OpenTelemetry span tree with the `gen_ai.*` attributes.

Configured by the standard environment, nothing LMFast-specific to learn:
- `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`): any OTLP/HTTP backend (Phoenix,
  Jaeger, Tempo, an OpenTelemetry Collector, ...); `OTEL_SERVICE_NAME` names the service.
- `LANGFUSE_PUBLIC_KEY` + `LANGFUSE_SECRET_KEY` (+ `LANGFUSE_BASE_URL`): Langfuse's v5 SDK adds
  its span processor to the same provider, so Langfuse gets the same tree.
- An application that already registered its own OpenTelemetry TracerProvider gets the spans
  there.
With none of these, tracing is off and costs one attribute check per generation.

`LMFAST_TRACE_CONTENT=0` leaves message text out of spans; otherwise the text is exported
after the guard's scrubber replaced every PII entity it knows. `LMFAST_PRICE_INPUT` /
`LMFAST_PRICE_OUTPUT` (per million tokens, default 0: a self-hosted model) give the cost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

log = logging.getLogger("lmfast.tracing")

SCOPE = "lmfast"


@dataclass
class Tracing:
    tracer: trace.Tracer
    enabled: bool
    capture_content: bool = True
    price_input: float = 0.0  # per million tokens
    price_output: float = 0.0
    provider: Any = None
    langfuse: Any = None

    def flush(self) -> None:
        if self.provider is not None and hasattr(self.provider, "force_flush"):
            self.provider.force_flush()


_LOCK = threading.Lock()
_TRACING: Tracing | None = None


def _env_float(name: str) -> float:
    raw = os.environ.get(name, "0") or "0"
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number (a price per million tokens)") from None


def tracing() -> Tracing:
    """The process's tracing, set up once from the environment."""
    global _TRACING
    with _LOCK:
        if _TRACING is None:
            _TRACING = _configure()
        return _TRACING


def reset_tracing() -> None:
    """Forget the configuration (tests change the environment between servers)."""
    global _TRACING
    with _LOCK:
        if _TRACING is not None:
            _TRACING.flush()
            if _TRACING.provider is not None and _TRACING.provider is not _global_sdk_provider():
                _TRACING.provider.shutdown()
        _TRACING = None


def _global_sdk_provider() -> Any:
    provider = trace.get_tracer_provider()
    return provider if hasattr(provider, "add_span_processor") else None


def _configure() -> Tracing:
    env = os.environ
    prices = {
        "price_input": _env_float("LMFAST_PRICE_INPUT"),
        "price_output": _env_float("LMFAST_PRICE_OUTPUT"),
    }
    content = env.get("LMFAST_TRACE_CONTENT", "1").lower() not in ("0", "false", "no")
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return Tracing(trace.NoOpTracer(), False, **prices)
    otlp = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    langfuse_keys = env.get("LANGFUSE_PUBLIC_KEY") and env.get("LANGFUSE_SECRET_KEY")
    provider = _global_sdk_provider()
    if provider is None and not (otlp or langfuse_keys):
        return Tracing(trace.NoOpTracer(), False, **prices)
    if provider is None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "lmfast")})
        provider = TracerProvider(resource=resource)
        if otlp:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    langfuse = None
    if langfuse_keys:
        from langfuse import Langfuse

        # Langfuse's default filter keeps gen_ai spans only; LMFast's guard and render spans
        # belong to the same tree, so everything from LMFast's scope is exported.
        langfuse = Langfuse(
            tracer_provider=provider,
            should_export_span=lambda span: (
                span.instrumentation_scope is not None and span.instrumentation_scope.name == SCOPE
            ),
        )
    log.info("tracing on (otlp=%s, langfuse=%s)", bool(otlp), bool(langfuse))
    return Tracing(
        provider.get_tracer(SCOPE), True, content, provider=provider, langfuse=langfuse, **prices
    )


class GenerationTrace:
    """The spans of one generation: a root `chat MODEL` span, a child per guard check, the
    prompt rendering and the engine call (from submission to the last token)."""

    def __init__(
        self,
        operation: str,
        model: str,
        params: Any,
        scrub: Callable[[str], str] | None,
    ) -> None:
        self.t = tracing()
        self.on = self.t.enabled
        self.scrub = scrub
        self.model = model
        self.root: Any = None
        self.engine_span: Any = None
        self.closed = False
        if not self.on:
            return
        self.root = self.t.tracer.start_span(
            f"{operation} {model}",
            kind=trace.SpanKind.CLIENT,
            attributes=_request_attrs(operation, model, params),
        )
        self.parent = trace.set_span_in_context(self.root)

    @contextlib.contextmanager
    def step(self, name: str, **attrs: Any) -> Iterator[Any]:
        """A child span around one step; an exception marks it (and the root) as failed."""
        if not self.on:
            yield None
            return
        span = self.t.tracer.start_span(name, context=self.parent, attributes=_clean(attrs))
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield span
        except Exception as e:
            _fail(span, e)
            raise
        finally:
            otel_context.detach(token)
            span.end()

    def engine_started(self, engine: str, prompt_chars: int) -> None:
        if not self.on:
            return
        attrs = {
            "gen_ai.operation.name": "generate_content",
            "gen_ai.request.model": self.model,
            "lmfast.engine": engine,
            "lmfast.prompt.chars": prompt_chars,
            "langfuse.observation.type": "generation",
        }
        self.engine_span = self.t.tracer.start_span(
            f"generate {engine}", context=self.parent, attributes=attrs
        )

    def input(self, messages: list[Any]) -> None:
        if self.on and self.t.capture_content:
            shown = [{"role": m.role, "content": self._text(m.content)} for m in messages]
            self.root.set_attribute("gen_ai.input.messages", json.dumps(shown))

    def finished(self, result: Any, metadata: dict[str, Any]) -> None:
        if not self.on or self.closed:
            return
        cost = (
            result.prompt_tokens * self.t.price_input
            + result.completion_tokens * self.t.price_output
        ) / 1e6
        usage = {
            "gen_ai.response.model": self.model,
            "gen_ai.response.finish_reasons": [result.finish_reason],
            "gen_ai.usage.input_tokens": result.prompt_tokens,
            "gen_ai.usage.output_tokens": result.completion_tokens,
            "gen_ai.usage.cost": cost,
        }
        for span in (self.engine_span, self.root):
            if span is not None:
                span.set_attributes(usage)
        if self.t.capture_content:
            reply = {"role": "assistant", "content": self._text(result.text or "")}
            if result.tool_calls:
                reply["tool_calls"] = [c.function.name for c in result.tool_calls]
            self.root.set_attribute("gen_ai.output.messages", json.dumps([reply]))
        if metadata.get("guard"):
            self.root.set_attribute("lmfast.guard.decisions", json.dumps(metadata["guard"]))
        self.close()

    def failed(self, exc: BaseException) -> None:
        if not self.on or self.closed:
            return
        for span in (self.engine_span, self.root):
            if span is not None:
                _fail(span, exc)
        self.close()

    def close(self) -> None:
        """End the spans still open (a stream the client left ends here)."""
        if not self.on or self.closed:
            return
        self.closed = True
        if self.engine_span is not None:
            self.engine_span.end()
        self.root.end()

    def _text(self, content: Any) -> str:
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        return self.scrub(text) if self.scrub is not None else text


def _request_attrs(operation: str, model: str, params: Any) -> dict[str, Any]:
    attrs = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "lmfast",
        "gen_ai.system": "lmfast",
        "gen_ai.request.model": model,
    }
    if params is not None:
        attrs.update(
            {
                "gen_ai.request.max_tokens": params.max_tokens,
                "gen_ai.request.temperature": params.temperature,
                "gen_ai.request.top_p": params.top_p,
                "gen_ai.request.seed": params.seed,
                "gen_ai.request.stop_sequences": list(params.stop or []),
            }
        )
    return _clean(attrs)


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None and v != []}


def _fail(span: Any, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
    code = getattr(exc, "code", None)
    span.set_attribute("error.type", code or type(exc).__name__)


@contextlib.contextmanager
def span(name: str, **attrs: Any) -> Iterator[Any]:
    """A span under the current one (agent runs, steps and tool calls); nothing when off."""
    t = tracing()
    if not t.enabled:
        yield None
        return
    with t.tracer.start_as_current_span(
        name, attributes=_clean(attrs), record_exception=False, set_status_on_exception=False
    ) as s:
        try:
            yield s
        except Exception as e:
            _fail(s, e)
            raise
