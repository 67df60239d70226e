"""The `generate` capability: one typed function behind the CLI, MCP and Python."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmfast.config import DEFAULT_MODEL
from lmfast.errors import BackendError
from lmfast.inference import Backend, ChatMessage, Engine, SamplingParams, load_engine
from lmfast.pipeline import Pipeline, ResponseFormat
from lmfast.registry import resolve_model


class GenerateRequest(BaseModel):
    """Generate a reply from a model. Sampling settings go in `params`, or flat as the OpenAI
    API takes them (`temperature=0`, `max_tokens=64`); an unknown field is an error, never
    silently ignored (a misspelt `temperature` used to sample at the default)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="Model reference (alias, path, artifact id).")
    prompt: str | None = Field(None, description="A single user message.")
    messages: list[ChatMessage] | None = Field(None, description="A full chat history instead.")
    system: str | None = Field(None, description="System message prepended to the chat.")
    backend: Backend = Field("auto", description="Engine: llama.cpp for GGUF when 'auto'.")
    params: SamplingParams = Field(default_factory=SamplingParams, description="Sampling.")
    response_format: ResponseFormat | None = Field(
        None, description="Constrain the reply to JSON (json_object) or a JSON schema."
    )
    guard: str | None = Field(
        None,
        description="Guard policy: strict, balanced, permissive, a YAML file, or off "
        "(default: env LMFAST_GUARD, else off).",
    )

    @model_validator(mode="before")
    @classmethod
    def _flat_sampling(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        flat = {k: data[k] for k in SamplingParams.model_fields if k in data}
        if not flat:
            return data
        params = data.get("params") or {}
        if isinstance(params, SamplingParams):
            params = params.model_dump(exclude_unset=True)
        both = sorted(set(flat) & set(params))
        if both:
            raise ValueError(f"{', '.join(both)}: given both flat and in params; give one")
        rest = {k: v for k, v in data.items() if k not in flat}
        return {**rest, "params": {**params, **flat}}

    @model_validator(mode="after")
    def _one_input(self) -> GenerateRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        if self.messages is not None and not self.messages:
            raise ValueError("messages must not be empty")
        return self

    def chat(self) -> list[ChatMessage]:
        turns = list(self.messages or [ChatMessage(role="user", content=self.prompt or "")])
        if self.system:
            turns.insert(0, ChatMessage(role="system", content=self.system))
        return turns


class GenerateResult(BaseModel):
    """The reply plus token accounting."""

    model: str
    backend: str
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


_PIPELINES: dict[tuple[str, str, str | None], Pipeline] = {}
_LOAD_LOCK = threading.Lock()  # concurrent first calls (MCP runs tools in threads) load once


def get_pipeline(model: str, backend: Backend = "auto", guard: str | None = None) -> Pipeline:
    """Pipelines are cached per (resolved path, backend, guard policy): loading dominates
    short replies. `guard` None means the LMFAST_GUARD environment variable, else off."""
    from lmfast.guardrails.guard import guard_hooks, guard_ref

    if backend not in get_args(Backend):
        raise BackendError(f"backend={backend!r} is not one of {', '.join(get_args(Backend))}")
    resolved = resolve_model(model)
    policy = guard_ref(guard)
    key = (str(resolved.path), backend, policy)
    with _LOAD_LOCK:
        if key not in _PIPELINES:
            hooks = guard_hooks(policy)  # a bad policy fails before a model is loaded
            same_model = [p for k, p in _PIPELINES.items() if k[:2] == key[:2]]
            engine: Engine
            if same_model:  # another policy over the loaded model: share the engine
                engine = same_model[0].engine
            else:
                # Hold one model at a time (small machines); policies may share an engine.
                for old in {id(p.engine): p.engine for p in _PIPELINES.values()}.values():
                    old.close()
                _PIPELINES.clear()
                engine = load_engine(resolved, backend=backend)
            _PIPELINES[key] = Pipeline(engine, hooks, model=model)
        return _PIPELINES[key]


def generate(request: GenerateRequest) -> GenerateResult:
    """Run one generation to the end."""
    pipeline = get_pipeline(request.model, request.backend, request.guard)
    out = pipeline.chat(request.chat(), request.params, response_format=request.response_format)
    return GenerateResult(
        model=request.model,
        backend=pipeline.engine.name,
        text=out.text or "",
        finish_reason=out.finish_reason,
        prompt_tokens=out.prompt_tokens,
        completion_tokens=out.completion_tokens,
    )


def generate_stream(request: GenerateRequest) -> Iterator[str]:
    """Run one generation, yielding text as it is decoded."""
    pipeline = get_pipeline(request.model, request.backend, request.guard)
    yield from pipeline.stream(
        request.chat(), request.params, response_format=request.response_format
    )
