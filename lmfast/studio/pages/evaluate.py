"""Evaluate: choose models and tasks, run `evaluate` as a job, then read the comparison
table, the per-task and calibration plots and the disagreements, example by example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from lmfast.artifacts import ArtifactStore
from lmfast.evaluation.evaluate import EvaluateRequest
from lmfast.studio.api import start_job
from lmfast.studio.forms import form_errors, request_fields
from lmfast.studio.rendering import (
    artifact_or_404,
    jsonl_head,
    render,
    settings_of,
    suggestions,
)

router = APIRouter()
SHOWN = ["limit", "backend", "batch_size", "efficiency", "name"]
DISAGREEMENTS_SHOWN = 100


def _sample_tasks() -> list[str]:
    folder = Path(__file__).resolve().parents[2] / "evaluation" / "samples"
    return sorted(p.stem for p in folder.glob("*.yaml"))


@router.get("/evaluate", response_class=HTMLResponse)
async def evaluate_page(request: Request, model: str | None = None) -> HTMLResponse:
    reports = ArtifactStore().list("report")
    return render(
        request, "evaluate.html", fields=request_fields(EvaluateRequest, SHOWN),
        tasks=_sample_tasks(), suggestions=suggestions(), model=model or "",
        reports=[r for r in reports if (Path(r.path) / "results.json").is_file()],
    )  # fmt: skip


@router.post("/api/evaluate")
async def start(request: Request, body: dict[str, Any]) -> JSONResponse:
    from lmfast.mcp_server.paths import confine_input, confine_model_reference

    roots = settings_of(request).roots
    try:
        models = [confine_model_reference(m, "models", roots) for m in body.get("models", [])]
        samples = set(_sample_tasks())
        tasks = [t if t in samples else confine_input(t, "tasks", roots)
                 for t in body.get("tasks", [])]  # fmt: skip
        req = EvaluateRequest.model_validate({**body, "models": models, "tasks": tasks})
    except Exception as e:
        raise form_errors(e) from None
    return start_job("evaluate", req)


@router.get("/evaluate/{art_id}", response_class=HTMLResponse)
async def report_page(request: Request, art_id: str) -> HTMLResponse:
    art = artifact_or_404(art_id)
    folder = Path(art.path)
    if not (folder / "results.json").is_file():
        raise HTTPException(404, f"{art_id} is not an evaluation report")
    models = json.loads((folder / "results.json").read_text())["models"]
    task_names: list[str] = []
    for m in models:
        for t in m.get("tasks", []):
            if t["task"] not in task_names:
                task_names.append(t["task"])
    plots = [p for p in ("tasks.png", "calibration.png") if (folder / p).is_file()]
    return render(
        request, "report.html", art=art, models=models, task_names=task_names, plots=plots,
        disagreements=jsonl_head(folder / "disagreements.jsonl", DISAGREEMENTS_SHOWN),
    )  # fmt: skip
