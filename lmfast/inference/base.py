"""The engine protocol: what every inference backend (llama.cpp, transformers, ...) provides."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    """One chat turn."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"] = Field(description="Speaker.")
    content: str = Field(description="Text of the turn.")


class SamplingParams(BaseModel):
    """How to pick tokens. temperature=0 means greedy decoding."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(256, ge=1, le=32768, description="Most tokens to generate.")
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
    seed: int | None = Field(None, ge=0, description="Seed for reproducible sampling.")
    stop: list[str] = Field(default_factory=list, description="Stop before these strings.")


class GenerationResult(BaseModel):
    """A finished generation."""

    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


def with_default_system(messages: list[ChatMessage], default: str | None) -> list[dict[str, str]]:
    """Messages as dicts, with the model's default system message when the chat has none."""
    turns = [m.model_dump() for m in messages]
    if default and not any(m.role == "system" for m in messages):
        turns.insert(0, {"role": "system", "content": default})
    return turns


@runtime_checkable
class Engine(Protocol):
    """An inference backend. Implementations hold one loaded model."""

    name: str

    def chat(self, messages: list[ChatMessage], params: SamplingParams) -> GenerationResult:
        """Generate the assistant's reply to `messages` with the model's chat template."""
        ...

    def stream_chat(self, messages: list[ChatMessage], params: SamplingParams) -> Iterator[str]:
        """Like chat, yielding text pieces as they are decoded."""
        ...
