"""Long work from an MCP tool: submit the request as a job, then hand back its id or follow
it to the end, relaying progress to the client as notifications."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from lmfast.jobs.store import JobStatus

# Set while a tasks-capable client's tool call runs (mcp_server/tasks.py): `start_job` records
# the job it submitted here and returns at once instead of following it (`wait` is moot).
_task_jobs: ContextVar[list[str] | None] = ContextVar("lmfast_task_jobs", default=None)


@contextmanager
def collect_task_jobs() -> Iterator[list[str]]:
    """Within this block, job tools start their job and report its id here."""
    started: list[str] = []
    token = _task_jobs.set(started)
    try:
        yield started
    finally:
        _task_jobs.reset(token)


class JobOutcome(BaseModel):
    """A job handle, and its result once it has one."""

    job_id: str = Field(description="Poll with job_status / job_result, stop with cancel_job.")
    status: JobStatus = Field(description="queued, running, succeeded, failed or cancelled.")
    result: dict[str, Any] | None = Field(None, description="The capability's result.")
    error: str | None = Field(None, description="Why it failed or stopped.")


async def follow(job_id: str, ctx: Context | None) -> JobOutcome:
    """Wait for a job, relaying its progress to the client as notifications."""
    from lmfast.jobs import JobStore

    store = JobStore()
    last: tuple[float, str] | None = None
    relayed = 0
    while True:
        info = await anyio.to_thread.run_sync(store.get, job_id)
        if ctx is not None:  # the plan and warnings reach the client even between polls
            for note in info.notes[relayed:]:
                if note != info.message:
                    await ctx.report_progress(info.step, info.total, note)
            relayed = len(info.notes)
        if ctx is not None and (info.step, info.message) != last:
            last = (info.step, info.message)
            await ctx.report_progress(info.step, info.total, info.message or info.status)
        if info.done:
            result = await anyio.to_thread.run_sync(store.result, job_id)
            return JobOutcome(job_id=job_id, status=info.status, result=result, error=info.error)
        await anyio.sleep(0.2)


async def start_job(kind: str, request: BaseModel, wait: bool, ctx: Context | None) -> JobOutcome:
    from lmfast.mcp_server.confirm import confirm

    from lmfast.jobs import submit

    await confirm(kind, request, ctx)  # a long, too big or destructive job asks first
    job_id = await anyio.to_thread.run_sync(submit, kind, request)
    if (sink := _task_jobs.get()) is not None:  # the call becomes a task: the client polls it
        sink.append(job_id)
        return JobOutcome(job_id=job_id, status="queued")
    if not wait:
        return JobOutcome(job_id=job_id, status="queued")
    return await follow(job_id, ctx)
