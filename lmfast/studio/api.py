"""The JSON API behind the pages: jobs (start, follow, cancel, log) and artifact files. The
same job store as `lmfast jobs` and MCP's job tools, so a job is visible from every face."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

from lmfast.jobs import JobNotFoundError, JobStore, cancel, submit
from lmfast.studio.forms import form_errors
from lmfast.studio.rendering import artifact_or_404

router = APIRouter(prefix="/api")
LOG_TAIL = 64_000  # characters of a job's log shown on its page
POLL_S = 0.4


def start_job(
    kind: str, request: BaseModel | dict[str, Any], recipe_keys: tuple[str, ...] = ()
) -> JSONResponse:
    """Validate and submit; a refusal comes back as field messages for the form."""
    try:
        job_id = submit(kind, request)
    except Exception as e:
        raise form_errors(e, recipe_keys) from None
    return JSONResponse({"job_id": job_id, "url": f"/jobs/{job_id}"}, 202)


def _job(job_id: str, store: JobStore | None = None) -> dict[str, Any]:
    store = store or JobStore()
    try:
        info = store.get(job_id)
    except JobNotFoundError as e:
        raise HTTPException(404, str(e)) from None
    out = info.model_dump(mode="json")
    out["result"] = store.result(job_id) if info.status == "succeeded" else None
    return out


@router.get("/jobs")
async def list_jobs(status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    jobs = await asyncio.to_thread(JobStore().list, status, min(max(limit, 1), 500))
    return [j.model_dump(mode="json") for j in jobs]


@router.get("/jobs/{job_id}")
async def job(job_id: str) -> dict[str, Any]:
    return await asyncio.to_thread(_job, job_id)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str) -> dict[str, Any]:
    await asyncio.to_thread(_job, job_id)  # 404 first
    info = await asyncio.to_thread(cancel, job_id)
    return info.model_dump(mode="json")


@router.post("/jobs/{job_id}/again")
async def run_again(job_id: str) -> JSONResponse:
    """The same request as a new job: a training run resumes from its last complete
    checkpoint (the run folder is keyed by the recipe and the data), other work starts over."""
    await asyncio.to_thread(_job, job_id)
    kind, request = await asyncio.to_thread(JobStore().request, job_id)
    return start_job(kind, request)


@router.get("/jobs/{job_id}/log")
async def job_log(job_id: str) -> PlainTextResponse:
    await asyncio.to_thread(_job, job_id)
    path = JobStore().logs / f"{job_id}.log"
    text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    return PlainTextResponse(text[-LOG_TAIL:])


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, after: int = 0) -> EventSourceResponse:
    """Server-sent events: every kept progress report after `after` (the whole history on a
    fresh page), then each new one and each change of the job's state, until it ends."""
    store = JobStore()  # one for the whole stream: it is polled several times a second
    await asyncio.to_thread(_job, job_id, store)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        seq, seen = after, None
        while True:
            events = await asyncio.to_thread(store.events, job_id, seq)
            for ev in events:
                seq = ev.seq
                yield {"event": "progress", "id": str(seq), "data": ev.model_dump_json()}
            state = await asyncio.to_thread(_job, job_id, store)
            if state["updated_at"] != seen:
                seen = state["updated_at"]
                yield {"event": "state", "id": str(seq), "data": json.dumps(state)}
            if state["status"] in ("succeeded", "failed", "cancelled") and not events:
                yield {"event": "end", "data": state["status"]}
                return
            await asyncio.sleep(POLL_S)

    return EventSourceResponse(stream(), ping=10)


@router.get("/artifacts/{art_id}/files/{name:path}")
async def artifact_file(art_id: str, name: str) -> FileResponse:
    """A file inside an artifact's folder (plots, GGUF, Modelfile); nothing outside it."""
    folder = Path(artifact_or_404(art_id).path).resolve()
    path = (folder / name).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise HTTPException(404, f"{art_id} has no file {name!r}")
    return FileResponse(path, filename=path.name if path.suffix != ".png" else None)
