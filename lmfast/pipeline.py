"""Generation as a pipeline: before-hooks -> prompt rendering -> engine -> after-hooks.

Everything that generates text (the HTTP server, `lmfast chat`, `lmfast generate`, MCP and
agents) goes through `Pipeline`, so guardrails and tracing wrap all of them by adding a hook,
without touching any engine.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from lmfast.errors import GenerationError
from lmfast.inference.base import (
    ChatMessage,
    Delta,
    Engine,
    EngineRequest,
    Finished,
    GenerationStream,
    RequestFieldError,
    SamplingParams,
    TokenLogprob,
    ToolCall,
    ToolSpec,
    UnsupportedFeatureError,
)
from lmfast.inference.tools import ToolCallStreamParser, ToolDelta, parse_tool_calls
from lmfast.observability.tracing import GenerationTrace

ToolChoice = Literal["auto", "none", "required"] | str  # or the name of one function


class ResponseFormat(BaseModel):
    """OpenAI's response_format: text, json_object, or json_schema (a schema to satisfy)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = Field(
        None, description="For type=json_schema: the JSON schema the reply must validate against."
    )


@dataclass
class GenerationContext:
    """What hooks see and may change."""

    messages: list[ChatMessage]
    params: SamplingParams
    tools: list[ToolSpec] | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    metadata: dict[str, Any] = field(default_factory=dict)
    trace: GenerationTrace | None = None


class ChatResult(BaseModel):
    text: str | None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    logprobs: list[TokenLogprob] | None = None


@dataclass
class ChatChunk:
    """A streamed piece: content text and/or tool-call deltas."""

    content: str = ""
    tool_deltas: list[ToolDelta] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


class Hook(Protocol):
    """Runs around every generation. Raise to refuse; mutate the context or result to edit.
    A hook may also offer `stream_filter(ctx)` (an object with feed(text) -> text and
    flush() -> text) to edit streamed output before it reaches the client, and
    `scrub(text)` to clean text before tracing exports it."""

    name: str

    def before(self, ctx: GenerationContext) -> None: ...

    def after(self, ctx: GenerationContext, result: ChatResult) -> None: ...


class StreamFilter(Protocol):
    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


