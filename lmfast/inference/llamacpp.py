"""llama.cpp engine (llama-cpp-python): the fast path for GGUF files on CPU and GPU."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmfast.hardware import cpu_cores
from lmfast.inference.base import (
    ChatMessage,
    GenerationResult,
    SamplingParams,
    with_default_system,
)

# llama.cpp allocates the whole KV cache up front; cap the default so a model with a 128k
# context does not reserve gigabytes for a short chat.
DEFAULT_MAX_CONTEXT = 8192


class LlamaCppEngine:
    """One GGUF model loaded in llama.cpp. The GGUF's own chat template renders prompts."""

    name = "llama.cpp"

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        n_gpu_layers: int = -1,
        default_system: str | None = None,
    ) -> None:
        from llama_cpp import Llama

        from lmfast.gguf_meta import read_gguf

        self.path = Path(path)
        self.default_system = default_system
        if n_ctx is None:
            n_ctx = min(read_gguf(self.path).spec.context_length, DEFAULT_MAX_CONTEXT)
        self.llm = Llama(
            model_path=str(self.path),
            n_ctx=n_ctx,
            n_threads=n_threads or cpu_cores(),
            n_gpu_layers=n_gpu_layers,
            verbose=False,
        )

    @property
    def context_length(self) -> int:
        return int(self.llm.n_ctx())

    def _kwargs(self, messages: list[ChatMessage], params: SamplingParams) -> dict[str, Any]:
        return {
            "messages": with_default_system(messages, self.default_system),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "min_p": params.min_p,
            "repeat_penalty": params.repetition_penalty,
            "frequency_penalty": params.frequency_penalty,
            "presence_penalty": params.presence_penalty,
            "seed": params.seed,
            "stop": params.stop or None,
        }

    def chat(self, messages: list[ChatMessage], params: SamplingParams) -> GenerationResult:
        out: Any = self.llm.create_chat_completion(**self._kwargs(messages, params))
        choice, usage = out["choices"][0], out["usage"]
        return GenerationResult(
            text=choice["message"]["content"] or "",
            finish_reason="length" if choice["finish_reason"] == "length" else "stop",
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
        )

    def stream_chat(self, messages: list[ChatMessage], params: SamplingParams) -> Iterator[str]:
        for chunk in self.llm.create_chat_completion(**self._kwargs(messages, params), stream=True):
            piece = chunk["choices"][0]["delta"].get("content")  # type: ignore[index]
            if piece:
                yield piece
