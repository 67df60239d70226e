"""Page rendering shared by every page: the templates, the navigation bar, the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from lmfast.studio.access import StudioSettings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))

# (path, label) of the navigation bar, in lifecycle order; each page is a module in pages/.
NAV = [
    ("/data", "Data"),
    ("/train", "Train"),
    ("/evaluate", "Evaluate"),
    ("/export", "Export"),
    ("/chat", "Chat"),
    ("/lineage", "Lineage"),
    ("/jobs", "Jobs"),
]


def render(request: Request, page: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, page, {"nav": NAV, "path": request.url.path, **context}, status_code=status_code
    )


def settings_of(request: Request) -> StudioSettings:
    return request.app.state.studio  # type: ignore[no-any-return]


def suggestions() -> dict[str, list[dict[str, str]]]:
    """Models and datasets the inputs offer (aliases and artifacts)."""
    from lmfast.artifacts import ArtifactStore
    from lmfast.registry import ALIASES

    store = ArtifactStore()
    models = [{"value": a, "label": "alias"} for a in ALIASES]
    models += [
        {"value": a.id, "label": a.manifest.name or a.manifest.kind}
        for kind in ("model", "adapter")
        for a in store.list(kind)  # type: ignore[arg-type]
    ]
    datasets = [{"value": a.id, "label": a.manifest.name or ""} for a in store.list("dataset")]
    return {"models": models, "datasets": datasets}
