"""`quantize`: from any model reference (adapter, Hugging Face model, GGUF, alias) to a small
model in one call. GGUF types go through llama.cpp's quantizer (with a calibrated
mixed-precision plan for type "mixed"); int8 / int4 stay in PyTorch (torchao on CPU,
bitsandbytes on CUDA). Every stage is an artifact linked to its parent:
adapter -> merged model -> f16 GGUF -> quantized GGUF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from lmfast.artifacts import ArtifactStore
from lmfast.export.llama_quantize import GGUF_TYPES
from lmfast.progress import ProgressFn, no_progress

TORCH_TYPES = ("int8", "int4")
ALL_TYPES = (*GGUF_TYPES, "mixed", *TORCH_TYPES)


class QuantizeRequest(BaseModel):
    model: str = Field(description="Adapter, model artifact, Hugging Face folder, .gguf or alias.")
    type: str = Field(
        "q4_k_m",
        description="GGUF type (q8_0, q6_k, q5_k_m, q4_k_m, q4_0, ...), 'mixed' (calibrated "
        "per-tensor types within a size budget) or int8 / int4 (PyTorch weight-only).",
    )
    base: str = Field(
        "q4_k_m", description="mixed: llama.cpp mix whose size is the default budget."
    )
    size_budget_mb: float | None = Field(
        None, gt=0, description="mixed: tensor data budget in MB (default: the base mix's size)."
    )
    calibration: str | None = Field(
        None, description="mixed: text / JSONL file to measure sensitivity on (default: built-in)."
    )
    calibration_tokens: int = Field(512, ge=128, le=65536, description="mixed: tokens measured.")
    measure: bool = Field(True, description="Measure perplexity and decode speed of the result.")
    eval_text: str | None = Field(
        None, description="Held-out text file for the perplexity (default: the 'prose' sample)."
    )
    name: str | None = Field(None, max_length=200, description="Name for the artifact.")

    @field_validator("type", "base")
    @classmethod
    def _known(cls, value: str, info: Any) -> str:
        key = value.lower()
        allowed = ALL_TYPES if info.field_name == "type" else tuple(GGUF_TYPES)
        if key not in allowed:
            raise ValueError(f"{info.field_name}: {value!r} is not one of {', '.join(allowed)}")
        return key

    @field_validator("calibration", "eval_text")
    @classmethod
    def _is_file(cls, value: str | None, info: Any) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"{info.field_name}: {value!r} is not a file")
        return value


class QuantizeResult(BaseModel):
    artifact_id: str
    path: str = Field(description="The quantized file (GGUF) or folder (int8 / int4).")
    type: str
    bytes: int
    size_vs_f16: float | None = Field(description="Size as a fraction of the f16 export.")
    lineage: list[str] = Field(description="Artifacts made on the way, oldest first.")
    tensor_types: dict[str, int] = Field(default_factory=dict, description="Tensors per type.")
    metrics: dict[str, float] = Field(default_factory=dict)
    modelfile: str | None = None
    plan: str | None = Field(None, description="mixed: per-tensor decisions (JSON) and plot.")


def quantize(
    request: QuantizeRequest,
    progress: ProgressFn = no_progress,
    store: ArtifactStore | None = None,
) -> QuantizeResult:
    from lmfast.export.stages import hf_source

    store = store or ArtifactStore()
    progress(0, 5, f"resolving {request.model}")
    source = hf_source(request.model, store, progress)
    if request.type in TORCH_TYPES:
        from lmfast.export.torch_quant import quantize_torch

        artifact, size = quantize_torch(request, source, store, progress)
        return QuantizeResult(
            artifact_id=artifact.id, path=str(artifact.path), type=request.type, bytes=size,
            size_vs_f16=None, lineage=[*source.lineage, artifact.id],
            metrics=artifact.manifest.metrics,
        )  # fmt: skip
    return _quantize_gguf(request, source, store, progress)


def _calibration_text(path: str | None) -> str:
    from lmfast.evaluation.tasks import load_task

    if path is not None:
        return _text_of(Path(path).expanduser())
    # Built-in: the reading and definition samples, not the prose sample used for measuring.
    parts = []
    for name in ("reading", "definitions"):
        for e in load_task(name).examples:
            parts.append(" ".join(x for x in (e.context, e.prompt, e.question, e.answer) if x))
    return "\n\n".join(p for p in parts if p)


def _text_of(path: Path) -> str:
    import json

    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return "\n\n".join(str(r.get("text", "")) for r in rows)
    return path.read_text(encoding="utf-8")


def _quantize_gguf(
    request: QuantizeRequest, source: Any, store: ArtifactStore, progress: ProgressFn
) -> QuantizeResult:
    import tempfile
    from collections import Counter

    from lmfast.export.llama_quantize import quantize_gguf, tensor_bytes, tensor_types
    from lmfast.export.mixed import plan_mixed, plot_plan, save_plan
    from lmfast.export.modelfile import write_modelfile
    from lmfast.export.quality import measure_quality
    from lmfast.export.stages import float_gguf, slug
    from lmfast.gguf_meta import read_gguf

    progress(1, 5, "converting to f16 GGUF")
    f16 = float_gguf(source, store, "f16")
    f16_file = f16.path / f16.manifest.extra["file"]
    lineage = [*source.lineage, f16.id]
    with store.create(
        "export",
        name=request.name or f"{source.name} ({request.type})",
        parents=[f16.id],
        config={"step": "quantize", **request.model_dump(exclude={"name", "model"})},
    ) as draft:
        file = f"{slug(source.name)}.{request.type}.gguf"
        out = draft.path / file
        plan = None
        if request.type == "mixed":
            with tempfile.TemporaryDirectory(prefix="lmfast-mixed-", dir=draft.path) as tmp:
                base = Path(tmp) / "base.gguf"
                quantize_gguf(f16_file, base, request.base)
                budget = (
                    int(request.size_budget_mb * 1e6)
                    if request.size_budget_mb
                    else sum(tensor_bytes(base).values())
                )
                progress(2, 5, "measuring tensor sensitivity")
                plan = plan_mixed(
                    source.folder, f16_file, _calibration_text(request.calibration), budget,
                    Path(tmp), base=request.base, calibration_tokens=request.calibration_tokens,
                    progress=progress,
                )  # fmt: skip
            progress(3, 5, "llama.cpp: applying the plan")
            quantize_gguf(f16_file, out, request.base, overrides=plan.overrides)
            save_plan(plan, draft.path / "plan.json")
            plot_plan(plan, draft.path / "plan.png")
        else:
            progress(3, 5, f"llama.cpp: quantizing to {request.type}")
            quantize_gguf(f16_file, out, request.type)
        write_modelfile(draft.path, file, read_gguf(out).chat_template, source.default_system)
        counts = dict(Counter(tensor_types(out).values()))
        size = out.stat().st_size
        if request.measure:
            progress(4, 5, "measuring perplexity and decode speed")
            draft.metrics = measure_quality(out, f16_file, request.eval_text, "llamacpp", "f16")
        draft.metrics["size_vs_f16"] = round(size / f16_file.stat().st_size, 4)
        draft.extra = {
            "format": "gguf", "type": request.type, "bytes": size, "file": file,
            "tensor_types": counts, "default_system": source.default_system,
            "lineage": lineage,
        }  # fmt: skip
    assert draft.artifact is not None
    progress(5, 5, f"saved {draft.artifact.id}")
    folder = draft.artifact.path
    return QuantizeResult(
        artifact_id=draft.artifact.id, path=str(folder / file), type=request.type, bytes=size,
        size_vs_f16=draft.metrics["size_vs_f16"], lineage=[*lineage, draft.artifact.id],
        tensor_types=counts, metrics=draft.metrics, modelfile=str(folder / "Modelfile"),
        plan=str(folder / "plan.json") if plan else None,
    )  # fmt: skip
