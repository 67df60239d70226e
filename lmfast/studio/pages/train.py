"""Train: pick a model, a dataset and a method (SFT, continued pretraining, pretraining,
GRPO, distillation, ORPO / DPO), see the hardware plan with its estimates, start it as a job;
the job page follows it live. Every field, default and bound comes from the request models."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from lmfast.artifacts import ArtifactStore
from lmfast.studio.api import start_job
from lmfast.studio.forms import FormErrors, form_errors, recipe_fields, request_fields
from lmfast.studio.rendering import render, settings_of, suggestions

router = APIRouter()

# method -> (job kind, the request's own method field); the others are recipe methods.
METHODS: dict[str, tuple[str, str | None]] = {
    "sft": ("fine_tune", None),
    "cpt": ("fine_tune", None),
    "pretrain": ("fine_tune", None),
    "grpo": ("fine_tune", None),
    "distill": ("distill", None),
    "orpo": ("align_orpo", "orpo"),
    "dpo": ("align_orpo", "dpo"),
}
COMMON = [
    "training.max_steps", "training.epochs", "training.learning_rate",
    "training.max_seq_length", "training.lora.enabled", "training.lora.rank",
    "data.validation_split",
]  # fmt: skip
DISTILL = ["teacher", "student_layers", "mode", "alpha", "temperature", "student_mlp_ratio"]
PATH_KEYS = ("data.path", "data.sources", "model.reference", "model.tokenizer", "model.template")
RECIPE_KEYS = ("model.reference", "data.path", "model.template", "training.grpo.rewards", *COMMON)


@router.get("/train", response_class=HTMLResponse)
async def train_page(request: Request, data: str | None = None) -> HTMLResponse:
    from lmfast.distillation.distill import DistillRequest
    from lmfast.training.templates import builtin_templates

    core = recipe_fields(["model.reference", "data.path"], {"model.reference": "model",
                                                            "data.path": "data"})  # fmt: skip
    core[0].list, core[1].list = "models", "datasets"
    for f in core:
        f.name = f"recipe:{f.name}"
    common = recipe_fields(
        COMMON, {"training.lora.enabled": "LoRA", "training.lora.rank": "LoRA rank"}
    )
    for f in common:
        f.name = f"recipe:{f.name}"
    distill = request_fields(DistillRequest, DISTILL)
    distill[1].kind = "text"  # 'every_other' or a list of layer indices
    distill[1].help += " Give every_other or indices such as 0,2,4."
    offered = await asyncio.to_thread(suggestions)
    return render(
        request, "train.html", methods=list(METHODS), core=core, common=common,
        distill=distill, templates=list(builtin_templates()), suggestions=offered,
        data=data or "",
    )  # fmt: skip


def _build(body: dict[str, Any], roots: Any) -> tuple[str, BaseModel]:
    """The job kind and its request, from the form: recipe keys arrive as `recipe:KEY`."""
    from lmfast.config import load_config
    from lmfast.mcp_server.paths import confine_input, confine_model_reference

    body = dict(body)
    method = body.pop("method", "sft")
    if method not in METHODS:
        raise FormErrors([("method", f"method: {method!r} is not one of {', '.join(METHODS)}")])
    kind, align_method = METHODS[method]
    values = {k.removeprefix("recipe:"): body.pop(k) for k in list(body) if k.startswith("recipe:")}
    data = values.get("data.path")
    if data and not ArtifactStore().exists(data):
        values["data.path"] = confine_input(data, "data", roots)
    if values.get("model.reference"):
        values["model.reference"] = confine_model_reference(
            values["model.reference"], "model", roots
        )
    if kind == "fine_tune":
        values["training.method"] = method
    overrides = [line.strip() for line in body.pop("overrides", []) if line.strip()]
    for line in overrides:
        key = line.partition("=")[0].strip()
        if not key.startswith(("training.", "data.", "model.")) or key in PATH_KEYS:
            raise FormErrors([("overrides", f"overrides: {key!r}: only training.*, data.* and "
                                            "model.* settings, and not paths (use the fields "
                                            "above)")])  # fmt: skip
    cfg = load_config(None, overrides, values=values)
    if kind == "fine_tune":
        from lmfast.training.finetune import FineTuneRequest

        return kind, FineTuneRequest(config=cfg, **body)
    if kind == "distill":
        from lmfast.distillation.distill import DistillRequest

        layers = body.get("student_layers")
        if isinstance(layers, str) and layers != "every_other":
            try:
                body["student_layers"] = [int(x) for x in layers.replace(" ", "").split(",") if x]
            except ValueError:
                raise FormErrors(
                    [
                        (
                            "student_layers",
                            "student_layers: every_other or layer "
                            f"indices such as 0,2,4 (got {layers!r})",
                        )
                    ]
                ) from None
        if body.get("teacher"):
            body["teacher"] = confine_model_reference(body["teacher"], "teacher", roots)
        return kind, DistillRequest(config=cfg, **body)
    from lmfast.alignment.align import AlignRequest

    return kind, AlignRequest(config=cfg, method=align_method, **body)


@router.post("/api/train")
async def start(request: Request, body: dict[str, Any]) -> JSONResponse:
    try:
        kind, req = _build(body, settings_of(request).roots)
    except Exception as e:
        raise form_errors(e, RECIPE_KEYS) from None
    return start_job(kind, req, RECIPE_KEYS)


@router.post("/api/train/plan")
async def plan(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The hardware plan with its estimates, before anything starts (prepares the data once,
    cached for the run, as `lmfast plan --data` does)."""
    try:
        kind, req = _build(body, settings_of(request).roots)
        found = await asyncio.to_thread(_plan, kind, req)
    except Exception as e:
        raise form_errors(e, RECIPE_KEYS) from None
    return found


def _plan(kind: str, req: Any) -> dict[str, Any]:
    from lmfast.hardware import detect_hardware
    from lmfast.plan import plan_training
    from lmfast.registry import model_spec

    if kind == "fine_tune":
        from lmfast.training.finetune import plan_run

        plan = plan_run(req).plan
    else:
        cfg = req.config
        plan = plan_training(cfg, detect_hardware(), model_spec(cfg.model.reference))
    return {"plan": plan.model_dump(mode="json"), "lines": plan.notes_for_people()}
