"""Chat playground: any model reference through the `generate` capability's request and
pipeline: streaming, system prompt, sampling, tools with a JSON schema, structured output,
two models side by side (the page asks each in turn), and the guard policy's decisions on
the question and the answer shown inline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sse_starlette.sse import EventSourceResponse

from lmfast.generation import GenerateRequest
from lmfast.inference.base import SamplingParams, ToolSpec
from lmfast.studio.forms import FormErrors, form_errors, request_fields
from lmfast.studio.rendering import render, settings_of, suggestions

router = APIRouter()
SAMPLING = ["temperature", "top_p", "max_tokens", "seed"]
POLICIES = ["off", "permissive", "balanced", "strict"]


@router.get("/chat", response_class=HTMLResponse)
async def chat_page(request: Request, model: str | None = None) -> HTMLResponse:
    from lmfast.config import DEFAULT_MODEL

    return render(
        request, "chat.html", sampling=request_fields(SamplingParams, SAMPLING),
        policies=POLICIES, suggestions=suggestions(), model=model or DEFAULT_MODEL,
    )  # fmt: skip


def _tools(raw: Any) -> list[ToolSpec] | None:
    """OpenAI's tool list ({type: function, function: {...}}) or bare function specs."""
    if not raw:
        return None
    if not isinstance(raw, list):
        raise FormErrors([("tools", "tools: a JSON list of functions (name, description, "
                                    "parameters)")])  # fmt: skip
    try:
        return [ToolSpec.model_validate(t.get("function", t) if isinstance(t, dict) else t)
                for t in raw]  # fmt: skip
    except Exception as e:
        raise FormErrors([("tools", f"tools: {m}") for _, m in form_errors(e).problems]) from None


def _request(body: dict[str, Any], roots: Any) -> tuple[GenerateRequest, list[ToolSpec] | None]:
    from lmfast.mcp_server.paths import confine_model_reference

    body = dict(body)
    tools = _tools(body.pop("tools", None))
    schema = body.pop("json_schema", None)
    if schema is not None:
        if not isinstance(schema, dict):
            raise FormErrors([("json_schema", "json_schema: a JSON object (a JSON schema)")])
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if body.get("model"):
        body["model"] = confine_model_reference(body["model"], "model", roots)
    return GenerateRequest.model_validate(body), tools


def _check(text: str, policy: str, stage: str) -> dict[str, Any]:
    from lmfast.guardrails.check import GuardCheckRequest, guard_check

    found = guard_check(GuardCheckRequest(text=text, policy=policy, stage=stage))  # type: ignore[arg-type]
    return found.model_dump(mode="json")


def _generate(req: GenerateRequest, tools: list[ToolSpec] | None) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs: the input guard's decisions, text pieces, the output guard's
    decisions, then the end with token counts."""
    from lmfast.generation import get_pipeline

    start = time.perf_counter()
    policy = req.guard if req.guard and req.guard != "off" else None
    question = next((m.content for m in reversed(req.chat()) if m.role == "user"), "") or ""
    if policy:
        verdict = _check(question, policy, "input")
        yield "guard", verdict
        if verdict["blocked"]:
            yield "done", {"finish_reason": "guard", "seconds": time.perf_counter() - start}
            return
    pipeline = get_pipeline(req.model, req.backend, req.guard)
    yield "loaded", {"backend": pipeline.engine.name, "seconds": time.perf_counter() - start}
    text, tool_calls, usage = "", [], {}
    if tools:
        out = pipeline.chat(req.chat(), req.params, tools=tools,
                            response_format=req.response_format)  # fmt: skip
        text = out.text or ""
        if text:
            yield "delta", {"text": text}
        tool_calls = [c.model_dump(mode="json") for c in out.tool_calls]
        usage = {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                 "finish_reason": out.finish_reason}  # fmt: skip
    else:
        pieces = pipeline.stream(req.chat(), req.params, response_format=req.response_format)
        while True:
            try:
                piece = next(pieces)
            except StopIteration as finished:
                result = finished.value
                break
            text += piece
            yield "delta", {"text": piece}
        usage = {"prompt_tokens": result.prompt_tokens, "finish_reason": result.finish_reason,
                 "completion_tokens": result.completion_tokens}  # fmt: skip
    if policy and text:
        yield "guard", _check(text, policy, "output")
    yield "done", {**usage, "tool_calls": tool_calls, "seconds": time.perf_counter() - start}


@router.post("/api/chat")
async def chat(request: Request, body: dict[str, Any]) -> EventSourceResponse:
    try:
        req, tools = _request(body, settings_of(request).roots)
    except Exception as e:
        raise form_errors(e) from None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()

    def produce() -> None:
        try:
            for item in _generate(req, tools):
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except Exception as e:
            message = form_errors(e).problems[0][1]
            loop.call_soon_threadsafe(queue.put_nowait, ("error", {"message": message}))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    async def events() -> AsyncIterator[dict[str, str]]:
        worker = asyncio.create_task(asyncio.to_thread(produce))
        while (item := await queue.get()) is not None:
            yield {"event": item[0], "data": json.dumps(item[1])}
        await worker

    return EventSourceResponse(events(), ping=15)
