"""Tools named by reference, for jobs and command lines: built-in names, the user's Python
(`module:name` / `file.py:name`: a @tool, a function or a list of them), OpenAI-style JSON
schema files, and MCP servers over stdio."""

from __future__ import annotations

import json
import shlex
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from lmfast.agents.tools import Tool, ToolDefinitionError, as_tools

from lmfast.errors import LMFastError


class ToolsetError(LMFastError, ValueError):
    """A tool reference that cannot be used; the message names it."""


def _not_executable(name: str) -> Any:
    def call(_arguments: dict[str, Any]) -> Any:
        raise ToolsetError(f"{name} is described by a JSON schema only: nothing to execute")

    return call


def schema_tools(path: Path) -> list[Tool]:
    """Tools from a JSON file: a list of OpenAI-style tools ({"type": "function", "function":
    {...}}) or of {name, description, parameters} objects."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ToolsetError(f"tools: {path}: not a readable JSON file ({e})") from None
    items = raw.get("tools", raw) if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise ToolsetError(f"tools: {path}: expected a list of tool schemas")
    out = []
    for i, item in enumerate(items):
        fn = item.get("function", item) if isinstance(item, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ToolsetError(f"tools: {path}: item {i} has no function name")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise ToolsetError(f"tools: {path}: {fn['name']}: parameters must be an object schema")
        try:
            out.append(Tool.from_schema(fn["name"], fn.get("description") or "", params,
                                        _not_executable(fn["name"])))  # fmt: skip
        except ValueError as e:
            raise ToolsetError(f"tools: {path}: {fn['name']}: {e}") from None
    return out


def python_tools(reference: str) -> list[Tool]:
    from lmfast.user_code import load_object

    obj = load_object(reference, "tools")
    items = list(obj) if isinstance(obj, list | tuple) else [obj]
    if not items or not all(isinstance(i, Tool) or callable(i) for i in items):
        raise ToolsetError(f"tools: {reference!r} is not a tool, a function or a list of them")
    try:
        return as_tools(items)
    except ToolDefinitionError as e:
        raise ToolsetError(f"tools: {reference!r}: {e}") from None


def resolve_tools(
    references: list[str], mcp: list[str], stack: ExitStack
) -> tuple[list[Tool], set[str]]:
    """(tools, names of the ones that can be executed). MCP servers stay connected until
    `stack` closes."""
    from lmfast.agents.builtin import BUILTIN
    from lmfast.agents.mcp_client import MCPToolset

    tools: list[Tool] = []
    runnable: set[str] = set()
    for ref in references:
        if ref in BUILTIN:
            found = [BUILTIN[ref]]
        elif ref.endswith(".json"):
            found = schema_tools(Path(ref).expanduser())
            tools += found
            continue
        elif ":" in ref:
            found = python_tools(ref)
        else:
            raise ToolsetError(
                f"tools: {ref!r} is not a built-in tool ({', '.join(BUILTIN)}), module:name, "
                "file.py:name or a .json file of tool schemas"
            )
        tools += found
        runnable |= {t.name for t in found}
    for command in mcp:
        argv = shlex.split(command)
        if not argv:
            raise ToolsetError("mcp: an empty command")
        found = stack.enter_context(MCPToolset.stdio(argv[0], argv[1:])).tools
        tools += found
        runnable |= {t.name for t in found}
    names = [t.name for t in tools]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ToolsetError(f"tools: {twice} defined more than once")
    if not tools:
        raise ToolsetError("tools: give at least one tool")
    return tools, runnable