class Pipeline:
    """An engine plus the hooks wrapped around it, traced as one span tree."""

    def __init__(
        self, engine: Engine, hooks: list[Hook] | None = None, model: str | None = None
    ) -> None:
        self.engine = engine
        self.hooks = list(hooks or [])
        self.model = model or getattr(engine, "model_id", None) or engine.name

    # -- hooks and tracing -----------------------------------------------------------------
    def _start(self, ctx: GenerationContext, operation: str) -> None:
        """Trace the generation and run the before-hooks, each in its own span."""
        scrubbers = [h.scrub for h in self.hooks if hasattr(h, "scrub")]
        scrub = scrubbers[0] if scrubbers else None
        ctx.trace = GenerationTrace(operation, self.model, ctx.params, scrub)
        try:
            for hook in self.hooks:
                with ctx.trace.step(f"{getattr(hook, 'name', 'hook')}.input"):
                    hook.before(ctx)
        except Exception as e:
            ctx.trace.failed(e)
            raise
        ctx.trace.input(ctx.messages)

    def output_filter(self, ctx: GenerationContext) -> StreamFilter | None:
        """The hooks' stream filters chained, or None when no hook edits streamed text."""
        filters = [h.stream_filter(ctx) for h in self.hooks if hasattr(h, "stream_filter")]
        if not filters:
            return None
        return filters[0] if len(filters) == 1 else _Chain(filters)

    # -- request building ------------------------------------------------------------------
    def _request(
        self,
        ctx: GenerationContext,
        tool_choice: ToolChoice,
        response_format: ResponseFormat | None,
        parallel_tool_calls: bool,
        grammar: str | None = None,
    ) -> tuple[EngineRequest, bool]:
        self._start(ctx, "chat")
        assert ctx.trace is not None
        try:
            with ctx.trace.step("render"):
                return self._render(ctx, tool_choice, response_format, parallel_tool_calls, grammar)
        except Exception as e:
            ctx.trace.failed(e)
            raise

    def _render(
        self,
        ctx: GenerationContext,
        tool_choice: ToolChoice,
        response_format: ResponseFormat | None,
        parallel_tool_calls: bool,
        grammar: str | None,
    ) -> tuple[EngineRequest, bool]:
        tools = ctx.tools if ctx.tools and tool_choice != "none" else None
        trigger = None
        if grammar is not None:  # the caller's own format (agents): it parses the output
            rendered = self.engine.render_chat(ctx.messages, tools)
            self._check_grammar()
            return EngineRequest(prompt=rendered, params=ctx.params, grammar=grammar), False
        if tools:
            if tool_choice not in ("auto", "required"):
                chosen = [t for t in tools if t.name == tool_choice]
                if not chosen:
                    names = ", ".join(t.name for t in tools)
                    raise RequestFieldError(
                        "tool_choice", f"names {tool_choice!r}, not one of: {names}"
                    )
                grammar = tools_grammar(tools, chosen, parallel=False)
            else:
                grammar = tools_grammar(tools, tools, parallel=parallel_tool_calls)
                trigger = "<tool_call>" if tool_choice == "auto" else None
        elif response_format is not None and response_format.type != "text":
            grammar = json_grammar(response_format)
        if grammar is not None:
            self._check_grammar()
        prompt = self.engine.render_chat(ctx.messages, tools)
        req = EngineRequest(
            prompt=prompt, params=ctx.params, grammar=grammar, grammar_trigger=trigger
        )
        return req, tools is not None

    def _check_grammar(self) -> None:
        if not getattr(self.engine, "supports_grammar", True):
            raise UnsupportedFeatureError(
                f"the {self.engine.name} engine cannot constrain output (tools / response_format /"
                " grammar); serve a GGUF model with llama.cpp for these"
            )

    def submit(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        *,
        tools: list[ToolSpec] | None = None,
        tool_choice: ToolChoice = "auto",
        response_format: ResponseFormat | None = None,
        parallel_tool_calls: bool = False,
        grammar: str | None = None,
    ) -> tuple[GenerationContext, GenerationStream, bool]:
        """Start a generation (call inside the event loop for async consumption).

        Several calls in one turn only with `parallel_tool_calls` (off by default, as in
        llama.cpp's server: small models otherwise repeat the same call). `grammar` (GBNF)
        constrains the whole reply to the caller's own format; `tools` are then only shown
        to the model and the caller parses the reply (agents do)."""
        ctx = GenerationContext(messages=list(messages), params=params, tools=tools)
        request, tools_on = self._request(
            ctx, tool_choice, response_format, parallel_tool_calls, grammar
        )
        return ctx, self._engine_submit(ctx, request), tools_on

    def _engine_submit(self, ctx: GenerationContext, request: EngineRequest) -> GenerationStream:
        assert ctx.trace is not None
        try:
            stream = self.engine.submit(request)
        except Exception as e:
            ctx.trace.failed(e)
            raise
        chars = len(request.prompt) if isinstance(request.prompt, str) else 0
        ctx.trace.engine_started(self.engine.name, chars)
        return stream

    def finish(self, ctx: GenerationContext, result: ChatResult) -> ChatResult:
        """After-hooks (each in its span), then the trace is completed with usage."""
        trace = ctx.trace
        try:
            for hook in self.hooks:
                if trace is None:
                    hook.after(ctx, result)
                    continue
                with trace.step(f"{getattr(hook, 'name', 'hook')}.output"):
                    hook.after(ctx, result)
        except Exception as e:
            if trace is not None:
                trace.failed(e)
            raise
        if trace is not None:
            trace.finished(result, ctx.metadata)
        return result

    def finish_text(self, ctx: GenerationContext, finished: Finished, text: str) -> str:
        """finish() for a raw completion (/v1/completions): the text after the hooks."""
        result = ChatResult(
            text=text,
            finish_reason=finished.finish_reason,
            prompt_tokens=finished.prompt_tokens,
            completion_tokens=finished.completion_tokens,
        )
        return self.finish(ctx, result).text or ""

    def abandon(self, ctx: GenerationContext, exc: BaseException | None = None) -> None:
        """The consumer stopped early (client gone, error): close the trace."""
        if ctx.trace is not None:
            if isinstance(exc, Exception):
                ctx.trace.failed(exc)
            else:
                ctx.trace.close()

    # -- consumption -----------------------------------------------------------------------
    def chat(self, messages: list[ChatMessage], params: SamplingParams, **kw: Any) -> ChatResult:
        """Blocking: generate to the end (CLI, MCP, agents)."""
        return self.collect(*self.submit(messages, params, **kw))

    def collect(
        self,
        ctx: GenerationContext,
        stream: GenerationStream,
        tools_on: bool,
        until: Callable[[str], bool] | None = None,
    ) -> ChatResult:
        """Blocking: consume a submitted stream to the end, after-hooks applied. `until`
        sees the text so far after each piece; when it returns True generation is cancelled
        (finish_reason 'cancelled') and what was generated is kept."""
        acc = _Accumulator(tools_on)
        text = ""
        try:
            for event in stream:
                acc.add(event)
                if until is not None and isinstance(event, Delta) and not stream.cancelled:
                    text += event.text
                    if until(text):
                        stream.cancel()  # the engine stops at its next token and says so
        except BaseException as e:
            self.abandon(ctx, e)
            raise
        return self.finish(ctx, acc.result())

    def stream(
        self, messages: list[ChatMessage], params: SamplingParams, **kw: Any
    ) -> Generator[str, None, ChatResult]:
        """Blocking stream of text pieces (terminal chat), through the hooks' stream filters
        (a guard redacts before anything is shown). After-hooks run at the end; the
        generator returns the finished result (token counts, finish reason)."""
        ctx, stream, tools_on = self.submit(messages, params, **kw)
        acc = _Accumulator(tools_on)
        out = self.output_filter(ctx)
        try:
            for event in stream:
                acc.add(event)
                if isinstance(event, Delta) and event.text:
                    piece = out.feed(event.text) if out is not None else event.text
                    if piece:
                        yield piece
            if out is not None and (rest := out.flush()):
                yield rest
        except BaseException as e:
            self.abandon(ctx, e)
            raise
        finally:
            stream.cancel()
        return self.finish(ctx, acc.result())

    def submit_text(self, request: EngineRequest) -> tuple[GenerationContext, GenerationStream]:
        """Raw-prompt generation (/v1/completions): hooks see the prompt as one user turn,
        and a hook that edits it (a guard redacting) edits the prompt the engine gets."""
        text = request.prompt if isinstance(request.prompt, str) else ""
        ctx = GenerationContext(
            messages=[ChatMessage(role="user", content=text)], params=request.params
        )
        self._start(ctx, "text_completion")
        edited = ctx.messages[0].content
        if isinstance(request.prompt, str) and isinstance(edited, str) and edited != text:
            request = dataclasses.replace(request, prompt=edited)
        return ctx, self._engine_submit(ctx, request)

    async def events(
        self, ctx: GenerationContext, stream: GenerationStream, tools_on: bool
    ) -> AsyncIterator[ChatChunk | ChatResult]:
        """Consume a submitted stream: ChatChunks, then the ChatResult (after-hooks applied).
        Content goes through the hooks' stream filters. Leaving early (client gone) cancels
        the generation."""
        parser = ToolCallStreamParser() if tools_on else None
        out = self.output_filter(ctx)
        acc = _Accumulator(tools_on)
        try:
            async for event in stream:
                acc.add(event)
                if isinstance(event, Delta):
                    if parser is None:
                        content = out.feed(event.text) if out is not None else event.text
                        if content or event.logprobs:
                            yield ChatChunk(content=content, logprobs=event.logprobs)
                        continue
                    content, deltas = parser.feed(event.text)
                    if parser.calls and not content.strip():
                        content = ""
                    if out is not None:
                        # A guard checks tool-call arguments once complete: they are sent
                        # whole after the after-hooks, never as unchecked fragments.
                        content, deltas = out.feed(content) if content else "", []
                    if content or deltas or event.logprobs:
                        yield ChatChunk(
                            content=content, tool_deltas=deltas, logprobs=event.logprobs
                        )
                elif parser is not None and not parser.calls and (rest := parser.finish()):
                    yield ChatChunk(content=out.feed(rest) if out is not None else rest)
            if out is not None and (rest := out.flush()):
                yield ChatChunk(content=rest)
        except BaseException as e:
            self.abandon(ctx, e)
            raise
        finally:
            stream.cancel()  # no-op when finished; stops generation when the client left
        result = acc.result()
        if parser is not None and parser.calls:
            result.tool_calls = parser.calls  # keep the ids the client already saw
        result = self.finish(ctx, result)
        if out is not None and result.tool_calls:
            yield ChatChunk(
                tool_deltas=[
                    ToolDelta(i, c.id, c.function.name, c.function.arguments)
                    for i, c in enumerate(result.tool_calls)
                ]
            )
        yield result


