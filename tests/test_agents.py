"""Agents: tools from functions, the ReAct loop, constrained calls, the sandbox, MCP mode."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Literal

import jsonschema
import pytest
from lmfast.agents.builtin import calculator, convert_units
from lmfast.agents.code import CodeAgent
from lmfast.agents.models import Completion
from lmfast.agents.react import Agent, step_grammar
from lmfast.agents.sandbox import Sandbox, SandboxLimits
from lmfast.agents.thinking import ThinkingAgent, extract_answer, normalise
from lmfast.agents.tools import Tool, ToolArgumentError, ToolDefinitionError, tool
from pydantic import BaseModel

from lmfast.inference.base import ChatMessage, SamplingParams, ToolSpec
from tests.tiny_models import make_tiny_llama


class Colour(Enum):
    RED = "red"
    BLUE = "blue"


class Box(BaseModel):
    width: float
    label: str | None = None


@tool
def paint(count: int, colour: Colour, boxes: list[Box], mode: Literal["fast", "slow"] = "fast",
          note: str | None = None) -> str:  # fmt: skip
    """Paint boxes.

    Args:
        count: How many coats.
        colour: Which colour.
        boxes: The boxes to paint.
        mode: How to paint.
        note: Anything to remember.
    """
    return f"{count} {colour.value} {[b.width for b in boxes]} {mode} {note}"


def test_schema_from_type_hints() -> None:
    p = paint.parameters
    assert paint.description == "Paint boxes."
    assert set(p["required"]) == {"count", "colour", "boxes"}
    assert p["properties"]["count"] == {"type": "integer", "description": "How many coats."}
    assert p["$defs"]["Colour"]["enum"] == ["red", "blue"]
    assert p["properties"]["boxes"]["items"] == {"$ref": "#/$defs/Box"}
    assert p["$defs"]["Box"]["required"] == ["width"]
    assert p["properties"]["mode"]["enum"] == ["fast", "slow"]
    assert {"type": "null"} in p["properties"]["note"]["anyOf"]
    assert p["additionalProperties"] is False and "title" not in json.dumps(p)
    jsonschema.Draft202012Validator.check_schema(p)
    assert paint.openai["function"]["name"] == "paint"
    # Values are converted to the hinted types, nested models included.
    assert (
        paint({"count": "2", "colour": "red", "boxes": [{"width": 1}]}) == "2 red [1.0] fast None"
    )
    with pytest.raises(ToolArgumentError, match=r"colour.*'red' or 'blue'"):
        paint({"count": 1, "colour": "green", "boxes": []})
    with pytest.raises(ToolArgumentError, match="speed: Extra inputs"):
        paint({"count": 1, "colour": "red", "boxes": [], "speed": 3})


def test_bad_tool_definitions_fail_when_defined() -> None:
    def undocumented(x: int) -> int:
        """Has no Args section."""
        return x

    def unhinted(x):  # type: ignore[no-untyped-def]
        """Doc.

        Args:
            x: a value
        """

    def star(*values: int) -> None:
        """Doc.

        Args:
            values: numbers
        """

    def odd(lock: type(os.sched_getaffinity)) -> None:  # type: ignore[valid-type]
        """Doc.

        Args:
            lock: a builtin function as a type
        """

    for fn, message in [
        (undocumented, "argument 'x' has no description"),
        (unhinted, "argument 'x' has no type hint"),
        (star, r"\*values"),
        (odd, "unsupported argument type"),
    ]:
        with pytest.raises(ToolDefinitionError, match=message):
            Tool(fn)
    with pytest.raises(ToolDefinitionError, match="needs a docstring"):
        Tool(lambda: None)


class Scripted:
    """A fake model replaying fixed replies, recording what it was shown."""

    constrained = False
    native_tools = False
    name = "scripted"

    def __init__(self, replies: list[str | Completion]) -> None:
        self.replies, self.seen, self.grammars, self.params = list(replies), [], [], []

    def complete(self, messages, params, *, tools=None, grammar=None, n=1):  # type: ignore[no-untyped-def]
        self.seen.append(list(messages))
        self.grammars.append(grammar)
        self.params.append(params)
        replies = [self.replies.pop(0) for _ in range(n)]
        return [r if isinstance(r, Completion) else
                Completion(text=r, prompt_tokens=100, completion_tokens=10)
                for r in replies]  # fmt: skip


def _call(name: str, **arguments: object) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def test_loop_calls_tools_feeds_errors_back_and_answers() -> None:
    model = Scripted([
        "Thought: compute it\n" + _call("calculator", expression="17 * 23 / 0"),
        "Thought: fix it\n" + _call("calculator", expression="17 * 23 + 4"),
        "Thought: wrong tool\n" + _call("weather", city="Paris"),
        "Thought: bad JSON\n<tool_call>{\"name\": \"calculator\", </tool_call>",
        "Thought: done\nAnswer: 395",
    ])  # fmt: skip
    events = []
    result = Agent([calculator], model, on_event=events.append).run("What is 17*23+4?")
    assert result.answer == "395" and result.stop_reason == "answer"
    calls = result.calls
    assert [c.valid for c in calls] == [True, True, False, False]
    assert "division by zero" in calls[0].error  # a tool's own failure
    assert calls[1].result == "395"
    assert "no tool named 'weather'" in calls[2].error and "not valid JSON" in calls[3].error
    # The model saw each error as the tool's answer.
    tool_turns = [m.content for m in model.seen[-1] if m.role == "tool"]
    assert tool_turns[0].startswith("Error: ZeroDivisionError") and tool_turns[1] == "395"
    assert {e.kind for e in events} >= {"thought", "tool_call", "observation", "error", "answer"}
    assert result.prompt_tokens == 500 and result.completion_tokens == 50


def test_step_limit_budget_and_repeated_calls() -> None:
    runs = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers.

        Args:
            a: First.
            b: Second.
        """
        runs.append((a, b))
        return a + b

    loop = "Thought: again\n" + _call("add", a=1, b=1)
    model = Scripted([loop] * 3)
    result = Agent([add], model, max_steps=3).run("1+1?")
    assert result.stop_reason == "max_steps" and result.answer is None
    assert len(result.steps) == 3
    # The repeats are answered from memory: the tool ran once.
    assert runs == [(1, 1)] and [c.result for c in result.calls] == ["2", "2", "2"]
    budget = Agent([add], Scripted([loop] * 5), token_budget=200).run("1+1?")
    assert budget.stop_reason == "token_budget" and len(budget.steps) == 2

    # With a grammar, the step after a repeated call may only answer.
    class Constrained(Scripted):
        constrained = True

    model = Constrained([loop, loop, "Thought: done\nAnswer: 2"])
    result = Agent([add], model, max_steps=3).run("1+1?")
    assert result.answer == "2"
    assert "<tool_call>" in model.grammars[1] and "<tool_call>" not in model.grammars[2]
    assert '"Answer: "' in model.grammars[2]


