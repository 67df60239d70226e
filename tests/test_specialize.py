"""Agent specialization: task files checked by field, tasks drawn and executed, held-out
tasks unseen, trajectories in the agent's own run-time format, and (slow) a tiny model
specialized end to end whose adapter and GGUF the Agent loads, also as an MCP job."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import pytest
from lmfast.agents import Agent, tool
from lmfast.agents.builtin import calculator
from lmfast.agents.react import system_prompt
from lmfast.agents.taskgen import (
    TaskFile,
    TaskFileError,
    answer_matches,
    build_tasks,
    chat_rows,
    load_task_file,
    schema_tasks,
    trajectory,
)

from lmfast.inference.base import SamplingParams
from lmfast.inference.chat_format import prepare_messages
from tests.test_agents import Scripted

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


PRICES = {"apple": 0.5, "pear": 0.75, "plum": 0.25, "fig": 1.5}


@tool
def price(fruit: Literal["apple", "pear", "plum", "fig"]) -> str:
    """The price of one fruit in euros.

    Args:
        fruit: Which fruit.
    """
    return f"{PRICES[fruit]} EUR"


TASKS = """
values:
  n: {min: 2, max: 30}
tasks:
  - task: ["How much is one {fruit}?", "What does a {fruit} cost?", "Price of a {fruit}?"]
    calls: [price: {fruit: "{fruit}"}]
  - task: ["What do {n} of {fruit} cost?", "Cost of {n} times {fruit}?"]
    calls:
      - price: {fruit: "{fruit}"}
      - calculator: {expression: "{number1} * {n}"}
    answer: "{result} EUR"
