"""/v1/chat/completions and /v1/completions in OpenAI's exact request and response shapes."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from lmfast.errors import EngineCrashedError
from lmfast.guardrails.guard import GuardrailBlocked
from lmfast.inference.base import (
    Delta,
    EngineBusyError,
    EngineRequest,
    Finished,
    GenerationStream,
    PromptTooLongError,
    RequestFieldError,
    TokenLogprob,
    UnsupportedFeatureError,
)
from lmfast.pipeline import ChatChunk, ChatResult
from lmfast.serving.schemas import ChatCompletionRequest, CompletionRequest
from lmfast.serving.state import APIError, ServerState

T = TypeVar("T")


def _blocked(state: ServerState, exc: GuardrailBlocked, param: str) -> APIError:
    """A guard refusal: HTTP 400 whose `code` says which rule (pii_input, pii_output,
    prompt_injection), never a silently edited answer."""
    return APIError(400, str(exc), type_="guardrail_error", param=param, code=exc.code)


# What submitting a request may raise that `_submit_errors` turns into an answer.
SUBMIT_ERRORS = (
    EngineBusyError,
    EngineCrashedError,
    PromptTooLongError,
    UnsupportedFeatureError,
    ValueError,
)


def _submit_errors(state: ServerState, exc: Exception, param: str) -> APIError:
    if isinstance(exc, EngineCrashedError):
        if exc.restartable:  # this request died with the engine; the next one restarts it
            return APIError(500, str(exc), type_="server_error", code="engine_crashed")
        if state.on_fatal is not None:  # no settings left to restart with: stop serving
            state.on_fatal(str(exc))
        return APIError(503, str(exc), type_="server_error", code="engine_crashed")
    if isinstance(exc, GuardrailBlocked):
        return _blocked(state, exc, param)
    if isinstance(exc, EngineBusyError):
        state.metrics.rejected.inc()
        return APIError(
            429, f"server busy: {exc}; retry later", type_="rate_limit_error", code="queue_full"
        )
    if isinstance(exc, PromptTooLongError):
        return APIError(400, str(exc), param=param, code="context_length_exceeded")
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        msg = first["msg"].removeprefix("Value error, ")
        return APIError(400, f"{param}: {loc + ': ' if loc else ''}{msg}", param=param)
    if isinstance(exc, RequestFieldError):
        return APIError(400, str(exc), param=exc.param)
    if isinstance(exc, (UnsupportedFeatureError, ValueError)):
        return APIError(400, str(exc), param=param)
    raise exc


async def _unless_disconnected(request: Request, work: Awaitable[T], stream_cancel: Any) -> T:
    """Await `work`, but cancel the generation if the client hangs up meanwhile."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if await request.is_disconnected():
            stream_cancel()
            task.cancel()
            raise _ClientGone()


class _ClientGone(Exception):
    pass


def _usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _finish_reason(reason: str) -> str:
    return reason if reason in ("stop", "length", "tool_calls") else "stop"


