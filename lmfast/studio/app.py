"""The Studio app: pages, the small JSON API they call, access control and friendly errors.

Why its own process (`lmfast studio`) rather than a page of `lmfast serve`: the server is
built around one loaded model, its API key and its slots, while Studio runs jobs, loads any
model for the playground on demand and reads artifacts. Both sit on the same job store, so
nothing is lost by the split, and a crash of one never takes down the other.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmfast.studio.access import StudioAccess, StudioSettings
from lmfast.studio.forms import FormErrors, form_errors
from lmfast.studio.rendering import HERE, render

log = logging.getLogger("lmfast.studio")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/")


def page_modules() -> tuple[Any, ...]:
    """The page modules, each with its `router`."""
    from lmfast.studio.pages import chat, data, evaluate, export, jobs, lineage, train

    return (data, train, evaluate, export, chat, lineage, jobs)


def create_studio_app(settings: StudioSettings | None = None) -> FastAPI:
    from lmfast.studio.api import router as api_router

    settings = settings or StudioSettings()
    settings.check()
    app = FastAPI(title="LMFast Studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = settings
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(api_router)
    for page in page_modules():
        app.include_router(page.router)
    app.add_middleware(StudioAccess, token=settings.token)

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        from fastapi.responses import RedirectResponse

        return RedirectResponse("/jobs", status_code=303)

    def problem(request: Request, status: int, message: str) -> Response:
        if _wants_html(request):
            return render(request, "error.html", status_code=status, message=message)
        return JSONResponse({"errors": [{"field": None, "message": message}]}, status)

    @app.exception_handler(FormErrors)
    async def bad_form(request: Request, exc: FormErrors) -> Response:
        if _wants_html(request):
            return problem(request, 422, "; ".join(m for _, m in exc.problems))
        return JSONResponse(exc.as_json(), 422)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":  # loc is ("body", character offset)
            reason = (first.get("ctx") or {}).get("error", "JSON decode error")
            at = first.get("loc", (None, None))[-1]
            message = f"the request body is not valid JSON: {reason} at character {at}"
            return await bad_form(request, FormErrors([(None, message)]))
        problems = [
            (".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")),
             str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors()
        ]  # fmt: skip
        body = FormErrors([(f or None, f"{f}: {m}" if f else m) for f, m in problems])
        return await bad_form(request, body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Errors LMFast raises on purpose are for people; anything else is logged, and the
        # page says what failed without a traceback.
        errors = form_errors(exc)
        if errors.problems[0][1].startswith("unexpected"):
            log.exception("studio: %s %s failed", request.method, request.url.path)
            return problem(request, 500, errors.problems[0][1])
        return await bad_form(request, errors)

    return app


def run_studio(settings: StudioSettings) -> None:
    """Serve Studio until stopped, printing the address to open."""
    import uvicorn

    settings.check()
    app = create_studio_app(settings)
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{shown}:{settings.port}/"
    if settings.token:
        url += f"?token={settings.token}"
    print(f"LMFast Studio: open {url}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