"""


def _spec(tmp_path: Path, text: str = TASKS) -> TaskFile:
    path = tmp_path / "tasks.yaml"
    path.write_text(text)
    return load_task_file(path)


def test_task_files_are_checked_by_task_and_field(tmp_path: Path) -> None:
    tools = [price, calculator]
    cases = [
        ("tasks:\n  - task: hi\n    calls: [weather: {city: x}]\n",
         "tasks[0]: calls tool 'weather'"),
        ("tasks:\n  - task: 'a {z}'\n    calls: [calculator: {expression: '1+{z}'}]\n",
         "slot {z} has no values"),
        ("tasks:\n  - task: hi\n    calls: [price: {fruit: fig}]\n    answer: '{result3}'\n",
         "refers to call 3, but there are 1"),
        ("tasks:\n  - task: 'x {result1}'\n    calls: [price: {fruit: fig}]\n",
         "cannot use a tool's result"),
    ]  # fmt: skip
    for text, message in cases:
        with pytest.raises(TaskFileError, match=message.replace("{", r"\{").replace("[", r"\[")):
            build_tasks(_spec(tmp_path, text), tools, train=10, held_out=0, executable=set())
    with pytest.raises(TaskFileError, match=r"tasks\.0\.calls: .*at least 1"):
        _spec(tmp_path, "tasks:\n  - task: hi\n    calls: []\n")
    with pytest.raises(TaskFileError, match="not valid YAML"):
        _spec(tmp_path, "tasks: [unclosed\n")


def test_tasks_are_executed_and_held_out_tasks_are_unseen(tmp_path: Path) -> None:
    tools = [price, calculator]
    sets = build_tasks(_spec(tmp_path), tools, train=60, held_out=8,
                       executable={"price", "calculator"}, seed=3)  # fmt: skip
    assert len(sets.train) == 60 and len(sets.held_out) == 8
    assert {"single", "chain", "refusal"} <= set(sets.by_kind)
    train_texts = {i.task for i in sets.train}
    assert not train_texts & {i.task for i in sets.held_out}
    # A template's last phrasing is kept for held-out tasks only.
    assert not any(t.startswith(("Price of a", "Cost of")) for t in train_texts)
    held = [i for i in sets.held_out if i.kind != "refusal"]
    assert held and all(i.task.startswith(("Price of a", "Cost of")) for i in held)
    for inst in sets.train + sets.held_out:
        if inst.kind == "chain":
            (_, first), (_, second) = inst.calls
            n = int(re.search(r"\d+", inst.task).group())
            expected = PRICES[first["fruit"]] * n
            # The calculator really ran on the looked-up price.
            assert second["expression"] == f"{PRICES[first['fruit']]:g} * {n}"
            assert inst.results[0] == f"{PRICES[first['fruit']]} EUR"
            assert answer_matches(inst.answer, f"It costs {expected} euros")
        elif inst.kind == "refusal":
            assert not inst.calls and "none of my tools" in inst.answer


def test_extra_tasks_leave_the_other_sets_alone_and_stay_unseen(tmp_path: Path) -> None:
    """GRPO's tasks are drawn after the others: SFT and held-out sets are the same with or
    without them, and none of their texts is a held-out one."""
    tools = [price, calculator]
    plain = build_tasks(_spec(tmp_path), tools, train=40, held_out=8,
                        executable={"price", "calculator"}, seed=5)  # fmt: skip
    more = build_tasks(_spec(tmp_path), tools, train=40, held_out=8,
                       executable={"price", "calculator"}, seed=5, extra=30)  # fmt: skip
    assert [i.task for i in more.train] == [i.task for i in plain.train]
    assert [i.task for i in more.held_out] == [i.task for i in plain.held_out]
    assert len(more.extra) == 30 and not plain.extra
    assert not {i.task for i in more.extra} & {i.task for i in more.held_out}


def test_turn_prompts_and_the_turn_reward(tmp_path: Path) -> None:
    """One GRPO prompt per assistant turn of a correct trajectory; the correct turn earns
    the full reward and each kind of mistake earns less, in the order that teaches."""
    from lmfast.agents.specialize_grpo import (
        COLUMNS,
        _same_value,
        agent_turn,
        balance_turns,
        step_rows,
    )

    tools = [price, calculator]
    sets = build_tasks(_spec(tmp_path), tools, train=20, held_out=0,
                       executable={"price", "calculator"}, seed=1)  # fmt: skip
    chain = next(i for i in sets.train if i.kind == "chain")
    refusal = next(i for i in sets.train if i.kind == "refusal")
    system = system_prompt(tools, listing="compact")
    schemas = [t.openai for t in tools]
    rows = step_rows([chain, refusal], system, schemas, think=True, tool_turns=False)
    assert [(r["tool"], r["answer"] is not None, r["turn"]) for r in rows] == [
        ("price", False, "first"),
        ("calculator", False, "again"),
        (None, True, "answer"),
        (None, True, "refuse"),
    ]
    # Single calls outnumber chains: the "call again" turns are repeated to match "answer".
    single = [i for i in sets.train if i.kind == "single"][:3]
    mixed = step_rows([chain, *single], system, schemas, think=True, tool_turns=False)
    balanced = balance_turns(mixed)
    assert [r["turn"] for r in mixed].count("answer") == 4
    assert [r["turn"] for r in balanced].count("again") == 4
    assert balanced[: len(mixed)] == mixed and balance_turns(rows) == rows
    full = prepare_messages(trajectory(chain, system, think=True, tool_turns=False), tools=None,
                            default_system=None, native_tools=False)  # fmt: skip
    turns = [m["content"] for m in full if m["role"] == "assistant"]
    assert len(turns) == 3
    for row in rows[:3]:
        assert row["prompt"][-1]["role"] != "assistant" and row["prompt"][0]["role"] == "system"
        assert full[: len(row["prompt"])] == row["prompt"]  # the conversation before the turn

    def score(row: dict[str, Any], completion: str) -> float:
        columns = {k: [row[k]] for k in COLUMNS}
        return agent_turn([completion], **columns)[0]

    call, second, final = rows[:3]
    fruit = call["arguments"]["fruit"]
    other = next(f for f in PRICES if f != fruit)
    assert [score(r, t) for r, t in zip(rows[:3], turns, strict=True)] == [1.0, 1.0, 1.0]

    def calling(name: str, args: dict[str, Any]) -> str:
        call = json.dumps({"name": name, "arguments": args})
        return f"Thought: x\n<tool_call>\n{call}\n</tool_call>"

    assert score(call, calling("price", {"fruit": other})) == 0.5  # right tool, other item
    assert score(call, calling("calculator", {"expression": "1 + 1"})) == 0.1  # other tool
    assert score(call, calling("price", {"fruit": "kiwi"})) == 0.0  # outside the schema
    assert score(call, "Answer: 3 EUR") == 0.0  # answered instead of looking it up
    spaced = second["arguments"]["expression"].replace(" ", "")
    assert score(second, calling("calculator", {"expression": spaced})) == 1.0
    assert score(final, calling("calculator", {"expression": "2 * 2"})) == 0.0  # one call too many
    assert score(final, "Thought: done\nAnswer: 123456 EUR") == 0.2  # wrong answer
    assert score(final, "I think it is cheap") == 0.0  # no Answer line
    assert score(rows[3], "Answer: none of my tools can do that") == 1.0  # a refusal
    assert _same_value({"on": True, "n": 2}, {"on": True, "n": 2.0})
    assert not _same_value({"on": True}, {"on": 1}) and not _same_value(False, 0)


def test_said_values_and_skipped_draws(tmp_path: Path) -> None:
    from lmfast.agents.builtin import convert_units

    text = """
