"""Export: quantize (GGUF types, calibrated mixed precision, int8 / int4) or export (float
GGUF, merged safetensors, ONNX) as jobs; the result page shows size, perplexity against f16
and decode speed, with the GGUF and its Ollama Modelfile to download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from lmfast.artifacts import ArtifactStore
from lmfast.export.export import ExportRequest
from lmfast.export.quantize import QuantizeRequest
from lmfast.studio.api import start_job
from lmfast.studio.forms import form_errors, request_fields
from lmfast.studio.rendering import artifact_or_404, render, settings_of, suggestions

router = APIRouter()
QUANTIZE_SHOWN = ["type", "base", "size_budget_mb", "calibration_tokens", "measure", "name"]
EXPORT_SHOWN = ["format", "dtype", "name"]


@router.get("/export", response_class=HTMLResponse)
async def export_page(request: Request, model: str | None = None) -> HTMLResponse:
    from lmfast.export.quantize import ALL_TYPES, GGUF_TYPES

    quantize = request_fields(QuantizeRequest, QUANTIZE_SHOWN)
    quantize[0].kind, quantize[0].choices = "select", list(ALL_TYPES)
    quantize[1].kind, quantize[1].choices = "select", list(GGUF_TYPES)
    exports = ArtifactStore().list("export")
    return render(
        request, "export.html", quantize=quantize, export=request_fields(ExportRequest,
        EXPORT_SHOWN), suggestions=suggestions(), model=model or "", exports=exports,
    )  # fmt: skip


def _start(kind: str, model_cls: Any, body: dict[str, Any], roots: Any) -> JSONResponse:
    from lmfast.mcp_server.paths import confine_model_reference

    try:
        if body.get("model"):
            body = {**body, "model": confine_model_reference(body["model"], "model", roots)}
        req = model_cls.model_validate(body)
    except Exception as e:
        raise form_errors(e) from None
    return start_job(kind, req)


@router.post("/api/quantize")
async def quantize(request: Request, body: dict[str, Any]) -> JSONResponse:
    return _start("quantize", QuantizeRequest, body, settings_of(request).roots)


@router.post("/api/export")
async def export(request: Request, body: dict[str, Any]) -> JSONResponse:
    return _start("export", ExportRequest, body, settings_of(request).roots)


@router.get("/export/{art_id}", response_class=HTMLResponse)
async def export_result(request: Request, art_id: str) -> HTMLResponse:
    art = artifact_or_404(art_id)
    folder = Path(art.path)
    files = sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"
    )  # fmt: skip
    return render(request, "export_result.html", art=art, files=files)
