"""The MCP tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663, 2026-07-28) over
LMFast's job store.

A client that declares the extension on its `tools/call` gets a task handle instead of a
job id from every job-running tool; the task id *is* the job id, so `tasks/get`,
`tasks/cancel` and the result read the SQLite job store and outlive the client and the
server. Clients without the extension keep the job id, `wait` and the job tools.

The Python SDK (2.3) has no tasks support of its own; its `Extension` API (new request
methods plus a `tools/call` interceptor) is exactly the hook this needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
from lmfast.mcp_server.jobs import JobOutcome, collect_task_jobs
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, CallToolRequestParams, CallToolResult, RequestParams
from pydantic import ConfigDict, Field

from lmfast.jobs.store import JobInfo, JobNotFoundError, JobStore

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
# Training jobs run for minutes to hours; polling faster than this only costs SQLite reads.
POLL_INTERVAL_MS = 1000


class TaskParams(RequestParams):
    model_config = ConfigDict(populate_by_name=True)
    task_id: str = Field(alias="taskId", min_length=1, max_length=200)


class UpdateTaskParams(TaskParams):
    input_responses: dict[str, Any] = Field(alias="inputResponses")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _status_message(info: JobInfo) -> str:
    if info.error:
        return info.error
    if info.status == "queued":
        return "queued"
    progress = f"{info.step:g}/{info.total:g}" if info.total else ""
    return " ".join(x for x in (progress, info.message) if x) or info.status


def detailed_task(store: JobStore, job_id: str) -> dict[str, Any]:
    """The spec's `DetailedTask` for a job: working, completed (with the tool's result, a
    failed job included, as `isError`), or cancelled."""
    from lmfast.mcp_server.links import outcome_result

    info = store.get(job_id)
    task: dict[str, Any] = {
        "taskId": info.id,
        "status": "working",
        "statusMessage": _status_message(info),
        "createdAt": _iso(info.created_at),
        "lastUpdatedAt": _iso(info.updated_at),
        # Jobs stay in the store once finished: no expiry to announce.
        "ttlMs": None,
        "pollIntervalMs": POLL_INTERVAL_MS,
    }
    if info.status == "cancelled":
        task["status"] = "cancelled"
    elif info.status in ("succeeded", "failed"):
        outcome = JobOutcome(
            job_id=info.id, status=info.status, result=store.result(job_id), error=info.error
        )
        task["status"] = "completed"
        task["result"] = outcome_result(outcome).model_dump(
            by_alias=True, mode="json", exclude_none=True
        )
    return task


def _client_declares_tasks(ctx: ServerRequestContext[Any, Any]) -> bool:
    capabilities = ctx.session.client_capabilities
    extensions = capabilities.extensions if capabilities else None
    return bool(extensions) and TASKS_EXTENSION in extensions


class JobTasks(Extension):
    """tools/call on a job tool -> `CreateTaskResult`; tasks/get, tasks/update, tasks/cancel
    over the job store."""

    identifier = TASKS_EXTENSION

    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("tasks/get", TaskParams, self._get),
            MethodBinding("tasks/update", UpdateTaskParams, self._update),
            MethodBinding("tasks/cancel", TaskParams, self._cancel),
        )

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        from lmfast.mcp_server.confirm import pending_question
        from lmfast.mcp_server.links import add_artifact_links

        questions: list[Any] = []
        asked = pending_question.set(questions)
        try:
            if _client_declares_tasks(ctx):
                with collect_task_jobs() as jobs:
                    result = await call_next(ctx)
            else:
                jobs, result = [], await call_next(ctx)
        finally:
            pending_question.reset(asked)
        if questions:  # a confirmation the client answers by calling again
            return questions[0]
        if not jobs or (isinstance(result, CallToolResult) and result.is_error):
            return add_artifact_links(result)  # no task: not a job tool, or refused early
        task = await anyio.to_thread.run_sync(detailed_task, JobStore(), jobs[0])
        # The seed state; a job that already ended is still handed out as a task to poll.
        seed = {k: v for k, v in task.items() if k != "result"}
        if seed["status"] == "completed":
            seed["status"] = "working"
        return {"resultType": "task", **seed}

    @staticmethod
    def _lookup(store: JobStore, task_id: str) -> dict[str, Any]:
        try:
            return detailed_task(store, task_id)
        except JobNotFoundError as e:
            raise MCPError(code=INVALID_PARAMS, message=str(e), data={"taskId": task_id}) from None

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        task = await anyio.to_thread.run_sync(self._lookup, JobStore(), params.task_id)
        return {"resultType": "complete", **task}

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
    ) -> HandlerResult:
        # A job never waits for input once it runs (confirmations happen before the task
        # exists), so no key is ever outstanding: the spec says to ignore such responses.
        await anyio.to_thread.run_sync(self._lookup, JobStore(), params.task_id)
        return {"resultType": "complete"}

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskParams
    ) -> HandlerResult:
        from lmfast.jobs import cancel

        await anyio.to_thread.run_sync(self._lookup, JobStore(), params.task_id)
        await anyio.to_thread.run_sync(cancel, params.task_id)
        return {"resultType": "complete"}