def register_routes(app: FastAPI, state: ServerState) -> None:
    metrics = state.metrics

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        pipeline = state.require_pipeline(body.model)
        try:
            ctx, stream, tools_on = pipeline.submit(
                body.chat_messages(),
                body.params(min(state.config.default_max_tokens, pipeline.engine.context_length)),
                tools=body.tool_specs(),
                tool_choice=body.tool_choice_name(),
                response_format=body.format(),
                parallel_tool_calls=bool(body.parallel_tool_calls),
            )
        except SUBMIT_ERRORS as e:
            raise _submit_errors(state, e, "messages") from None
        cid, created, t0 = (
            f"chatcmpl-{secrets.token_hex(12)}",
            int(time.time()),
            time.perf_counter(),
        )
        events = pipeline.events(ctx, stream, tools_on)

        if not body.stream:

            async def collect() -> ChatResult:
                result = None
                async for item in events:
                    if isinstance(item, ChatResult):
                        result = item
                assert result is not None
                return result

            try:
                result = await _unless_disconnected(request, collect(), stream.cancel)
            except _ClientGone:
                metrics.cancelled.inc()
                return Response(status_code=499)
            except GuardrailBlocked as e:
                raise _blocked(state, e, "messages") from None
            metrics.prompt_tokens.inc(result.prompt_tokens)
            metrics.completion_tokens.inc(result.completion_tokens)
            message: dict[str, Any] = {"role": "assistant", "content": result.text}
            if result.tool_calls:
                message["tool_calls"] = [c.model_dump() for c in result.tool_calls]
            logprobs = (
                {"content": [lp.model_dump() for lp in result.logprobs or []]}
                if body.logprobs
                else None
            )
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": pipeline.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": logprobs,
                            "finish_reason": _finish_reason(result.finish_reason),
                        }
                    ],
                    "usage": _usage(
                        result.prompt_tokens, result.completion_tokens, result.cached_tokens
                    ),
                }
            )

        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> str:
            data: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": pipeline.model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return json.dumps(data, ensure_ascii=False)

        async def sse() -> AsyncIterator[str]:
            first_token = True
            try:
                yield chunk({"role": "assistant", "content": ""})
                async for item in events:
                    if isinstance(item, ChatChunk):
                        if first_token and (item.content or item.tool_deltas):
                            metrics.ttft.observe(time.perf_counter() - t0)
                            first_token = False
                        delta: dict[str, Any] = {}
                        if item.content:
                            delta["content"] = item.content
                        if item.tool_deltas:
                            delta["tool_calls"] = [_tool_delta(d) for d in item.tool_deltas]
                        lp = (
                            {"content": [x.model_dump() for x in item.logprobs]}
                            if body.logprobs and item.logprobs
                            else None
                        )
                        if delta or lp:
                            yield chunk(delta, logprobs=lp)
                        continue
                    metrics.prompt_tokens.inc(item.prompt_tokens)
                    metrics.completion_tokens.inc(item.completion_tokens)
                    yield chunk({}, _finish_reason(item.finish_reason))
                    if include_usage:
                        yield json.dumps(
                            {
                                "id": cid,
                                "object": "chat.completion.chunk",
                                "created": created,
                                "model": pipeline.model,
                                "choices": [],
                                "usage": _usage(
                                    item.prompt_tokens, item.completion_tokens, item.cached_tokens
                                ),
                            }
                        )
                yield "[DONE]"
            except GuardrailBlocked as e:
                # Held-back text never left; the client learns why the reply stops here.
                yield chunk({}, "content_filter")
                yield json.dumps({"error": _blocked(state, e, "messages").body()["error"]})
                yield "[DONE]"
            except asyncio.CancelledError:
                metrics.cancelled.inc()
                raise
            finally:
                stream.cancel()

        return EventSourceResponse(sse(), ping=15, sep="\n")

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Response:
        pipeline = state.require_pipeline(body.model)
        engine = pipeline.engine
        prompts = body.prompts()
        if body.stream and len(prompts) > 1:
            raise APIError(400, "stream=true takes a single prompt", param="prompt")
        scoring = body.echo and body.logprobs is not None
        streams: list[GenerationStream] = []
        contexts = []
        try:
            for p in prompts:
                req = EngineRequest(
                    prompt=p,
                    params=body.params(),
                    prompt_logprobs=scoring,
                    eos_logprob=body.logprobs is not None,
                )
                ctx, s = pipeline.submit_text(req)
                contexts.append(ctx)
                streams.append(s)
        except SUBMIT_ERRORS as e:
            for s in streams:
                s.cancel()
            raise _submit_errors(state, e, "prompt") from None
        cid, created = f"cmpl-{secrets.token_hex(12)}", int(time.time())

        def cancel_all() -> None:
            for s in streams:
                s.cancel()

        if body.stream:

            def piece(text: str, finish: str | None) -> str:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
                return json.dumps(
                    {
                        "id": cid,
                        "object": "text_completion",
                        "created": created,
                        "model": pipeline.model,
                        "choices": [choice],
                    }
                )

            async def sse() -> AsyncIterator[str]:
                ctx = contexts[0]
                out = pipeline.output_filter(ctx)
                text: list[str] = []
                try:
                    async for ev in streams[0]:
                        if isinstance(ev, Delta):
                            text.append(ev.text)
                            shown = out.feed(ev.text) if out is not None else ev.text
                            if shown:
                                yield piece(shown, None)
                        else:
                            if out is not None and (rest := out.flush()):
                                yield piece(rest, None)
                            pipeline.finish_text(ctx, ev, "".join(text))
                            yield piece("", _finish_reason(ev.finish_reason))
                    yield "[DONE]"
                except GuardrailBlocked as e:
                    pipeline.abandon(ctx, e)
                    yield piece("", "content_filter")
                    yield json.dumps({"error": _blocked(state, e, "prompt").body()["error"]})
                    yield "[DONE]"
                except asyncio.CancelledError as e:
                    pipeline.abandon(ctx, e)
                    metrics.cancelled.inc()
                    raise
                finally:
                    cancel_all()

            return EventSourceResponse(sse(), ping=15, sep="\n")

        async def collect_all() -> list[tuple[str, list[TokenLogprob], Finished]]:
            return list(await asyncio.gather(*(_collect(s) for s in streams)))

        try:
            results = await _unless_disconnected(request, collect_all(), cancel_all)
        except _ClientGone:
            for ctx in contexts:
                pipeline.abandon(ctx)
            metrics.cancelled.inc()
            return Response(status_code=499)
        choices, prompt_total, completion_total = [], 0, 0
        for i, (text, lps, fin) in enumerate(results):
            if fin.finish_reason == "error":
                raise APIError(500, fin.error or "generation failed", type_="server_error")
            try:
                guarded = pipeline.finish_text(contexts[i], fin, text)
            except GuardrailBlocked as e:
                raise _blocked(state, e, "prompt") from None
            if guarded != text:  # a guard edited the reply: token logprobs no longer match it
                text, lps = guarded, []
            prompt_total += fin.prompt_tokens
            completion_total += fin.completion_tokens
            prompt_text = ""
            if body.echo:
                p = prompts[i]
                prompt_text = p if isinstance(p, str) else _detok(engine, fin.prompt_token_ids)
            logprobs = None
            if body.logprobs is not None:
                entries: list[tuple[str, float | None, dict[str, float] | None]] = []
                if body.echo:
                    for tok, lp in zip(
                        fin.prompt_token_ids, fin.prompt_logprobs or [], strict=False
                    ):
                        piece = engine.piece(tok).decode("utf-8", "replace")
                        entries.append((piece, lp.logprob if lp else None, _top(lp)))
                entries += [(lp.token, lp.logprob, _top(lp)) for lp in lps]
                offsets, pos = [], 0
                for tok, _, _ in entries:
                    offsets.append(pos)
                    pos += len(tok)
                logprobs = {
                    "tokens": [e[0] for e in entries],
                    "token_logprobs": [e[1] for e in entries],
                    "top_logprobs": [e[2] for e in entries],
                    "text_offset": offsets,
                }
            choices.append(
                {
                    "index": i,
                    "text": prompt_text + text,
                    "logprobs": logprobs,
                    "finish_reason": _finish_reason(fin.finish_reason),
                }
            )
        metrics.prompt_tokens.inc(prompt_total)
        metrics.completion_tokens.inc(completion_total)
        return JSONResponse(
            {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": pipeline.model,
                "choices": choices,
                "usage": _usage(prompt_total, completion_total),
            }
        )


async def _collect(stream: GenerationStream) -> tuple[str, list[TokenLogprob], Finished]:
    text: list[str] = []
    lps: list[TokenLogprob] = []
    async for ev in stream:
        if isinstance(ev, Delta):
            text.append(ev.text)
            lps.extend(ev.logprobs)
        else:
            return "".join(text), lps, ev
    raise RuntimeError("stream ended without a Finished event")


def _top(lp: TokenLogprob | None) -> dict[str, float] | None:
    if lp is None:
        return None
    return {t.token: t.logprob for t in lp.top_logprobs} or {lp.token: lp.logprob}


def _detok(engine: Any, ids: list[int]) -> str:
    return b"".join(engine.piece(t) for t in ids).decode("utf-8", "replace")


def _tool_delta(d: Any) -> dict[str, Any]:
    if d.id is not None:
        return {
            "index": d.index,
            "id": d.id,
            "type": "function",
            "function": {"name": d.name, "arguments": d.arguments},
        }
    return {"index": d.index, "function": {"arguments": d.arguments}}
