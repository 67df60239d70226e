"""Data: upload files or name them inside an allowed folder, run prep with a filter preset,
then read the report (kept, dropped by reason, duplicate clusters, lengths and tokens) and
ask why any document was kept or dropped (`explain_document`)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from lmfast.artifacts import ArtifactStore
from lmfast.data.settings import FilterSettings, PrepRequest
from lmfast.home import lmfast_home
from lmfast.studio.api import start_job
from lmfast.studio.forms import FormErrors, form_errors, request_fields
from lmfast.studio.rendering import artifact_or_404, jsonl_head, render, settings_of

router = APIRouter()
PRESETS = ["auto", "web", "document", "minimal", "off"]
SHOWN = ["format", "text_field", "tokenizer", "seq_len", "pack", "strip_markup", "name"]
ROWS_SHOWN = 50  # rows of drops / duplicates listed on the report page
UPLOAD_LIMIT = 2 * 1024**3


def uploads_folder() -> Path:
    folder = lmfast_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@router.get("/data", response_class=HTMLResponse)
async def data_page(request: Request) -> HTMLResponse:
    datasets = await asyncio.to_thread(ArtifactStore().list, "dataset")
    uploads = sorted(p.name for p in uploads_folder().iterdir() if not p.name.startswith("."))
    return render(
        request, "data.html", fields=request_fields(PrepRequest, SHOWN), presets=PRESETS,
        datasets=datasets, uploads=uploads, upload_dir=str(uploads_folder()),
    )  # fmt: skip


@router.post("/api/data/upload")
async def upload(request: Request, name: str) -> JSONResponse:
    """The request body is the file; it lands in LMFAST_HOME/uploads whole or not at all."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name).lstrip(".")
    if not clean:
        raise FormErrors([("file", f"file: {name!r} is not a usable file name")])
    final = uploads_folder() / clean
    tmp = final.with_name(f".{clean}.{secrets.token_hex(4)}.part")
    size = 0
    try:
        with open(tmp, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > UPLOAD_LIMIT:
                    raise FormErrors([("file", f"file: larger than {UPLOAD_LIMIT // 1024**3} GB")])
                out.write(chunk)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return JSONResponse({"path": str(final), "bytes": size})


@router.post("/api/data/prep")
async def prep(request: Request, body: dict[str, Any]) -> JSONResponse:
    from lmfast.mcp_server.paths import confine_input

    roots = settings_of(request).roots
    body = dict(body)
    preset = body.pop("preset", "auto")
    try:
        inputs = [confine_input(p, "inputs", roots) for p in body.pop("inputs", [])]
        if not inputs:
            raise FormErrors([("inputs", "inputs: give at least one file, folder or glob")])
        filters = FilterSettings.preset(preset)
    except ValueError as e:
        raise FormErrors([("preset", f"preset: {e}")]) from None
    except Exception as e:
        errors = form_errors(e)
        raise FormErrors([("inputs", m) for _, m in errors.problems]) from None
    if filters is not None:
        body["filters"] = filters.model_dump()
    try:
        req = PrepRequest.model_validate({**body, "inputs": inputs})
    except Exception as e:
        raise form_errors(e) from None
    return start_job("prep_dataset", req)


@router.get("/data/{art_id}", response_class=HTMLResponse)
async def dataset_page(request: Request, art_id: str) -> HTMLResponse:
    art = artifact_or_404(art_id)
    if art.manifest.kind != "dataset":
        raise HTTPException(404, f"{art_id} is a {art.manifest.kind}, not a dataset")
    folder = Path(art.path)
    report_file = folder / "report.json"
    report = json.loads(report_file.read_text()) if report_file.is_file() else {}
    histogram = report.get("length_histogram") or {}
    return render(
        request, "dataset.html", art=art, report=report,
        kept_pct=100 * report.get("documents_out", 0) / max(report.get("documents_in", 0), 1),
        histogram=histogram, hist_max=max(histogram.values() or [1]),
        drops=jsonl_head(folder / "drops.jsonl", ROWS_SHOWN),
        duplicates=jsonl_head(folder / "duplicates.jsonl", ROWS_SHOWN),
    )  # fmt: skip


@router.post("/api/data/{art_id}/explain")
async def explain(art_id: str, body: dict[str, Any]) -> dict[str, Any]:
    from lmfast.data.audit import explain_document

    doc = str(body.get("document") or "").strip()
    if not doc:
        raise FormErrors([("document", "document: give a document id or file:line")])
    try:
        found = await asyncio.to_thread(explain_document, doc, art_id)
    except Exception as e:
        raise form_errors(e) from None
    return found.model_dump(mode="json")
