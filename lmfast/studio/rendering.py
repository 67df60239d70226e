"""Page rendering shared by every page: the templates, the navigation bar, the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from lmfast.artifacts import Artifact, ArtifactStore
from lmfast.errors import ArtifactError
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


def artifact_or_404(art_id: str) -> Artifact:
    """The artifact a page shows; a missing one is the page's 404, with the store's reason."""
    try:
        return ArtifactStore().get(art_id)
    except ArtifactError as e:
        raise HTTPException(404, str(e)) from None


def jsonl_head(path: Path, limit: int) -> list[dict[str, Any]]:
    """The first `limit` rows of a JSONL table an artifact keeps (none when it has none),
    read without loading the rest."""
    import json

    rows: list[dict[str, Any]] = []
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                if len(rows) >= limit:
                    break
                if line.strip():
                    rows.append(json.loads(line))
    return rows