class _Chain:
    """Several stream filters, each feeding the next."""

    def __init__(self, filters: list[StreamFilter]) -> None:
        self.filters = filters

    def feed(self, text: str) -> str:
        for f in self.filters:
            text = f.feed(text)
        return text

    def flush(self) -> str:
        text = ""
        for f in self.filters:
            text = f.feed(text) + f.flush() if text else f.flush()
        return text


class _Accumulator:
    def __init__(self, tools_on: bool) -> None:
        self.tools_on = tools_on
        self.text: list[str] = []
        self.logprobs: list[TokenLogprob] = []
        self.finished: Finished | None = None

    def add(self, event: Delta | Finished) -> None:
        if isinstance(event, Delta):
            self.text.append(event.text)
            self.logprobs.extend(event.logprobs)
        else:
            self.finished = event

    def result(self) -> ChatResult:
        f = self.finished or Finished("cancelled", 0, 0)
        if f.finish_reason == "error":
            raise GenerationError(f.error or "generation failed")
        text: str | None = "".join(self.text)
        calls: list[ToolCall] = []
        reason: str = f.finish_reason
        if self.tools_on and text:
            text, calls = parse_tool_calls(text)
            if calls:
                reason = "tool_calls"
        return ChatResult(
            text=text,
            tool_calls=calls,
            finish_reason=reason,
            prompt_tokens=f.prompt_tokens,
            completion_tokens=f.completion_tokens,
            cached_tokens=f.cached_tokens,
            logprobs=self.logprobs or None,
        )