def test_loops_and_cut_off_replies_are_stopped_and_retried_by_sampling() -> None:
    from lmfast.agents.models import degenerate

    assert degenerate("Answer: 1.21" + ".222" * 40)
    assert degenerate("Thought: 343 * 30 = 980. " * 6)
    assert not degenerate('Thought: convert it.\n<tool_call>{"name": "convert_units", '
                          '"arguments": {"value": 3, "from_unit": "mile", "to_unit": '
                          '"kilometre"}}</tool_call>')  # fmt: skip
    looped = Completion(text='<tool_call>{"name": "calculator", "arguments": {"expression": '
                        '"1 1 1 1 1 1 1 1 1 1 1 1', finish_reason="repetition")  # fmt: skip
    model = Scripted([looped, _call("calculator", expression="1 + 1"), "Answer: 2"])
    events: list = []
    result = Agent([calculator], model, on_event=events.append).run("1+1?")
    assert result.answer == "2" and result.calls[0].valid and result.calls[0].result == "2"
    assert any(e.kind == "error" and "loop" in e.text for e in events)
    assert "cut off" in model.seen[1][-1].content  # the model is told, then samples
    assert model.params[0].temperature == 0.0 and model.params[1].temperature >= 0.5
    assert model.params[2].temperature == 0.0  # back to greedy after a good step


