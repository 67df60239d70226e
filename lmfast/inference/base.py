"""The engine protocol and the types every inference backend shares.

An engine turns an `EngineRequest` (a rendered prompt or token ids, sampling settings, an
optional grammar) into a `GenerationStream` of `Delta` events ending with one `Finished`.
Streams work from threads (plain iteration) and from asyncio (async iteration) alike, and
`cancel()` stops the generation at the next token.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "error"]


class ToolCallFunction(BaseModel):
    name: str = Field(description="Function to call.")
    arguments: str = Field(description="Arguments as a JSON string.")


class ToolCall(BaseModel):
    id: str = Field(description="Call id the tool's answer refers to.")
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessage(BaseModel):
    """One chat turn (OpenAI's shape, text only)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"] = Field(description="Speaker.")
    content: str | None = Field(None, description="Text; null for pure tool-call turns.")
    tool_calls: list[ToolCall] | None = Field(None, description="Calls an assistant made.")
    tool_call_id: str | None = Field(None, description="For role=tool: the call answered.")
    name: str | None = Field(None, description="Optional speaker or tool name.")

    @model_validator(mode="after")
    def _content_present(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"content is required for a {self.role} message")
        return self


class ToolSpec(BaseModel):
    """A function the model may call."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Function name.")
    description: str = Field("", description="What it does, for the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments object.",
    )


class SamplingParams(BaseModel):
    """How to pick tokens. temperature=0 means greedy decoding."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(256, ge=0, le=32768, description="Most tokens to generate.")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: int = Field(0, ge=0, le=100_000, description="Keep the k most likely; 0 is off.")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="Drop tokens below min_p x top prob.")
    repetition_penalty: float = Field(
        1.0, gt=0.0, le=10.0, description="Multiplicative penalty on seen tokens (1 is off)."
    )
    frequency_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="OpenAI-style penalty per previous occurrence."
    )
    presence_penalty: float = Field(
        0.0, ge=-2.0, le=2.0, description="OpenAI-style penalty for any previous occurrence."
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="Seed for sampling.")
    stop: list[str] = Field(
        default_factory=list, max_length=16, description="Stop before these strings."
    )
    logprobs: bool = Field(False, description="Return the log probability of each token.")
    top_logprobs: int = Field(0, ge=0, le=20, description="Also the n most likely alternatives.")
    logit_bias: dict[int, float] = Field(
        default_factory=dict,
        max_length=1024,
        description="Added to these token ids' logits before sampling (-100 bans, 100 forces).",
    )


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(BaseModel):
    """OpenAI's per-token logprob entry."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


@dataclass
class EngineRequest:
    """One generation for an engine: prompt already rendered (text) or tokenized (ids)."""

    prompt: str | list[int]
    params: SamplingParams
    grammar: str | None = None  # GBNF the output must match
    grammar_trigger: str | None = None  # apply `grammar` only once this text appears
    prompt_logprobs: bool = False  # score the prompt's tokens too (completions echo)
    # With prompt_logprobs: the first prompt position worth scoring. Earlier positions get
    # None (evaluation scores only a continuation; its context needs no logits), and a
    # cached prefix shorter than this is reused.
    score_from: int = 1
    # With params.logprobs: also report the end-of-generation token's logprob (OpenAI's and
    # vLLM's completions do; lm-evaluation-harness counts on one token per max_tokens=1).
    eos_logprob: bool = False
    # A LoRA adapter the engine was loaded with, by name (None: the base model alone).
    adapter: str | None = None


@dataclass
class Delta:
    """New text (possibly empty while a UTF-8 character is incomplete)."""

    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass
class Finished:
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    prompt_token_ids: list[int] = field(default_factory=list)
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache
    prompt_logprobs: list[TokenLogprob | None] | None = None
    error: str | None = None


Event = Delta | Finished


class GenerationStream:
    """Events of one generation. Created where it is consumed: inside a running event loop
    it delivers to an asyncio queue, otherwise to a thread-safe queue."""

    def __init__(self) -> None:
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._async_q: asyncio.Queue[Event] | None = asyncio.Queue() if self._loop else None
        self._sync_q: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._cancelled = threading.Event()

    # producer side (engine thread) ---------------------------------------------------
    def put(self, event: Event) -> None:
        if self._loop is not None and self._async_q is not None:
            try:
                self._loop.call_soon_threadsafe(self._async_q.put_nowait, event)
            except RuntimeError:  # the consumer's loop is gone: nobody is listening
                self._cancelled.set()
        else:
            self._sync_q.put(event)

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    # consumer side -------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop generating at the next token; a Finished('cancelled') event follows."""
        self._cancelled.set()

    def __iter__(self) -> Iterator[Event]:
        if self._async_q is not None:
            raise RuntimeError("this stream was created in an event loop: use `async for`")
        while True:
            event = self._sync_q.get()
            yield event
            if isinstance(event, Finished):
                return

    async def __aiter__(self) -> AsyncIterator[Event]:
        if self._async_q is None:
            raise RuntimeError("this stream was created outside an event loop: use `for`")
        while True:
            event = await self._async_q.get()
            yield event
            if isinstance(event, Finished):
                return


class EngineBusyError(Exception):
    """The engine's queue is full (HTTP 429)."""


class PromptTooLongError(ValueError):
    """The prompt does not fit the context window (HTTP 400)."""

    def __init__(self, prompt_tokens: int, context_length: int) -> None:
        self.prompt_tokens, self.context_length = prompt_tokens, context_length
        super().__init__(
            f"the prompt is {prompt_tokens} tokens but the context window is "
            f"{context_length} tokens; shorten the prompt or the history"
        )

    def __reduce__(self) -> tuple[type, tuple[int, int]]:  # crosses the engine process pipe
        return (type(self), (self.prompt_tokens, self.context_length))


def check_logit_bias(params: SamplingParams, vocab_size: int) -> None:
    bad = [t for t in params.logit_bias if not 0 <= t < vocab_size]
    if bad:
        raise RequestFieldError(
            "logit_bias", f"token ids must be in [0, {vocab_size}); got {bad[:5]}"
        )


class UnsupportedFeatureError(ValueError):
    """The engine cannot honour a requested feature (HTTP 400)."""


class RequestFieldError(ValueError):
    """One request field is invalid (HTTP 400 with `param` naming it)."""

    def __init__(self, param: str, message: str) -> None:
        self.param, self.message = param, message
        super().__init__(f"{param}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.param, self.message))


@runtime_checkable
class Engine(Protocol):
    """An inference backend holding one loaded model."""

    name: str
    context_length: int
    default_system: str | None

    def render_chat(self, messages: list[ChatMessage], tools: list[ToolSpec] | None = None) -> str:
        """The prompt text for `messages` in the model's chat template."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (special tokens parsed)."""
        ...

    def piece(self, token: int) -> bytes:
        """The bytes one token stands for."""
        ...

    def submit(self, request: EngineRequest) -> GenerationStream:
        """Start generating; raises EngineBusyError or PromptTooLongError at once."""
        ...

    def stats(self) -> dict[str, int]:
        """Gauges for metrics: running, waiting, ..."""
        ...

    def close(self) -> None:
        """Free the model."""
        ...
