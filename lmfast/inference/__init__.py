"""Inference engines behind one small protocol, chosen by model format and what is installed."""

from __future__ import annotations

from typing import Literal

from lmfast.errors import BackendError
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
    adapters: dict[str, str] | None = None,
    draft: str | None = None,
    draft_max: int = 8,
    draft_min: int = 0,
    kv: dict[str, object] | None = None,
) -> Engine:
    """Load `model` into an engine. 'auto': llama.cpp for GGUF files, transformers otherwise.

    `parallel` is how many requests are decoded together (continuous batching in llama.cpp);
    `queue_size` how many more may wait before submissions are refused; `adapters` (name ->
    GGUF LoRA file, llama.cpp only) what a request may name in `EngineRequest.adapter`;
    `draft` a GGUF file with the same vocabulary for speculative decoding (llama.cpp only);
    `kv` the llama.cpp engine's KV settings (kv_unified, kv_tokens, cache_ram_mb).
    """
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
    if backend == "auto":
        backend = "llamacpp" if resolved.format == "gguf" else "transformers"
    check_backend(resolved, backend)
    if adapters and backend != "llamacpp":
        raise BackendError(f"LoRA adapters are applied by llama.cpp, not by {backend}")
    if draft and backend != "llamacpp":
        raise BackendError(f"a draft model is used by llama.cpp, not by {backend}")
    if backend == "llamacpp":
        # In a child process: a native crash ends requests with an error, not the caller.
        from lmfast.inference.engine_process import EngineProcess

        return EngineProcess(
            resolved.path,
            n_ctx=n_ctx,
            parallel=parallel,
            queue_size=queue_size,
            default_system=resolved.default_system,
            adapters=adapters or None,
            **({"draft": draft, "draft_max": draft_max, "draft_min": draft_min} if draft else {}),
            **(kv or {}),
        )
    if backend == "vllm":
        from lmfast.inference.vllm_engine import VLLMEngine

        return VLLMEngine(resolved, n_ctx=n_ctx, queue_size=queue_size)
    from lmfast.inference.hf import TransformersEngine

    return TransformersEngine.load(resolved, device=device, queue_size=queue_size)


def fitting_backends(resolved: ResolvedModel) -> list[str]:
    """Backends that can run this model on this machine."""
    fits = ["llamacpp"] if resolved.format == "gguf" else []
    fits.append("transformers")
    if resolved.format != "gguf" and _vllm_problem() is None:
        fits.append("vllm")
    return fits


def _vllm_problem() -> str | None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return "the vllm package is not installed (uv pip install vllm, on a CUDA machine)"
    import torch

    if not torch.cuda.is_available():
        return "it needs a CUDA GPU and this machine has none"
    return None


def check_backend(resolved: ResolvedModel, backend: str) -> None:
    """Refuse a backend that cannot run `resolved` here, naming the ones that can."""
    problem = None
    if backend == "llamacpp" and resolved.format != "gguf":
        problem = f"it needs a .gguf model and {resolved.name} is a {resolved.format} folder"
    elif backend == "vllm":
        problem = _vllm_problem()
        if problem is None and resolved.format == "gguf":
            problem = "LMFast serves GGUF files with llama.cpp, not vLLM"
    if problem is not None:
        fits = ", ".join(fitting_backends(resolved))
        raise BackendError(
            f"backend={backend!r} cannot run {resolved.name}: {problem}. "
            f"Backends that fit this model here: {fits}."
        )