def test_retries_in_a_row_sample_hotter_with_new_seeds() -> None:
    """A peaked small model repeats a looping reply at a mild temperature: each retry in a
    row must sample differently from the last (hotter, another seed, repeats penalised)."""
    looped = Completion(text="Thought: 343 * 30 = 980. " * 6, finish_reason="repetition")
    model = Scripted([looped, looped, looped, looped, "Answer: 10290"])
    result = Agent([calculator], model, max_steps=6).run("What is 343 * 30?")
    assert result.answer == "10290"
    retries = model.params[1:4]
    temperatures = [p.temperature for p in retries]
    assert temperatures == sorted(temperatures) and len(set(temperatures)) == 3
    assert len({p.seed for p in retries}) == 3
    assert all(p.repetition_penalty > 1.0 for p in retries)


def test_calculator_pattern_admits_only_what_the_evaluator_reads() -> None:
    """The call grammar holds arguments to the pattern: every string it admits must parse
    (an arithmetic failure such as 1/0 is the tool's answer, not a misread)."""
    import random
    import re

    from lmfast.agents.builtin import EXPRESSION, ExpressionError, evaluate_expression

    pattern = re.compile(EXPRESSION)
    # What an independent run saw the old pattern admit and the evaluator reject.
    for text in [", 98765 + 43210", ".+ 55555 + 66666", ".123456.7890123456.7890...", "007"]:
        assert not pattern.fullmatch(text), text
    for text in ["(12 + 7) * 3", "sqrt(2) / 4", "max(3, 4)", "round(2.567, 2)", "-2 ** 3"]:
        assert pattern.fullmatch(text), text
    rng = random.Random(0)
    pieces = [*"0123456789+-*/%^(). ,", "pi", "e", "sqrt(", "max(", "round(", "**", "//"]
    seeds = ["(12 + 7) * 3", "sqrt(2) / 4", "max(3, 4)", "2*(3+(4-1))", "98765 + 43210"]
    admitted = 0
    for i in range(40_000):
        if i % 2:  # random strings of the pattern's own pieces
            text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        else:  # near misses: valid expressions with a few edits
            chars = list(rng.choice(seeds))
            for _ in range(rng.randint(1, 3)):
                pos = rng.randrange(len(chars))
                if rng.random() < 0.5:
                    chars.insert(pos, rng.choice(pieces))
                else:
                    del chars[pos]
            text = "".join(chars)
        if not pattern.fullmatch(text):
            continue
        admitted += 1
        try:
            evaluate_expression(text)
        except ExpressionError as e:
            raise AssertionError(f"the pattern admits {text!r}; the evaluator: {e}") from e
        except ArithmeticError:
            pass  # 1/0, sqrt(-1): computed and refused, an answer the model can read
    assert admitted > 1000