_CONVERTER_ERRORS = (AssertionError, KeyError, ValueError, TypeError, IndexError, RecursionError)


def _check_schema(schema: dict[str, Any], param: str) -> None:
    """Against the JSON Schema meta-schema (cheap; llama.cpp's converter does not check)."""
    from jsonschema import SchemaError, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        at = f" at {where}" if where else ""
        raise RequestFieldError(param, f"invalid JSON schema{at}: {e.message}") from None


def schema_grammar(schema: dict[str, Any], param: str) -> str:
    """GBNF for a JSON schema; an invalid or unsupported schema names `param`. llama.cpp's
    converter signals what it cannot handle with assertions and lookups."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    _check_schema(schema, param)
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except _CONVERTER_ERRORS as e:
        detail = str(e) or type(e).__name__
        raise RequestFieldError(
            param, f"unsupported JSON schema ({detail}); $ref must point inside the schema"
        ) from None


def tools_grammar(tools: list[ToolSpec], chosen: list[ToolSpec], parallel: bool) -> str:
    """The tool-call grammar for `chosen`; a bad parameter schema is named by its index in
    `tools`. Schemas are converted once; only a failure converts them one by one to say
    which."""
    from lmfast.inference.tools import tool_call_grammar

    def param(i: int) -> str:
        return f"tools[{i}].function.parameters"

    def schema(tool: ToolSpec) -> dict[str, Any]:
        return {"type": "object", **(tool.parameters or {})}

    for i, tool in enumerate(tools):
        _check_schema(schema(tool), param(i))
    try:
        return tool_call_grammar(chosen, parallel=parallel)
    except _CONVERTER_ERRORS as e:
        for i, tool in enumerate(tools):
            if tool in chosen:
                schema_grammar(schema(tool), param(i))
        detail = str(e) or type(e).__name__
        raise RequestFieldError("tools", f"cannot build a call grammar ({detail})") from None


def json_grammar(fmt: ResponseFormat) -> str:
    """GBNF for response_format json_object (any object) or json_schema (that schema)."""
    if fmt.type == "json_schema":
        if not fmt.json_schema:
            raise RequestFieldError(
                "response_format.json_schema", "json_schema.schema is required for json_schema"
            )
        return schema_grammar(fmt.json_schema, "response_format.json_schema")
    return schema_grammar({"type": "object"}, "response_format")
