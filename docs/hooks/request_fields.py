"""MkDocs hook: `::: fields module:Model` in a page becomes a table of the model's fields
(name, type, default, description), read from the pydantic model itself, so the docs show
what the code accepts instead of a copy that drifts."""

from __future__ import annotations

import importlib
import re
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

MARKER = re.compile(r"^::: fields ([\w.]+):(\w+)\s*$", re.MULTILINE)


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation).replace("typing.", "")
    return re.sub(r"\b[\w.]+\.(\w+)", r"\1", text).replace("|", "\\|")


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else "(built)"
    return f"`{field.default!r}`".replace("|", "\\|")


def fields_table(model: type[BaseModel]) -> str:
    rows = ["| field | type | default | what it is |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        description = (field.description or "").replace("\n", " ").replace("|", "\\|")
        rows.append(
            f"| `{name}` | `{_type(field.annotation)}` | {_default(field)} | {description} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    def render(match: re.Match[str]) -> str:
        model = getattr(importlib.import_module(match.group(1)), match.group(2))
        return fields_table(model)

    return MARKER.sub(render, markdown)
