"""Turn any model reference into a trainable Hugging Face folder, stored as an artifact."""

from __future__ import annotations

from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore
from lmfast.config import DEFAULT_MODEL
from lmfast.loading import Dtype, load_transformers, save_transformers
from lmfast.progress import ProgressFn, no_progress
from lmfast.registry import resolve_model


class ConvertRequest(BaseModel):
    """Dequantize / copy a model into a Hugging Face safetensors folder."""

    model: str = Field(
        DEFAULT_MODEL, description="Model reference to convert (alias, .gguf, folder, hub id)."
    )
    dtype: Dtype = Field("bfloat16", description="Weight dtype to write ('auto': float32).")
    name: str | None = Field(
        None, max_length=200, description="Name recorded in the artifact manifest."
    )


class ConvertResult(BaseModel):
    artifact_id: str
    path: str
    parameters: int


def convert_to_hf(
    request: ConvertRequest,
    store: ArtifactStore | None = None,
    progress: ProgressFn = no_progress,
) -> ConvertResult:
    """Load with transformers (GGUF is dequantized) and save as a model artifact."""
    store = store or ArtifactStore()
    progress(0, 4, f"resolving {request.model}")
    resolved = resolve_model(request.model, store=store)
    progress(1, 4, f"loading {resolved.name} ({resolved.format}) into transformers")
    model, tokenizer = load_transformers(resolved, dtype=request.dtype)
    progress(2, 4, "writing safetensors")
    parent = resolved.artifact_id or resolved.hub_id or str(resolved.path)
    with store.create(
        "model",
        name=request.name or f"{resolved.name} ({request.dtype})",
        parents=[parent],
        config=request.model_dump(),
    ) as draft:
        save_transformers(model, tokenizer, draft.path)
        params = sum(p.numel() for p in model.parameters())
        draft.extra = {
            "source_format": resolved.format,
            "parameters": params,
            "default_system": resolved.default_system,
        }
        progress(3, 4, "recording the artifact")
    assert draft.artifact is not None
    progress(4, 4, f"saved {draft.artifact.id}")
    return ConvertResult(
        artifact_id=draft.artifact.id, path=str(draft.artifact.path), parameters=params
    )
