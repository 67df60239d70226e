"""`export`: a model (adapter, Hugging Face model, GGUF, alias) in another format without
quantizing it: float GGUF for llama.cpp / Ollama, merged safetensors, or ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from lmfast.artifacts import ArtifactStore
from lmfast.progress import ProgressFn, no_progress

ExportFormat = Literal["gguf", "safetensors", "onnx"]


class ExportRequest(BaseModel):
    model: str = Field(description="Adapter, model artifact, Hugging Face folder, .gguf or alias.")
    format: ExportFormat = Field("gguf", description="gguf, safetensors (merged) or onnx.")
    dtype: Literal["f32", "f16", "bf16"] | None = Field(
        None, description="Weights: f32, f16 or bf16 (default f16; onnx is f32 only)."
    )
    name: str | None = Field(None, max_length=200, description="Name for the artifact.")

    @model_validator(mode="after")
    def _dtype_for_format(self) -> ExportRequest:
        if self.format == "onnx" and self.dtype not in (None, "f32"):
            raise ValueError(f"dtype: {self.dtype!r} is not available for onnx; allowed: f32")
        if self.dtype is None:
            self.dtype = "f32" if self.format == "onnx" else "f16"
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
        art = float_gguf(source, store, request.dtype or "f16", request.name, progress)
        file = art.path / art.manifest.extra["file"]
        progress(3, 3, f"saved {art.id}")
        return ExportResult(
            artifact_id=art.id, path=str(file), format="gguf", bytes=file.stat().st_size,
            lineage=[*source.lineage, art.id], details=art.manifest.extra,
        )  # fmt: skip
    if request.format == "safetensors":
        # The convert capability already loads any model in a dtype and saves it as an artifact.
        from lmfast.convert import ConvertRequest, convert_to_hf

        dtype = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[request.dtype or "f16"]
        converted = convert_to_hf(
            ConvertRequest(model=source.parent, dtype=dtype, name=request.name),  # type: ignore[arg-type]
            store=store,
        )
        folder = Path(converted.path)
        progress(3, 3, f"saved {converted.artifact_id}")
        return ExportResult(
            artifact_id=converted.artifact_id, path=converted.path, format="safetensors",
            bytes=_folder_bytes(folder), lineage=[*source.lineage, converted.artifact_id],
            details={"parameters": converted.parameters, "type": request.dtype},
        )  # fmt: skip
    from lmfast.extras import require

    require("onnx", "format='onnx'")
    from lmfast.export.onnx_export import export_onnx

    with store.create(
        "export",
        name=request.name or f"{source.name} (onnx)",
        parents=[source.parent],
        config={"step": "onnx", **request.model_dump(exclude={"name", "model"})},
    ) as draft:
        details = export_onnx(source.folder, draft.path)
        size = _folder_bytes(draft.path)
        draft.extra = {"format": "onnx", "type": "f32", "bytes": size,
                       "default_system": source.default_system, **details}  # fmt: skip
    assert draft.artifact is not None
    progress(3, 3, f"saved {draft.artifact.id}")
    return ExportResult(
        artifact_id=draft.artifact.id, path=str(draft.artifact.path), format="onnx",
        bytes=size, lineage=[*source.lineage, draft.artifact.id], details=details,
    )  # fmt: skip


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
