"""Inference engines behind one small protocol, chosen by model format and what is installed."""

from __future__ import annotations

from typing import Literal

from lmfast.inference.base import (
    ChatMessage,
    Engine,
    EngineRequest,
    GenerationStream,
    SamplingParams,
    ToolSpec,
)
from lmfast.registry import ResolvedModel, resolve_model

Backend = Literal["auto", "llamacpp", "transformers", "vllm"]

__all__ = [
    "Backend",
    "ChatMessage",
    "Engine",
    "EngineRequest",
    "GenerationStream",
    "SamplingParams",
    "ToolSpec",
    "load_engine",
]


def load_engine(
    model: str | ResolvedModel | None = None,
    *,
    backend: Backend = "auto",
    device: str | None = None,
    n_ctx: int | None = None,
    parallel: int = 1,
    queue_size: int = 64,
) -> Engine:
    """Load `model` into an engine. 'auto': llama.cpp for GGUF files, transformers otherwise.

    `parallel` is how many requests are decoded together (continuous batching in llama.cpp);
    `queue_size` how many more may wait before submissions are refused.
    """
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
    if backend == "auto":
        backend = "llamacpp" if resolved.format == "gguf" else "transformers"
    if backend == "llamacpp":
        if resolved.format != "gguf":
            raise ValueError(
                f"backend='llamacpp' needs a .gguf model; {resolved.name} is a {resolved.format} "
                "folder. Use backend='transformers' (or export it to GGUF first)."
            )
        from lmfast.inference.llamacpp import LlamaCppEngine

        return LlamaCppEngine(
            resolved.path,
            n_ctx=n_ctx,
            parallel=parallel,
            queue_size=queue_size,
            default_system=resolved.default_system,
        )
    if backend == "vllm":
        from lmfast.inference.vllm_engine import VLLMEngine

        return VLLMEngine(resolved, n_ctx=n_ctx, queue_size=queue_size)
    from lmfast.inference.hf import TransformersEngine

    return TransformersEngine.load(resolved, device=device, queue_size=queue_size)
