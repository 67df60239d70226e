"""Tool calling for models of any size: prompt format, grammar, and parsers.

Calls use the Hermes format that Qwen2.5 and many fine-tunes speak natively:
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. For templates without tool support
the tool list goes into the system message. Generation is constrained by a GBNF grammar
built from the tools' JSON schemas (from the start for tool_choice required/named, lazily
from the `<tool_call>` trigger for auto), so even a 135M model emits calls that parse and
whose arguments validate against the schema's structure.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from lmfast.inference.base import ToolCall, ToolCallFunction, ToolSpec

OPEN, CLOSE = "<tool_call>", "</tool_call>"


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def tools_system_prompt(tools: list[ToolSpec]) -> str:
    """Instructions appended to the system message when the template has no tool support."""
    lines = [
        json.dumps(
            {"name": t.name, "description": t.description, "parameters": _shown(t.parameters)},
            ensure_ascii=False,
        )
        for t in tools
    ]
    return (
        "You can call functions. Available functions, one JSON object per line:\n"
        + "\n".join(lines)
        + f'\nTo call a function, answer with {OPEN}{{"name": <function name>, '
        f'"arguments": <arguments object>}}{CLOSE}'
    )


# A pattern longer than this is a grammar's business, not the model's reading: the
# calculator's (nesting spelt out level by level) runs to 9,000 characters, which would
# bury a small model's prompt. The call grammar still holds the arguments to it.
SHOWN_PATTERN = 200


def _shown(schema: Any) -> Any:
    """The schema as the model reads it: long regular expressions left out."""
    if isinstance(schema, dict):
        return {
            k: _shown(v)
            for k, v in schema.items()
            if not (k == "pattern" and isinstance(v, str) and len(v) > SHOWN_PATTERN)
        }
    if isinstance(schema, list):
        return [_shown(v) for v in schema]
    return schema


def tool_call_grammar(tools: list[ToolSpec], parallel: bool = True) -> str:
    """GBNF for one (or, with `parallel`, several) tool calls in the Hermes format."""
    more = f' ( "\\n" "{OPEN}" call "{CLOSE}" )*' if parallel else ""
    return f'root ::= "{OPEN}" call "{CLOSE}"{more}\n{call_rules(tools)}'


def call_rules(tools: list[ToolSpec]) -> str:
    """GBNF rules defining `call`: the JSON of one call to one of `tools` (name and
    schema-valid arguments), for grammars that embed tool calls in a larger format."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    defs: dict[str, Any] = {}
    variants = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": _hoist_defs(t, defs)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    schema: dict[str, Any] = variants[0] if len(variants) == 1 else {"anyOf": variants}
    if defs:
        schema = {**schema, "$defs": defs}
    body = json_schema_to_gbnf(json.dumps(schema), prop_order=["name", "arguments"])
    # JSON strings may not hold raw control characters (a newline inside a string breaks
    # json.loads); this converter's version allows them.
    body = body.replace('char ::= [^"\\\\]', 'char ::= [^"\\\\\\x7F\\x00-\\x1F]')
    return re.sub(r"^root ::=", "call ::=", body, count=1, flags=re.MULTILINE)