@pytest.fixture
def tiny_pipeline(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A random tiny Llama on the transformers engine, behind a Pipeline."""
    from lmfast.inference.hf import TransformersEngine
    from lmfast.loading import load_transformers
    from lmfast.pipeline import Pipeline
    from lmfast.registry import resolve_model

    model, tok = load_transformers(resolve_model(str(make_tiny_llama(tmp_path / "m"))))
    engine = TransformersEngine(model, tok)
    try:
        yield Pipeline(engine)
    finally:
        engine.close()


def test_pipeline_collect_stops_when_told(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    pipe = tiny_pipeline
    msgs = [ChatMessage(role="user", content="go")]
    params = SamplingParams(max_tokens=64, temperature=1.0, seed=0)
    full = pipe.chat(msgs, params)
    cut = pipe.collect(*pipe.submit(msgs, params), until=lambda text: len(text) >= 10)
    assert full.completion_tokens == 64 and full.finish_reason == "length"
    assert cut.finish_reason == "cancelled" and cut.completion_tokens < 64
    assert len(cut.text) >= 10 and full.text.startswith(cut.text)


def test_plain_reply_without_answer_line_is_the_answer() -> None:
    result = Agent([calculator], Scripted(["It is four."])).run("2+2?")
    assert result.answer == "It is four." and result.steps[0].calls == []


def test_thinking_agent_votes_and_scores() -> None:
    replies = ["Reasoning: a\nAnswer: 12", "Reasoning: b\nAnswer: 12.0", "Reasoning: c\nAnswer: 7"]
    voted = ThinkingAgent(Scripted(replies), n=3).run("q")
    assert voted.answer == "12" and voted.votes == {"12": 2, "7": 1}
    assert voted.agreement == pytest.approx(2 / 3)
    tie = ThinkingAgent(Scripted(["Answer: 4", "Answer: 5"]), n=2).run("q")
    assert tie.answer == "4"  # ties go to the greedy (first) sample
    model = Scripted(replies)
    ThinkingAgent(model, n=3).run("q")
    assert model.params[0].temperature == 0.0 and model.params[1].temperature == 0.5
    scored = ThinkingAgent(Scripted(replies), n=3, scorer=lambda q, t, a: a == "7").run("q")
    assert scored.answer == "7"
    assert extract_answer("so the total is 1,250 apples") == "1,250"
    assert normalise("$1,250.") == "1250" and normalise(" Paris. ") == "paris"


def test_code_agent_runs_code_in_the_sandbox() -> None:
    model = Scripted([
        "Thought: compute\n```python\nimport math\nprint(math.factorial(10))\n```",
        "Thought: got it\nAnswer: 3628800",
    ])  # fmt: skip
    result = CodeAgent(model).run("10!?")
    assert result.answer == "3628800"
    assert result.calls[0].result.strip() == "3628800"
    assert model.seen[-1][-1].content == "Output:\n3628800"


# -- the sandbox ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxLimits(cpu_seconds=2, wall_seconds=4, memory_mb=256, output_bytes=5000))


def test_sandbox_runs_allowed_code_in_its_own_dir(sandbox: Sandbox) -> None:
    r = sandbox.run(
        "import statistics\nopen('a.txt', 'w').write('x')\nprint(statistics.mean([1, 2, 3]))"
    )
    assert r.ok and r.stdout == "2\n" and r.files == ["a.txt"]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import socket", "importing 'socket' is not allowed"),
        ("import os", "importing 'os' is not allowed"),
        # Around the guarded __import__: the audit hook still sees a new module load.
        ("import random\nrandom.__builtins__['__import__']('socket')",
         "importing 'socket' is not allowed"),
        ("open('/tmp/lmfast-sandbox-escape.txt', 'w').write('x')", "outside the work dir"),
        ("open('../code.py', 'a').write('x')", "outside the work dir"),
        ("print(open('/etc/hostname').read())", "outside the work dir"),
        ("import random\nwhile True:\n    random._os.fork()", "os.fork is not allowed"),
        ("import random\nrandom._os.system('echo hi')", "os.system is not allowed"),
        ("x = bytearray(2 * 1024**3)", "MemoryError"),
    ],
)  # fmt: skip
def test_sandbox_blocks(sandbox: Sandbox, code: str, message: str) -> None:
    r = sandbox.run(code)
    assert not r.ok and message in r.stderr, r.stderr
    assert not Path("/tmp/lmfast-sandbox-escape.txt").exists()


def test_sandbox_has_no_network_interface(sandbox: Sandbox) -> None:
    # Even with sockets allowed by the interpreter, the namespace has no route out.
    limits = sandbox.limits.model_copy(update={"allowed_modules": ["socket"]})
    r = Sandbox(limits).run("import socket\nsocket.create_connection(('127.0.0.1', 22), 1)")
    if not r.network_isolated:
        pytest.skip("unprivileged user namespaces are not available here")
    assert not r.ok and "sandbox: socket" in r.stderr


def test_sandbox_kills_runaway_code(sandbox: Sandbox) -> None:
    spin = sandbox.run("while True:\n    pass")
    assert spin.killed == "cpu_time" and spin.seconds < 4
    sleep = sandbox.run("import time\ntime.sleep(60)")
    assert sleep.killed == "wall_time" and sleep.seconds < 10
    flood = sandbox.run("while True:\n    print('x' * 1000)")
    assert flood.killed == "output_limit" and len(flood.stdout) <= 5000


# -- constrained decoding with real models --------------------------------------------------
def _valid_call(tools: list[Tool], text: str) -> dict:
    from lmfast.inference.tools import parse_tool_calls

    _, calls = parse_tool_calls(text)
    assert len(calls) == 1, text
    by_name = {t.name: t for t in tools}
    args = json.loads(calls[0].function.arguments)
    jsonschema.validate(args, by_name[calls[0].function.name].parameters)
    return args


def test_constrained_calls_from_the_embedded_model_are_schema_valid() -> None:
    from lmfast.generation import get_pipeline

    # Enums, a number and a string held to a pattern (the calculator's expression).
    tools = [convert_units, calculator]
    agent = Agent(tools, get_pipeline("smollm2-135m-instruct"), require_tool_first=True,
                  think=False, max_steps=1)  # fmt: skip
    for task in ["Convert 3 miles to km.", "How many pounds is 70 kg?", "What is 343 * 30?"]:
        result = agent.run(task)
        step = result.steps[0]
        assert step.calls and step.calls[0].valid, step.text
        _valid_call(tools, step.text)


def test_llamacpp_refuses_a_grammar_it_cannot_parse() -> None:
    """llama.cpp turns an unparseable grammar into a null sampler that crashes the engine
    when sampling starts: it must be a request error naming the field, and the engine
    must go on serving."""
    from lmfast.generation import get_pipeline
    from lmfast.inference.base import EngineRequest, RequestFieldError

    pipe = get_pipeline("smollm2-135m-instruct")
    bad = 'root ::= "a\\." "b"'  # an escape llama.cpp's parser does not know
    with pytest.raises(RequestFieldError, match="grammar"):
        pipe.engine.submit(EngineRequest(prompt="x", params=SamplingParams(), grammar=bad))
    reply = pipe.chat([ChatMessage(role="user", content="Say hi.")], SamplingParams(max_tokens=4))
    assert reply.finish_reason in ("length", "stop") and reply.text


def test_transformers_engine_constrains_a_random_model(tiny_pipeline) -> None:  # type: ignore[no-untyped-def]
    """xgrammar keeps even random weights inside the tool grammar."""
    pipe, engine = tiny_pipeline, tiny_pipeline.engine
    msgs = [ChatMessage(role="user", content="go")]
    for seed in range(3):
        params = SamplingParams(max_tokens=300, temperature=1.0, seed=seed)
        spec = convert_units.spec  # bounded arguments: random weights still finish
        out = pipe.chat(msgs, params, tools=[spec], tool_choice="required")
        assert out.finish_reason == "tool_calls" and len(out.tool_calls) == 1
        args = json.loads(out.tool_calls[0].function.arguments)
        jsonschema.validate(args, convert_units.parameters)
    grammar = step_grammar([calculator])
    text = pipe.chat(msgs, SamplingParams(max_tokens=200, temperature=1.0, seed=5),
                     grammar=grammar).text  # fmt: skip
    # A random model's thought may run to max_tokens, but never outside the format.
    assert text.startswith("Thought: ")
    if "\n" in text:
        assert text.split("\n", 1)[1].startswith(("<tool_call>", "Answer: "))
    # A grammar that does not parse is a request error naming the field (HTTP 400).
    from lmfast.inference.base import EngineRequest, RequestFieldError

    with pytest.raises(RequestFieldError, match="grammar"):
        engine.submit(EngineRequest(prompt="x", params=SamplingParams(), grammar="root ::= ("))


def test_grammar_errors_name_the_field() -> None:
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.inference.constrain import GrammarCompiler

    tok = load_tokenizer("smollm2-135m-instruct")
    compiler = GrammarCompiler(tok, len(tok), {tok.eos_token_id})
    with pytest.raises(ValueError, match="grammar"):
        compiler.compile("root ::= (")


# -- MCP client mode ------------------------------------------------------------------------
def test_agent_uses_a_real_lmfast_mcp_server(tmp_path: Path) -> None:
    from lmfast.agents.mcp_client import MCPToolset

    with MCPToolset.stdio(
        sys.executable, ["-m", "lmfast", "mcp"], env={"LMFAST_HOME": str(tmp_path)},
        only=["list_models", "model_info"],
    ) as remote:  # fmt: skip
        assert {t.name for t in remote.tools} == {"list_models", "model_info"}
        model = Scripted([
            "Thought: look\n" + _call("model_info", model="no-such-model"),
            "Thought: list\n" + _call("list_models"),
            "Thought: done\nAnswer: smollm2-135m-instruct",
        ])  # fmt: skip
        result = Agent(remote.tools, model).run("Which models are there?")
    first, second = result.calls
    assert first.error and "not found" in first.error
    assert "smollm2-135m-instruct" in second.result
    assert result.answer == "smollm2-135m-instruct"


def test_tool_spec_round_trip() -> None:
    spec = ToolSpec.model_validate(calculator.openai["function"])
    assert spec.name == "calculator" and spec.parameters["required"] == ["expression"]


# -- DataAgent ------------------------------------------------------------------------------
def test_data_agent_inspects_preps_and_evaluates(tmp_path: Path) -> None:
    from lmfast.agents.data_agent import DataAgent

    data = tmp_path / "data"
    data.mkdir()
    docs = [f"Document {i} explains how the river crossing at mile {i} was built in stone."
            for i in range(6)]  # fmt: skip
    rows = [{"id": i, "text": d} for i, d in enumerate(docs + docs[:2])]  # two exact duplicates
    (data / "docs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "secret.txt").write_text("do not read")
    tiny = make_tiny_llama(tmp_path / "tiny")
    model = Scripted([
        "Thought: look\n" + _call("inspect_file", path="docs.jsonl"),
        "Thought: escape\n" + _call("inspect_file", path="../secret.txt"),
        "Thought: prep\n" + _call("prep_dataset", path="docs.jsonl", filters="off"),
        "Thought: score\n" + _call("evaluate", model=str(tiny), tasks=["arithmetic"], limit=2),
        "Thought: done\nAnswer: 6 documents kept",
    ])  # fmt: skip
    result = DataAgent(model, root=data).run("Prepare docs.jsonl and evaluate the tiny model.")
    inspect, escape, prep, score = result.calls
    info = json.loads(inspect.result)
    assert (info["records"], info["format"], info["text_field"]) == (8, "text", "text")
    assert info["fields"] == ["id", "text"] and info["samples"][0]["id"] == "0"
    assert escape.result is None and "outside the allowed folder" in escape.error
    report = json.loads(prep.result)
    assert (report["documents_in"], report["documents_out"]) == (8, 6)
    assert report["exact_duplicates"] == 2 and report["artifact_id"].startswith("dataset-")
    scores = json.loads(score.result)
    assert set(scores["tasks"]) == {"arithmetic"}
    assert 0.0 <= scores["tasks"]["arithmetic"]["exact_match"] <= 1.0
    assert result.answer == "6 documents kept"
    # The persona's prompt names its job and its tools (rendered into the system message).
    system = model.seen[0][0].content
    assert "data assistant" in system and "prep_dataset" in system


# -- the example agent script: an agent driving training over MCP -------------------------
class Planner:
    """Stands in for a capable model: follows the example's plan, reading artifact ids from
    the tool results it is shown (so the real MCP round trips are what is tested)."""

    constrained = False
    native_tools = False
    name = "planner"

    def __init__(self, data: Path, base: Path) -> None:
        self.data, self.base, self.artifacts, self.seen = data, base, [], []

    def complete(self, messages, params, *, tools=None, grammar=None, n=1):  # type: ignore[no-untyped-def]
        self.seen.append(list(messages))
        last = messages[-1]
        if last.role == "tool":
            outcome = json.loads(last.content)
            assert outcome["status"] == "succeeded", outcome
            self.artifacts.append(outcome["result"]["artifact_id"])
        plan = [
            lambda: _call("prep_dataset", inputs=[str(self.data)], filters="off", wait=True),
            lambda: _call(
                "fine_tune",
                data=self.artifacts[0],
                model=str(self.base),
                max_steps=2,
                max_seq_length=64,
                wait=True,
            ),
            lambda: _call(
                "evaluate",
                models=[self.artifacts[1]],
                tasks=["arithmetic"],
                limit=2,
                efficiency=False,
                wait=True,
            ),
            lambda: _call(
                "quantize", model=self.artifacts[1], type="q8_0", measure=False, wait=True
            ),
            lambda: "Thought: done\nAnswer: " + " ".join(self.artifacts),
        ]
        text = plan[len(self.artifacts)]()
        return [Completion(text=text if "Answer" in text else "Thought: next\n" + text)]


def test_example_agent_script_drives_training_over_mcp(tmp_path: Path) -> None:
    import importlib.util

    path = Path(__file__).parents[1] / "examples" / "agent_drives_training.py"
    spec = importlib.util.spec_from_file_location("agent_drives_training", path)
    example = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(example)  # type: ignore[union-attr]

    data = tmp_path / "data" / "qa.jsonl"
    data.parent.mkdir()
    rows = [{"prompt": f"What is {i} + {i}?", "response": str(2 * i)} for i in range(24)]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    base = make_tiny_llama(tmp_path / "data" / "tiny")  # inside the server's allowed root
    planner = Planner(data, base)
    events: list = []
    result = example.run(data, planner, base=str(base), steps=2, tasks=("arithmetic",),
                         on_event=events.append)  # fmt: skip
    assert result.stop_reason == "answer"
    assert [c.name for c in result.calls] == ["prep_dataset", "fine_tune", "evaluate", "quantize"]
    assert all(c.valid and c.error is None for c in result.calls)
    dataset, adapter, report, gguf = planner.artifacts
    assert dataset.startswith("dataset-") and report.startswith("report-")
    from lmfast.artifacts import ArtifactStore

    store = ArtifactStore()
    assert store.get(gguf).manifest.kind == "export"
    assert store.get(adapter).manifest.kind == "adapter"
    assert result.answer == " ".join(planner.artifacts)
    # The task the script wrote reached the model, and every step was reported.
    assert "q8_0" in planner.seen[0][1].content
    assert [e.kind for e in events].count("tool_call") == 4


def test_agent_cli_runs_the_embedded_model_and_checks_its_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    runner = CliRunner()
    bad = runner.invoke(app, ["agent", "run", "hi", "--tools", "calculator,teleport"])
    assert bad.exit_code != 0 and "teleport" in bad.output and "--tools" in bad.output
    # Set-up problems are one clear message and exit code 2, never a traceback.
    for args, message in [
        (["--data", str(tmp_path / "missing")], "is not a folder"),
        (["--tools", ""], "tools: an agent needs at least one tool"),
        (["--mcp", "no-such-command-xyz"], "mcp: cannot start the MCP server"),
        (["--model", "http://127.0.0.1:9/v1#x"], "model: http://127.0.0.1:9/v1"),
    ]:
        out = runner.invoke(app, ["agent", "run", "hi", *args])
        assert out.exit_code == 2 and message in out.output, (args, out.output)
    ok = runner.invoke(app, ["agent", "run", "What is 258 * 22?", "--require-tool",
                             "--no-think", "--json"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    result = json.loads(ok.output)
    first = result["steps"][0]["calls"][0]
    assert first["name"] == "calculator" and first["valid"] and first["result"] == "5676"
    assert result["stop_reason"] == "answer" and "5676" in result["answer"]


def test_agent_on_an_openai_compatible_endpoint_uses_native_tools() -> None:
    """The remote path: the `openai` client against a real LMFast server; the first call is
    forced with the API's own tool_choice='required'."""
    from lmfast.agents.models import OpenAIModel

    from lmfast.config import ServeConfig
    from lmfast.serving import build_app
    from tests.server_utils import running

    with running(build_app(None, ServeConfig(context_length=4096))) as url:
        agent = Agent([calculator], f"{url}/v1#smollm2-135m-instruct", require_tool_first=True,
                      max_steps=2)  # fmt: skip
        assert isinstance(agent.model, OpenAIModel) and not agent.constrained
        result = agent.run("What is 258 * 22?")
    first = result.calls[0]
    assert first.name == "calculator" and first.valid and first.result == "5676"
    # The call went out as a native tool call and the result came back as a tool turn.
    assistant, tool_turn = result.transcript[2], result.transcript[3]
    assert assistant.tool_calls and assistant.tool_calls[0].function.name == "calculator"
    assert tool_turn.role == "tool" and tool_turn.tool_call_id == assistant.tool_calls[0].id