values:
  u: [{say: kilometres, value: kilometre}, {say: grams, value: gram}]
  v: [{say: metres, value: metre}, {say: kilograms, value: kilogram}]
tasks:
  - task: "Convert 3 {u} to {v}."
    calls: [convert_units: {value: 3, from_unit: "{u}", to_unit: "{v}"}]
"""
    sets = build_tasks(_spec(tmp_path, text), [convert_units], train=8, held_out=0,
                       executable={"convert_units"}, seed=1)  # fmt: skip
    for inst in (i for i in sets.train if i.kind != "refusal"):
        args = inst.calls[0][1]
        # Shown in words, passed as the tool's value; pairs that do not convert are redrawn.
        pair = (args["from_unit"], args["to_unit"])
        assert pair in {("kilometre", "metre"), ("gram", "kilogram")}
        assert inst.task in {"Convert 3 kilometres to metres.", "Convert 3 grams to kilograms."}
    assert sets.skipped > 0


def test_schema_tasks_need_values_for_free_text() -> None:
    spec = schema_tasks([price])
    assert spec.tasks[0].task == ["The price of one fruit in euros, with fruit {price_fruit}."]

    @tool
    def search(query: str) -> str:
        """Search the notes.

        Args:
            query: What to look for.
        """
        return query

    with pytest.raises(TaskFileError, match=r"search\.query is free text"):
        schema_tasks([search])


@pytest.mark.parametrize("listing", ["compact", "schemas"])
def test_trajectories_are_what_the_agent_exchanges(tmp_path: Path, listing: Any) -> None:
    """Replaying a trajectory's assistant turns through the Agent gives the same messages,
    rendered the same way: the model is trained on exactly what it will see."""
    tools = [price, calculator]
    sets = build_tasks(_spec(tmp_path), tools, train=30, held_out=0,
                       executable={"price", "calculator"}, seed=5)  # fmt: skip
    system = system_prompt(tools, listing=listing)
    for inst in [next(i for i in sets.train if i.kind == k) for k in ("chain", "refusal")]:
        expected = trajectory(inst, system, think=True, tool_turns=False)
        replies = [prepare_messages([m], tools=None, default_system=None, native_tools=False)[0]
                   ["content"] for m in expected if m.role == "assistant"]  # fmt: skip
        model = Scripted(replies)
        model.tool_turns = False
        model.agent_profile = {"tool_listing": listing}
        result = Agent(tools, model, max_steps=5).run(inst.task)
        assert result.answer == inst.answer
        rendered = prepare_messages(result.transcript, tools=None, default_system=None,
                                    native_tools=False)  # fmt: skip
        row = chat_rows([inst], system, think=True, tool_turns=False)[0]["messages"]
        assert rendered == row


def test_compact_listing_is_short_and_names_arguments() -> None:
    from lmfast.agents.react import compact_line

    line = "- price(fruit: apple|pear|plum|fig): The price of one fruit in euros."
    assert compact_line(price) == line
    assert (
        len(system_prompt([price, calculator], listing="compact"))
        < len(system_prompt([price, calculator])) / 2
    )


def test_requests_name_their_problem(tmp_path: Path) -> None:
    from lmfast.agents.specialize import SpecializeRequest, specialize
    from lmfast.agents.toolsets import ToolsetError

    with pytest.raises(ToolsetError, match="'nope' is not a built-in tool"):
        specialize(SpecializeRequest(tools=["nope"]))
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps([{"type": "function", "function": {"description": "x"}}]))
    with pytest.raises(ToolsetError, match="item 0 has no function name"):
        specialize(SpecializeRequest(tools=[str(bad)]))
    with pytest.raises(Exception, match="has no missing"):
        specialize(SpecializeRequest(tools=[f"{Path(__file__)}:missing"]))
    # Relative files become absolute for the job worker.
    request = SpecializeRequest(tools=["calculator", "tests/test_specialize.py:price"],
                                tasks="pyproject.toml")  # fmt: skip
    assert Path(request.tools[1].rpartition(":")[0]).is_absolute()
    assert Path(request.tasks or "").is_absolute()


@pytest.mark.slow
def test_specialize_end_to_end_gives_an_adapter_and_gguf_the_agent_uses(tmp_path: Path) -> None:
    from lmfast.agents.specialize import SpecializeRequest, specialize

    from lmfast.config import LMFastConfig
    from tests.tiny_models import make_tiny_llama

    tiny = make_tiny_llama(tmp_path / "tiny")
    (tmp_path / "tasks.yaml").write_text(TASKS)
    config = LMFastConfig()
    config.training.max_steps = 3
    config.training.grpo.max_completion_length = 16
    progress: list[str] = []
    result = specialize(
        SpecializeRequest(
            tools=[f"{Path(__file__)}:price", "calculator"], tasks=str(tmp_path / "tasks.yaml"),
            model=str(tiny), train_tasks=24, held_out_tasks=2, config=config, grpo_steps=2,
        ),
        lambda step, total=None, message="", **m: progress.append(message),
    )  # fmt: skip
    assert result.tools == ["price", "calculator"] and result.train_tasks == 24
    rows = [json.loads(x) for x in Path(result.data).read_text().splitlines()]
    assert len(rows) == 24 and rows[0]["messages"][0]["content"].startswith("You solve")
    assert any(m.startswith("plan: 24 training conversations") for m in progress)
    assert any(m.startswith("train: step") for m in progress)
    assert any(m.startswith("score specialized") for m in progress)
    assert result.training.kind == "adapter" and result.training.metrics
    assert result.base is not None and result.specialized is not None
    assert result.specialized.tasks == 2 and 0 <= result.specialized.success <= 1
    # GRPO went on from the SFT adapter: one adapter over the same base, descended from it.
    assert result.grpo is not None and result.sft is not None and result.sft.tasks == 2
    assert result.grpo.metrics["steps"] == 2 and "base_reward_agent_turn" in result.grpo.metrics
    assert any(m.startswith("grpo: ") for m in progress)
    from lmfast.artifacts import ArtifactStore

    grpo_art = ArtifactStore().get(result.grpo.artifact_id)
    assert grpo_art.manifest.parents[0] == result.training.artifact_id
    adapter_cfg = json.loads((Path(result.grpo.path) / "adapter_config.json").read_text())
    assert Path(adapter_cfg["base_model_name_or_path"]) == tiny.resolve()
    turns = [json.loads(x) for x in (Path(result.data).parent / "grpo_turns.jsonl").open()]
    assert len(turns) >= 20 and all(r["tools"] and "prompt" in r for r in turns)
    assert result.gguf and Path(result.gguf).is_file()
    for model in (result.gguf, result.grpo.path):
        # The agent settings travel with the model: the Agent picks them up.
        agent = Agent([price, calculator], model, max_steps=2,
                      params=SamplingParams(temperature=0.0, max_tokens=24))  # fmt: skip
        assert agent.tool_listing == "compact" and agent.think
        run = agent.run("How much is one fig?")
        assert run.stop_reason in ("answer", "max_steps", "truncated")
        assert all(c.valid for c in run.calls)  # the grammar holds even a random model


TOY = '''
from typing import Literal
from lmfast.agents import tool

@tool
def price(fruit: Literal["apple", "pear", "plum", "fig"]) -> str:
    """The price of one fruit in euros.

    Args:
        fruit: Which fruit.
    """
    return {"apple": "0.5", "pear": "0.75", "plum": "0.25", "fig": "1.5"}[fruit] + " EUR"
'''


def _mcp_text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_mcp_specialize_confines_tools_and_files(lmfast_home: Path) -> None:
    from lmfast.mcp_server import build_server
    from mcp import Client

    async with Client(build_server()) as client:
        for arguments, message in [
            ({"tools": ["os:system"]}, "over MCP a tool is built-in"),
            ({"tools": ["/etc/x.py:f"]}, "outside the allowed roots"),
            ({"tools": ["calculator"], "tasks": "/etc/passwd"}, "outside the allowed roots"),
            ({"tools": []}, "tools"),
        ]:
            refused = await client.call_tool("specialize_agent", arguments)
            assert refused.is_error and message in _mcp_text(refused), _mcp_text(refused)


@pytest.mark.slow
async def test_mcp_specialize_runs_as_a_job_with_progress_and_cancel(lmfast_home: Path) -> None:
    import anyio
    from lmfast.mcp_server import build_server
    from mcp import Client

    from tests.tiny_models import make_tiny_llama

    tiny = make_tiny_llama(lmfast_home / "tiny")
    (lmfast_home / "toy.py").write_text(TOY)
    (lmfast_home / "tasks.yaml").write_text(TASKS)
    arguments = {
        "tools": [f"{lmfast_home / 'toy.py'}:price", "calculator"],
        "tasks": str(lmfast_home / "tasks.yaml"), "model": str(tiny), "train_tasks": 12,
        "held_out_tasks": 2, "max_steps": 2, "gguf": False, "score_base": False,
    }  # fmt: skip
    messages: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(build_server()) as client:
        done = await client.call_tool("specialize_agent", {**arguments, "wait": True},
                                      progress_callback=on_progress)  # fmt: skip
        assert not done.is_error, _mcp_text(done)
        out = done.structured_content
        assert out["status"] == "succeeded", out
        assert out["result"]["training"]["kind"] == "adapter"
        assert out["result"]["specialized"]["tasks"] == 2
        assert any(m.startswith("plan: 12 training conversations") for m in messages)
        assert any(m.startswith("train: step") for m in messages)
        # A second run, cancelled while it trains: a job like every other.
        started = await client.call_tool("specialize_agent", {**arguments, "max_steps": 400,
                                                              "name": "cancelled"})  # fmt: skip
        job_id = started.structured_content["job_id"]
        for _ in range(600):
            status = (await client.call_tool("job_status", {"job_id": job_id})).structured_content
            if status["status"] == "running" and "train" in (status["message"] or ""):
                break
            await anyio.sleep(0.1)
        cancelled = await client.call_tool("cancel_job", {"job_id": job_id})
        assert cancelled.structured_content["status"] == "cancelled"
        result = await client.call_tool("job_result", {"job_id": job_id})
        assert result.structured_content["status"] == "cancelled"
