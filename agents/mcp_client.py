"""MCP client mode: the tools of any MCP server as agent tools.

    with MCPToolset.stdio("lmfast", ["mcp"]) as remote:
        agent = Agent(remote.tools)

The official SDK client runs in a background event loop (an anyio blocking portal), so the
synchronous agent loop calls remote tools like local ones. A tool result flagged `isError`
becomes the step's error, which the model sees.
"""

from __future__ import annotations

import json
import os
from typing import Any

from lmfast.agents.models import AgentError
from lmfast.agents.tools import Tool


class MCPToolError(RuntimeError):
    """The server answered a tool call with isError."""


class MCPToolset:
    def __init__(self, server: Any, only: list[str] | None = None) -> None:
        """`server`: an MCPServer object (in memory), StdioServerParameters, or the URL of a
        streamable HTTP endpoint. `only`: keep just these tools."""
        self.server, self.only = server, only
        self.tools: list[Tool] = []
        self._portal_cm: Any = None

    @classmethod
    def stdio(
        cls, command: str, args: list[str] | None = None, env: dict[str, str] | None = None,
        only: list[str] | None = None,
    ) -> MCPToolset:  # fmt: skip
        from mcp.client.stdio import StdioServerParameters

        # The SDK passes only a safe subset of the environment by default.
        params = StdioServerParameters(
            command=command, args=list(args or []), env={**os.environ, **(env or {})}
        )
        return cls(params, only)

    def __enter__(self) -> MCPToolset:
        import anyio.from_thread
        from lmfast.agents.mcp_tasks import TaskResults
        from mcp import Client

        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            self._client_cm = self._portal.wrap_async_context_manager(
                # a tool a tasks server runs as a task is followed to its result
                Client(self.server, extensions=[TaskResults()])
            )
            self._client = self._client_cm.__enter__()
            listed = self._portal.call(self._client.list_tools).tools
        except OSError as e:  # the server's command is missing or cannot start
            self._portal_cm.__exit__(None, None, None)
            raise AgentError(f"mcp: cannot start the MCP server: {e}") from None
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        names = {t.name for t in listed}
        missing = sorted(set(self.only or []) - names)
        if missing:
            self.__exit__(None, None, None)
            raise AgentError(f"the MCP server has no tool {missing}; it has {sorted(names)}")
        self.tools = [
            Tool.from_schema(t.name, t.description or t.name, t.input_schema, self._caller(t.name))
            for t in listed
            if self.only is None or t.name in self.only
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._portal_cm is None:
            return
        try:
            self._client_cm.__exit__(*exc)
        finally:
            self._portal_cm.__exit__(None, None, None)
            self._portal_cm = None

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Call one tool: its structured result (or text); MCPToolError on isError."""
        result = self._portal.call(self._client.call_tool, name, arguments)
        text = "\n".join(getattr(c, "text", "") for c in result.content).strip()
        if result.is_error:
            raise MCPToolError(text or f"{name} failed")
        if result.structured_content is not None:
            return result.structured_content
        try:
            return json.loads(text)
        except ValueError:
            return text

    def _caller(self, name: str) -> Any:
        return lambda arguments: self.call(name, arguments)