def _hoist_defs(tool: ToolSpec, defs: dict[str, Any]) -> dict[str, Any]:
    """The tool's argument schema with its `$defs` moved to the call schema's root (where
    `#/$defs/...` references resolve once it is nested), renamed per tool so that two
    tools' definitions never collide."""
    schema = _object_schema(tool.parameters)
    own = schema.pop("$defs", None)
    if not own:
        return schema
    prefix = re.sub(r"[^A-Za-z0-9_]", "_", tool.name) + "__"
    for name, sub in own.items():
        defs[prefix + name] = sub

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: ("#/$defs/" + prefix + v[len("#/$defs/") :])
                if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/")
                else rewrite(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name in own:
        defs[prefix + name] = rewrite(defs[prefix + name])
    return rewrite(schema)  # type: ignore[no-any-return]


def _object_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    schema = dict(parameters or {})
    schema.setdefault("type", "object")
    return schema


def parse_tool_calls(text: str) -> tuple[str | None, list[ToolCall]]:
    """Split finished output into (content outside calls, calls). Unparseable calls stay text."""
    calls: list[ToolCall] = []
    kept: list[str] = []
    pos = 0
    for m in re.finditer(re.escape(OPEN) + r"(.*?)" + re.escape(CLOSE), text, flags=re.DOTALL):
        call = _to_call(m.group(1))
        if call is None:
            continue
        kept.append(text[pos : m.start()])
        pos = m.end()
        calls.append(call)
    kept.append(text[pos:])
    content = "".join(kept).strip()
    return (content or None) if calls else text, calls


def _to_call(raw: str) -> ToolCall | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", {})
    return ToolCall(
        id=new_call_id(),
        function=ToolCallFunction(
            name=obj["name"],
            arguments=args if isinstance(args, str) else json.dumps(args, ensure_ascii=False),
        ),
    )


@dataclass
class ToolDelta:
    """A piece of a streamed tool call, in OpenAI's delta shape."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


_HEAD = re.compile(r'^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*', re.DOTALL)


@dataclass
class ToolCallStreamParser:
    """Incrementally splits streamed text into content and tool-call deltas.

    The first delta of each call carries index, id and name (arguments ""); later deltas carry
    argument fragments only, so a client concatenating them gets the exact JSON string.
    """

    _buf: str = ""
    _state: str = "content"  # content | head | args | tail
    _depth: int = 0
    _in_string: bool = False
    _escaped: bool = False
    calls: list[ToolCall] = field(default_factory=list)

    def feed(self, text: str) -> tuple[str, list[ToolDelta]]:
        self._buf += text
        content, deltas = "", []
        while True:
            if self._state == "content":
                i = self._buf.find(OPEN)
                if i >= 0:
                    content += self._buf[:i]
                    self._buf = self._buf[i + len(OPEN) :]
                    self._state = "head"
                    continue
                keep = _partial_suffix(self._buf, OPEN)
                content += self._buf[: len(self._buf) - keep]
                self._buf = self._buf[len(self._buf) - keep :]
                break
            if self._state == "head":
                m = _HEAD.match(self._buf)
                if not m:
                    break
                name = json.loads(f'"{m.group(1)}"')
                call = ToolCall(
                    id=new_call_id(), function=ToolCallFunction(name=name, arguments="")
                )
                self.calls.append(call)
                deltas.append(ToolDelta(index=len(self.calls) - 1, id=call.id, name=name))
                self._buf = self._buf[m.end() :]
                self._state, self._depth = "args", 0
                continue
            if self._state == "args":
                end, done = self._scan_args()
                piece = self._buf[:end]
                if not self.calls[-1].function.arguments:
                    piece = piece.lstrip()
                if piece:
                    self.calls[-1].function.arguments += piece
                    deltas.append(ToolDelta(index=len(self.calls) - 1, arguments=piece))
                self._buf = self._buf[end:]
                if done:
                    self._state = "tail"
                    continue
                break
            if self._state == "tail":
                i = self._buf.find(CLOSE)
                if i < 0:
                    break
                self._buf = self._buf[i + len(CLOSE) :]
                self._state = "content"
                continue
        return content, deltas

    def _scan_args(self) -> tuple[int, bool]:
        """Advance through the arguments JSON: (chars that belong to it, whether it ended)."""
        for i, ch in enumerate(self._buf):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
                continue
            if ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1, True
            elif self._depth == 0 and not ch.isspace():
                # A scalar argument value (not an object): it ends at the closing brace.
                j = self._buf.find("}", i)
                return (j, True) if j >= 0 else (i, False)
        return len(self._buf), False

    def finish(self) -> str:
        """Text still held (an unfinished '<tool_' prefix, say) once generation ends."""
        rest, self._buf = (self._buf if self._state == "content" else ""), ""
        return rest


def _partial_suffix(text: str, marker: str) -> int:
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
