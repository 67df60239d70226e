"""Tools from typed Python functions.

`@tool` turns a function with type hints and a docstring into a `Tool`: the JSON schema of
its arguments comes from the hints (through pydantic, so Optional, Literal, Enum, lists,
dicts and nested pydantic models all work), the descriptions from the docstring (Google,
NumPy or reST style, parsed by docstring_parser). Anything the model could not be told
about is an error when the tool is defined, not when a model first calls it:
a parameter without a description, a parameter without a type hint, `*args` / `**kwargs`,
or a type pydantic cannot describe as JSON.

The same `Tool` serves three places: agents (validated call + error text for the model),
the OpenAI server's `tools` (`spec` / `openai`), and MCP (`serve_mcp`).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

from lmfast.inference.base import ToolSpec


class ToolDefinitionError(TypeError):
    """A function cannot become a tool (said when it is defined)."""


class ToolArgumentError(ValueError):
    """A model's arguments do not fit the tool's schema (fed back to the model)."""


class Tool:
    """A callable the model may use: name, description, argument schema and the function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        import docstring_parser

        self.fn = fn
        self.name = name or fn.__name__
        doc = docstring_parser.parse(inspect.getdoc(fn) or "")
        summary = " ".join(p for p in (doc.short_description, doc.long_description) if p)
        self.description = (description or summary).strip()
        if not self.description:
            raise ToolDefinitionError(f"tool {self.name!r}: the function needs a docstring")
        described = {p.arg_name: (p.description or "").strip() for p in doc.params}
        self.arguments: type[BaseModel] | None = _arguments_model(fn, self.name, described)
        try:
            schema = self.arguments.model_json_schema()
        except (PydanticSchemaGenerationError, PydanticUserError) as e:
            raise ToolDefinitionError(f"tool {self.name!r}: {e}") from None
        self.parameters: dict[str, Any] = _untitled(schema)
        # Validates names (length, characters) the same way the server does.
        self.spec = ToolSpec(
            name=self.name, description=self.description, parameters=self.parameters
        )

    @classmethod
    def from_schema(
        cls,
        name: str,
        description: str,
        parameters: dict[str, Any],
        call: Callable[[dict[str, Any]], Any],
    ) -> Tool:
        """A tool defined by a JSON schema rather than a function (an MCP server's tools):
        arguments are checked with jsonschema and passed to `call` as one dict."""
        self = cls.__new__(cls)
        self.name, self.description = name, description or name
        self.parameters = parameters or {"type": "object", "properties": {}}
        self.arguments = None
        self.fn = lambda **values: call(values)
        self.spec = ToolSpec(name=name, description=self.description, parameters=self.parameters)
        return self

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    @property
    def openai(self) -> dict[str, Any]:
        """The tool in OpenAI's `tools` shape."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def validate(self, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """Arguments (a JSON string or dict) checked and converted to the hinted types."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as e:
                raise ToolArgumentError(f"arguments are not valid JSON ({e})") from None
        if not isinstance(arguments, dict):
            raise ToolArgumentError(f"arguments must be a JSON object, got {arguments!r}")
        if self.arguments is None:
            return _check_json_schema(self.parameters, arguments)
        try:
            parsed = self.arguments.model_validate(arguments)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}"
                for err in e.errors()
            )
            raise ToolArgumentError(problems) from None
        # Keep nested models as models (what the hints promise), not dicts.
        return {k: getattr(parsed, k) for k in type(parsed).model_fields}

    def __call__(self, arguments: str | dict[str, Any] | None = None, /, **kwargs: Any) -> Any:
        """Validate, then call the function. `tool({"x": 1})` or `tool(x=1)`."""
        values = self.validate(arguments if arguments is not None else kwargs)
        return self.fn(**values)


def tool(
    fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None
) -> Any:
    """Decorator: `@tool` or `@tool(name=..., description=...)` makes a `Tool`."""
    if fn is not None:
        return Tool(fn, name=name, description=description)
    return lambda f: Tool(f, name=name, description=description)


def as_tools(items: list[Tool | Callable[..., Any]]) -> list[Tool]:
    """Functions become tools; duplicate names are refused."""
    tools = [t if isinstance(t, Tool) else Tool(t) for t in items]
    seen: set[str] = set()
    for t in tools:
        if t.name in seen:
            raise ToolDefinitionError(f"two tools are named {t.name!r}")
        seen.add(t.name)
    return tools


def result_text(value: Any, limit: int = 4000) -> str:
    """A tool's return value as the text a model reads (JSON for structured values)."""
    if isinstance(value, BaseModel):
        text = value.model_dump_json()
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            text = str(value)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more chars]"


def serve_mcp(tools: list[Tool], name: str = "lmfast-tools") -> Any:
    """An MCP server exposing `tools` (run it with `.run()` or mount it)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name)
    for t in tools:
        server.add_tool(t.fn, name=t.name, description=t.description)
    return server


def _arguments_model(
    fn: Callable[..., Any], name: str, described: dict[str, str]
) -> type[BaseModel]:
    try:
        hints = get_type_hints(fn, include_extras=True)
    except (NameError, TypeError) as e:
        raise ToolDefinitionError(f"tool {name!r}: cannot resolve its type hints ({e})") from None
    fields: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool {name!r}: *{p.name} / **{p.name} cannot be described to a model; "
                "name every argument"
            )
        if p.name not in hints:
            raise ToolDefinitionError(f"tool {name!r}: argument {p.name!r} has no type hint")
        if not described.get(p.name):
            raise ToolDefinitionError(
                f"tool {name!r}: argument {p.name!r} has no description in the docstring "
                "(an 'Args:' section line such as '    x: what x is')"
            )
        from pydantic import Field

        default = ... if p.default is p.empty else p.default
        fields[p.name] = (hints[p.name], Field(default, description=described[p.name]))
    try:
        return create_model(  # type: ignore[no-any-return,call-overload]
            f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
    except (PydanticSchemaGenerationError, PydanticUserError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise ToolDefinitionError(f"tool {name!r}: unsupported argument type ({first})") from None


def _check_json_schema(schema: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    from jsonschema import Draft202012Validator

    errors = sorted(Draft202012Validator(schema).iter_errors(arguments), key=lambda e: e.path)
    if errors:
        raise ToolArgumentError(
            "; ".join(f"{'.'.join(map(str, e.path)) or '(arguments)'}: {e.message}" for e in errors)
        )
    return arguments


def _untitled(schema: Any) -> Any:
    """The schema without pydantic's generated titles: they repeat the names and cost a
    small model prompt tokens."""
    if isinstance(schema, list):
        return [_untitled(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            out[key] = {name: _untitled(sub) for name, sub in value.items()}
        elif key != "title":
            out[key] = _untitled(value)
    return out
