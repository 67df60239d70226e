"""`export`: a model (adapter, Hugging Face model, GGUF, alias) in another format without
quantizing it: float GGUF for llama.cpp / Ollama, merged safetensors, or ONNX."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from lmfast.artifacts import ArtifactStore
from lmfast.progress import ProgressFn, no_progress

ExportFormat = Literal["gguf", "safetensors", "onnx"]


class ExportRequest(BaseModel):
    model: str = Field(description="Adapter, model artifact, Hugging Face folder, .gguf or alias.")
    format: ExportFormat = Field("gguf", description="gguf, safetensors (merged) or onnx.")
    dtype: Literal["f32", "f16", "bf16"] = Field(
        "f16", description="Weight type of a gguf or safetensors export (onnx: always f32)."
    )
    name: str | None = Field(None, max_length=200, description="Name for the artifact.")

    @model_validator(mode="after")
    def _onnx_float32(self) -> ExportRequest:
        if self.format == "onnx" and self.dtype != "f32":
            self.dtype = "f32"
        return self


class ExportResult(BaseModel):
    artifact_id: str
    path: str
    format: ExportFormat
    bytes: int
    lineage: list[str]
    details: dict[str, object] = Field(default_factory=dict)


def export(
    request: ExportRequest, progress: ProgressFn = no_progress, store: ArtifactStore | None = None
) -> ExportResult:
    from lmfast.export.stages import float_gguf, hf_source

    store = store or ArtifactStore()
    progress(0, 3, f"resolving {request.model}")
    source = hf_source(request.model, store, progress)
    progress(1, 3, f"exporting to {request.format}")
    if request.format == "gguf":
        art = float_gguf(source, store, request.dtype, request.name, progress)
        file = art.path / art.manifest.extra["file"]
        progress(3, 3, f"saved {art.id}")
        return ExportResult(
            artifact_id=art.id, path=str(file), format="gguf", bytes=file.stat().st_size,
            lineage=[*source.lineage, art.id], details=art.manifest.extra,
        )  # fmt: skip
    with store.create(
        "export",
        name=request.name or f"{source.name} ({request.format})",
        parents=[source.parent],
        config={"step": request.format, **request.model_dump(exclude={"name", "model"})},
    ) as draft:
        if request.format == "onnx":
            from lmfast.export.onnx_export import export_onnx

            details = export_onnx(source.folder, draft.path)
        else:
            from lmfast.loading import load_transformers, save_transformers

            dtype = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[request.dtype]
            model, tokenizer = load_transformers(str(source.folder), dtype=dtype)  # type: ignore[arg-type]
            save_transformers(model, tokenizer, draft.path)
            details = {"parameters": sum(p.numel() for p in model.parameters())}
        size = sum(f.stat().st_size for f in draft.path.rglob("*") if f.is_file())
        draft.extra = {"format": request.format, "type": request.dtype, "bytes": size,
                       "default_system": source.default_system, **details}  # fmt: skip
    assert draft.artifact is not None
    progress(3, 3, f"saved {draft.artifact.id}")
    return ExportResult(
        artifact_id=draft.artifact.id, path=str(draft.artifact.path), format=request.format,
        bytes=size, lineage=[*source.lineage, draft.artifact.id], details=details,
    )  # fmt: skip
