"""Training recipes from MCP tool arguments: a tool's own (confined) arguments plus
`overrides` of recipe fields, which may never name a path."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

# Recipe settings that name files (or code to import): set only through confined tool
# arguments.
PATH_SETTINGS = (
    "data.path",
    "data.sources",
    "model.reference",
    "model.template",
    "model.tokenizer",
    "training.grpo.rewards",
)


def settable(key: str) -> bool:
    """A recipe field a tool may set from its arguments: not a path (paths come only through
    a tool's own confined arguments), and in the training, data or model section."""
    key = key.split("[")[0]
    # A section above a path setting ('training.grpo') would set it inside its value.
    names_a_path = any(p == key or p.startswith(key + ".") for p in PATH_SETTINGS)
    return not names_a_path and key.startswith(("training.", "data.", "model."))


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
