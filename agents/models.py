"""The models an agent can think with: any LMFast engine, or any OpenAI-compatible endpoint.

A local model goes through LMFast's generation pipeline (so guardrail and tracing hooks see
every step) and takes a GBNF grammar, which is how a 135M model is kept to the agent's
format. A remote model gets the tools through the API's native `tools` field; its replies
are parsed the same way (native tool calls first, then `<tool_call>` text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lmfast.errors import LMFastError
from lmfast.inference.base import ChatMessage, SamplingParams, ToolCall, ToolSpec
from lmfast.observability.tracing import span


class AgentError(LMFastError, ValueError):
    """An agent cannot be set up or reach its model (the CLI shows it as one message)."""


@dataclass
class Completion:
    """One sampled reply."""

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class AgentModel(Protocol):
    name: str
    constrained: bool  # accepts a GBNF grammar

    def complete(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        *,
        tools: list[ToolSpec] | None = None,
        grammar: str | None = None,
        n: int = 1,
    ) -> list[Completion]:
        """`n` replies to the same messages (sampled together where the engine can)."""
        ...


class LocalModel:
    """An LMFast pipeline (llama.cpp or transformers engine, hooks included)."""

    constrained = True
    native_tools = False  # the tools are described in the agent's system prompt

    def __init__(self, pipeline: Any) -> None:
        from lmfast.inference.chat_format import template_supports_tools

        self.pipeline = pipeline
        self.name = pipeline.engine.name
        # Whether the chat template has its own tool turns: if not, an agent shows tool
        # results as user turns, which small models read far more reliably.
        engine = pipeline.engine
        template = getattr(getattr(engine, "tokenizer", None), "chat_template", None)
        self.tool_turns = bool(getattr(engine, "_native_tools", False)) or (
            template_supports_tools(template)
        )
        self.agent_profile = agent_profile(getattr(pipeline, "model", None))

    @classmethod
    def load(
        cls,
        model: str | None = None,
        backend: str = "auto",
        parallel: int = 1,
        guard: str | None = None,
    ) -> LocalModel:
        """Load `model` (reference, default the embedded one). `parallel` > 1 lets llama.cpp
        decode that many samples as one batch (best-of-N). `guard`: a policy (default env
        LMFAST_GUARD, else off); it checks the task and every tool result fed back."""
        from lmfast.guardrails.guard import guard_hooks

        from lmfast.config import DEFAULT_MODEL
        from lmfast.generation import get_pipeline
        from lmfast.inference import load_engine
        from lmfast.pipeline import Pipeline

        if parallel == 1:
            return cls(get_pipeline(model or DEFAULT_MODEL, backend, guard))  # type: ignore[arg-type]
        hooks = guard_hooks(guard)
        engine = load_engine(model or DEFAULT_MODEL, backend=backend, parallel=parallel)  # type: ignore[arg-type]
        return cls(Pipeline(engine, hooks, model=model or DEFAULT_MODEL))

    def complete(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        *,
        tools: list[ToolSpec] | None = None,
        grammar: str | None = None,
        n: int = 1,
    ) -> list[Completion]:
        # Submit all n first: the engine decodes concurrent requests together.
        submitted = []
        for i in range(n):
            p = params
            if n > 1:
                seed = (params.seed or 0) + i
                p = params.model_copy(update={"seed": seed})
            submitted.append(
                self.pipeline.submit(messages, p, tools=tools, tool_choice="none", grammar=grammar)
            )
        out = []
        for submission in submitted:
            r = self.pipeline.collect(*submission, until=degenerate)
            looped = r.finish_reason == "cancelled" and degenerate(r.text or "")
            out.append(
                Completion(
                    text=r.text or "",
                    finish_reason="repetition" if looped else r.finish_reason,
                    prompt_tokens=r.prompt_tokens,
                    completion_tokens=r.completion_tokens,
                )
            )
        return out


# The agent settings a specialized model was trained with, beside its weights.
PROFILE_FILE = "lmfast-agent.json"


def agent_profile(reference: str | None) -> dict[str, Any] | None:
    """The agent settings a specialized model was trained with (`lmfast-agent.json` beside
    its GGUF or in its adapter folder), or None."""
    import json

    from lmfast.registry import resolve_model

    if not reference:
        return None
    try:
        path = resolve_model(reference).path
    except Exception:  # a model that loaded but does not resolve has no profile
        return None
    file = (path if path.is_dir() else path.parent) / PROFILE_FILE
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except ValueError:
        return None


def degenerate(text: str, window: int = 24, repeats: int = 3) -> bool:
    """Whether generation has fallen into a loop: the last `window` characters already
    occur `repeats` times (non-overlapping) in the text ('222222...', the same clause over
    and over). Greedy small models do this inside free-text fields, and a grammar cannot
    stop it: it would only end at max_tokens."""
    if len(text) < window * repeats:
        return False
    return text.count(text[-window:]) >= repeats


class OpenAIModel:
    """Any OpenAI-compatible chat endpoint (LMFast's own server, vLLM, llama.cpp, OpenAI)."""

    constrained = False
    native_tools = True  # sent in the API's `tools` field
    tool_turns = True

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None) -> None:
        from openai import OpenAI

        self.name = model
        self.client = OpenAI(base_url=base_url, api_key=api_key or "not-needed")

    def complete(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        *,
        tools: list[ToolSpec] | None = None,
        grammar: str | None = None,
        n: int = 1,
        tool_choice: str | None = None,
    ) -> list[Completion]:
        """`tool_choice`: the API's own ('required' to force a call), sent with `tools`."""
        from openai import APIConnectionError, APIStatusError

        from lmfast.inference.chat_format import openai_tools

        kwargs: dict[str, Any] = {
            "model": self.name,
            "messages": [_wire(m) for m in messages],
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            kwargs["seed"] = params.seed
        if params.stop:
            kwargs["stop"] = params.stop
        if tools:
            kwargs["tools"] = openai_tools(tools)
            if tool_choice:
                kwargs["tool_choice"] = tool_choice
        out = []
        # One request per sample: many servers (LMFast's included) allow only n=1.
        for i in range(n):
            if n > 1:
                kwargs["seed"] = (params.seed or 0) + i
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": self.name,
                "server.address": str(self.client.base_url),
            }
            with span(f"chat {self.name}", **attrs) as s:
                try:
                    reply = self.client.chat.completions.create(**kwargs)
                except (APIConnectionError, APIStatusError) as e:
                    raise AgentError(f"model: {self.client.base_url} answered: {e}") from e
                if s is not None and reply.usage is not None:
                    s.set_attribute("gen_ai.usage.input_tokens", reply.usage.prompt_tokens)
                    s.set_attribute("gen_ai.usage.output_tokens", reply.usage.completion_tokens)
            choice = reply.choices[0]
            calls = [
                ToolCall.model_validate(c.model_dump()) for c in choice.message.tool_calls or []
            ]
            usage = reply.usage
            out.append(
                Completion(
                    text=choice.message.content or "",
                    tool_calls=calls,
                    finish_reason=choice.finish_reason or "stop",
                    prompt_tokens=usage.prompt_tokens if usage else 0,
                    completion_tokens=usage.completion_tokens if usage else 0,
                )
            )
        return out


def _wire(m: ChatMessage) -> dict[str, Any]:
    return m.model_dump(exclude_none=True)


def resolve_agent_model(
    model: Any = None, backend: str = "auto", guard: str | None = None
) -> AgentModel:
    """An AgentModel from a model object, a pipeline, an `http(s)://.../v1#model` endpoint,
    or a model reference (default: the embedded model), guarded by `guard` when loaded
    here (a remote server applies its own policy)."""
    from lmfast.pipeline import Pipeline

    if isinstance(model, AgentModel):
        return model
    if isinstance(model, Pipeline):
        return LocalModel(model)
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        url, _, name = model.partition("#")
        return OpenAIModel(name or "default", base_url=url)
    return LocalModel.load(model, backend, guard=guard)
