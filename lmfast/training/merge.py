"""Fold a LoRA adapter into its base model: a full Hugging Face model artifact (safetensors,
tokenizer and chat template) that any engine, evaluation or export path accepts."""

from __future__ import annotations

from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore
from lmfast.loading import Dtype
from lmfast.progress import ProgressFn, no_progress


class MergeRequest(BaseModel):
    adapter: str = Field(description="Adapter artifact id or folder.")
    dtype: Dtype = Field("auto", description="Weight dtype of the merged model ('auto': float32).")
    name: str | None = Field(None, max_length=200, description="Name for the model artifact.")


class MergeResult(BaseModel):
    artifact_id: str
    path: str
    base_model: str
    parameters: int


def merge_adapter(
    request: MergeRequest, progress: ProgressFn = no_progress, store: ArtifactStore | None = None
) -> MergeResult:
    import json

    from lmfast.errors import ModelNotFoundError
    from lmfast.loading import load_transformers, save_transformers
    from lmfast.registry import resolve_model

    store = store or ArtifactStore()
    progress(0, 3, f"resolving {request.adapter}")
    resolved = resolve_model(request.adapter, store=store)
    if resolved.format != "adapter":
        raise ModelNotFoundError(
            f"adapter: {request.adapter!r} is a {resolved.format} model, not a LoRA adapter"
        )
    base = json.loads((resolved.path / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ]
    progress(1, 3, f"loading {base} with the adapter")
    model, tokenizer = load_transformers(resolved, dtype=request.dtype)
    merged = model.merge_and_unload()
    progress(2, 3, "writing the merged model")
    with store.create(
        "model",
        name=request.name or f"{resolved.name} merged",
        parents=[resolved.artifact_id or str(resolved.path)],
        config=request.model_dump(),
    ) as draft:
        save_transformers(merged, tokenizer, draft.path)
        params = sum(p.numel() for p in merged.parameters())
        draft.extra = {"base_model": base, "parameters": params}
    assert draft.artifact is not None
    progress(3, 3, f"saved {draft.artifact.id}")
    return MergeResult(
        artifact_id=draft.artifact.id, path=str(draft.artifact.path), base_model=base,
        parameters=params,
    )  # fmt: skip
