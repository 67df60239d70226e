"""Jobs: every job of every face (CLI, MCP, Python, Studio) with status, progress, the live
run page (step, loss, learning rate, throughput, memory, sample answers), log and cancel."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from lmfast.jobs import JobNotFoundError, JobStore
from lmfast.studio.rendering import render

router = APIRouter()


@router.get("/jobs", response_class=HTMLResponse)
async def jobs_page(request: Request) -> HTMLResponse:
    return render(request, "jobs.html")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: str) -> HTMLResponse:
    try:
        info = await asyncio.to_thread(JobStore().get, job_id)
    except JobNotFoundError as e:
        raise HTTPException(404, str(e)) from None
    return render(request, "job.html", job=info)
