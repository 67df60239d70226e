"""Inference engines behind one small protocol, chosen by model format and what is installed."""

from __future__ import annotations

from typing import Literal

from lmfast.inference.base import ChatMessage, Engine, GenerationResult, SamplingParams
from lmfast.registry import ResolvedModel, resolve_model

Backend = Literal["auto", "llamacpp", "transformers"]

__all__ = [
    "Backend",
    "ChatMessage",
    "Engine",
    "GenerationResult",
    "SamplingParams",
    "load_engine",
]


def load_engine(
    model: str | ResolvedModel | None = None,
    *,
    backend: Backend = "auto",
    device: str = "cpu",
    n_ctx: int | None = None,
) -> Engine:
    """Load `model` into an engine. 'auto': llama.cpp for GGUF files, transformers otherwise."""
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

        return LlamaCppEngine(resolved.path, n_ctx=n_ctx, default_system=resolved.default_system)
    from lmfast.inference.hf import TransformersEngine

    return TransformersEngine.load(resolved, device=device)
