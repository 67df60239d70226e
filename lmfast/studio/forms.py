"""Form fields from the request models, so a Studio form has the same fields, defaults, bounds
and help as the CLI and MCP faces (no second copy of any of them), and errors from those
models put back beside the field that caused them."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from lmfast.config import LMFastConfig, validation_problems
from lmfast.errors import ConfigError, LMFastError

InputKind = Literal["text", "number", "select", "bool", "lines"]


@dataclass
class FormField:
    """One input: `name` is what the browser posts (a request field or a recipe key)."""

    name: str
    label: str
    kind: InputKind
    help: str = ""
    default: Any = None
    choices: list[str] = field(default_factory=list)
    required: bool = False
    step: str = "any"
    minimum: float | None = None
    maximum: float | None = None
    list: str | None = None  # id of a <datalist> of suggestions (models, datasets)


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for m in info.metadata:
        low = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else low
        low = getattr(m, "gt", None) if getattr(m, "gt", None) is not None else low
        high = getattr(m, "le", None) if getattr(m, "le", None) is not None else high
        high = getattr(m, "lt", None) if getattr(m, "lt", None) is not None else high
    return low, high


def form_field(name: str, info: FieldInfo, label: str | None = None) -> FormField:
    """The input for one pydantic field."""
    annotation = _strip_optional(info.annotation)
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        default = None
    low, high = _bounds(info)
    base = {
        "name": name,
        "label": label or name.rsplit(".", 1)[-1].replace("_", " "),
        "help": info.description or "",
        "default": default,
        "required": info.is_required(),
        "minimum": low,
        "maximum": high,
    }
    if get_origin(annotation) is Literal:
        return FormField(kind="select", choices=[str(c) for c in get_args(annotation)], **base)
    if annotation is bool:
        return FormField(kind="bool", **base)
    if annotation is int:
        return FormField(kind="number", step="1", **base)
    if annotation is float:
        return FormField(kind="number", **base)
    if get_origin(annotation) is list:
        return FormField(kind="lines", **base)
    return FormField(kind="text", **base)


def request_fields(
    model: type[BaseModel], names: list[str], labels: dict[str, str] | None = None
) -> list[FormField]:
    """Inputs for the named top-level fields of a request model."""
    return [form_field(n, model.model_fields[n], (labels or {}).get(n)) for n in names]


def recipe_fields(keys: list[str], labels: dict[str, str] | None = None) -> list[FormField]:
    """Inputs for dotted recipe keys (`training.max_steps`), typed and explained by the
    recipe model itself."""
    out = []
    for key in keys:
        model: Any = LMFastConfig
        info: FieldInfo | None = None
        for part in key.split("."):
            info = model.model_fields[part]
            model = _strip_optional(info.annotation)
        assert info is not None
        out.append(form_field(key, info, (labels or {}).get(key)))
    return out


@dataclass
class FormErrors(Exception):
    """What to show beside which field; `field` None: above the form."""

    problems: list[tuple[str | None, str]]

    def as_json(self) -> dict[str, Any]:
        return {"errors": [{"field": f, "message": m} for f, m in self.problems]}


def form_errors(exc: BaseException, recipe_keys: tuple[str, ...] = ()) -> FormErrors:
    """Any error a capability raises, as messages for the page (never a traceback)."""
    if isinstance(exc, FormErrors):
        return exc
    if isinstance(exc, ValidationError):
        problems: list[tuple[str, str]] = validation_problems(exc)
    elif isinstance(exc, ConfigError):
        problems = exc.problems
    elif isinstance(exc, LMFastError | ValueError | LookupError | OSError):
        return FormErrors([(None, str(exc))])
    else:
        return FormErrors([(None, f"unexpected {type(exc).__name__}: {exc}")])
    out: list[tuple[str | None, str]] = []
    for path, message in problems:
        path = path.removeprefix("config.")
        name = f"recipe:{path}" if path in recipe_keys else path
        out.append((name, f"{path}: {message}"))
    return FormErrors(out)
