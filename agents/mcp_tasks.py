"""The client half of the MCP tasks extension (`io.modelcontextprotocol/tasks`), for the
Python SDK: a tool call a server turns into a task is polled to its end, so the caller
still gets an ordinary `CallToolResult` (an LMFast agent using a tasks server's tools, or
LMFast's own server's fine_tune, does not notice the difference).

The SDK's `ClientExtension` claims the extra result shape (`resultType: "task"`) and
resolves it; `tasks/get` follows the server's `pollIntervalMs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import anyio
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ErrorData, Request, RequestParams, Result, TextContent
from pydantic import ConfigDict, Field

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")


class CreatedTask(Result):
    """`CreateTaskResult`: the seed state of a task the server made of a tool call."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    result_type: Literal["task"] = Field(alias="resultType")
    task_id: str = Field(alias="taskId")
    status: str
    poll_interval_ms: int | None = Field(None, alias="pollIntervalMs")


class TaskState(Result):
    """`tasks/get`'s `DetailedTask`: status plus the result or error once it has one."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    task_id: str = Field(alias="taskId")
    status: str
    status_message: str | None = Field(None, alias="statusMessage")
    poll_interval_ms: int | None = Field(None, alias="pollIntervalMs")
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskIdParams(RequestParams):
    model_config = ConfigDict(populate_by_name=True)
    task_id: str = Field(alias="taskId")


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param: ClassVar[str | None] = "taskId"  # SEP-2663: Mcp-Name carries the task id


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param: ClassVar[str | None] = "taskId"


async def get_task(session: Any, task_id: str) -> TaskState:
    return await session.send_request(GetTask(params=TaskIdParams(task_id=task_id)), TaskState)


async def cancel_task(session: Any, task_id: str) -> None:
    await session.send_request(CancelTask(params=TaskIdParams(task_id=task_id)), Result)


def task_result(state: TaskState) -> CallToolResult:
    """A terminal task as the tool's own result: completed -> its `CallToolResult`;
    cancelled -> an error result saying so; failed -> the JSON-RPC error raised."""
    if state.status == "completed" and state.result is not None:
        return CallToolResult.model_validate(state.result)
    if state.status == "failed":
        raise MCPError.from_error_data(ErrorData.model_validate(state.error or {}))
    message = state.status_message or f"task {state.task_id} was {state.status}"
    return CallToolResult(content=[TextContent(text=message)], is_error=True)


class TaskResults(ClientExtension):
    """Declare the tasks extension and follow every task a `tools/call` returns."""

    identifier = TASKS_EXTENSION

    def __init__(
        self,
        on_status: Callable[[TaskState], Any] | None = None,
        max_poll_s: float = 10.0,
    ) -> None:
        self.on_status = on_status  # sees every polled state (progress for people)
        self.max_poll_s = max_poll_s

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return (ResultClaim(result_type="task", model=CreatedTask, resolve=self._follow),)

    async def _follow(self, created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
        interval = created.poll_interval_ms
        try:
            while True:
                await anyio.sleep(min((interval or 1000) / 1000, self.max_poll_s))
                state = await get_task(ctx.session, created.task_id)
                if self.on_status is not None:
                    self.on_status(state)
                if state.status in TERMINAL:
                    return task_result(state)
                interval = state.poll_interval_ms or interval
        except anyio.get_cancelled_exc_class():
            # The caller gave up waiting (timeout, Ctrl-C): stop the work it asked for too.
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await cancel_task(ctx.session, created.task_id)
            raise
