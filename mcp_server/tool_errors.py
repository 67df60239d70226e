"""How every MCP tool reports anticipated failures: as a tool error (isError) naming the
field, never as a crashed request."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError
from pydantic import ValidationError

from lmfast.errors import LMFastError

P = ParamSpec("P")
T = TypeVar("T")


def tool_errors(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Anticipated failures become tool errors (isError) with a message naming the field."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except ValidationError as e:
            lines = []
            for err in e.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "arguments"
                lines.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}")
            raise ToolError("invalid arguments: " + "; ".join(lines)) from None
        except (LMFastError, ValueError, PermissionError) as e:
            raise ToolError(str(e)) from None

    return wrapper
