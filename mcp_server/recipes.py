"""Training recipes from MCP tool arguments: a tool's own (confined) arguments plus
`overrides` of recipe fields, which may never name a path."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

# Recipe settings that name files: set only through confined tool arguments.
PATH_SETTINGS = (
    "data.path",
    "data.sources",
    "model.reference",
    "model.template",
    "model.tokenizer",
)


def settable(key: str) -> bool:
    """A recipe field a tool may set from its arguments: not a path (paths come only through
    a tool's own confined arguments), and in the training, data or model section."""
    return key.split("[")[0] not in PATH_SETTINGS and key.startswith(
        ("training.", "data.", "model.")
    )


def recipe(values: dict[str, Any], overrides: dict[str, Any] | None) -> Any:
    """A training recipe from a tool's arguments plus `overrides`; paths come only through
    the tool's own (confined) arguments, never through overrides."""
    from lmfast.config import load_config

    for key in overrides or {}:
        if not settable(key):
            raise ToolError(
                f"overrides: {key!r} cannot be overridden here; give paths as `data` / "
                "`model`, and other settings as training.*, data.* or model.* fields"
            )
    return load_config(None, values={**values, **(overrides or {})})
