"""Stop strings, tool-call parsing and tool grammars, without a model."""

from __future__ import annotations

import json

from lmfast.inference.base import ToolSpec
from lmfast.inference.decoding import TextAssembler
from lmfast.inference.tools import ToolCallStreamParser, parse_tool_calls, tool_call_grammar


def _feed(assembler: TextAssembler, pieces: list[str]) -> str:
    out = "".join(assembler.feed(p.encode(), None)[0] for p in pieces)
    return out + assembler.flush()[0]


def test_stop_strings_are_never_emitted() -> None:
    a = TextAssembler(["END"])
    emitted = [a.feed(p.encode(), None)[0] for p in ["Hello", " E", "N", "D and more"]]
    assert "".join(emitted) == "Hello "
    assert emitted[:2] == ["Hello", ""]  # ' E' is held back: it may start 'END'
    assert a.stopped


def test_held_text_is_released_when_it_is_not_a_stop() -> None:
    assert _feed(TextAssembler(["END"]), ["The E", "nd of it"]) == "The End of it"
    assert _feed(TextAssembler([]), ["a", "b"]) == "ab"


def test_utf8_split_across_tokens() -> None:
    a = TextAssembler([])
    raw = "é".encode()
    assert a.feed(raw[:1], None)[0] == ""
    assert a.feed(raw[1:], None)[0] == "é"


def test_stream_parser_parallel_calls_get_distinct_indices() -> None:
    text = (
        'Let me check. <tool_call>{"name": "a", "arguments": {"x": "}{", "y": [1, {"z": 2}]}}'
        '</tool_call>\n<tool_call>{"name": "b", "arguments": {}}</tool_call>'
    )
    parser = ToolCallStreamParser()
    content, deltas = "", []
    for i in range(0, len(text), 3):  # arbitrary chunking
        c, d = parser.feed(text[i : i + 3])
        content += c
        deltas += d
    assert content.strip() == "Let me check."
    starts = [d for d in deltas if d.id]
    assert [(d.index, d.name) for d in starts] == [(0, "a"), (1, "b")]
    assert len({d.id for d in starts}) == 2
    args0 = "".join(d.arguments for d in deltas if d.index == 0)
    assert json.loads(args0) == {"x": "}{", "y": [1, {"z": 2}]}
    assert "".join(d.arguments for d in deltas if d.index == 1) == "{}"


def test_parse_finished_text() -> None:
    content, calls = parse_tool_calls('<tool_call>{"name": "f", "arguments": {"q": 1}}</tool_call>')
    assert content is None and calls[0].function.name == "f"
    assert json.loads(calls[0].function.arguments) == {"q": 1}
    content, calls = parse_tool_calls("no calls <tool_call>{broken</tool_call>")
    assert calls == [] and content == "no calls <tool_call>{broken</tool_call>"


def test_grammar_names_every_tool() -> None:
    tools = [
        ToolSpec(
            name="get_weather",
            parameters={
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        ),
        ToolSpec(name="get_time"),
    ]
    g = tool_call_grammar(tools, parallel=False)
    assert g.startswith('root ::= "<tool_call>" call "</tool_call>"\n')
    assert '\\"get_weather\\"' in g and '\\"get_time\\"' in g
    assert '( "\\n"' in tool_call_grammar(tools, parallel=True)
