"""The GRPO stage of agent specialization: one prompt per decision, and the reward for a turn.

SFT teaches the agent's format and the usual paths; what it leaves is judgement at each
turn: calling a tool when the last observation already answers the request (the specialized
135M model's commonest failure is chaining one call too many), the wrong item, the answer
copied from the wrong observation. GRPO works on exactly those decisions: every correct
trajectory gives one prompt per assistant turn (the conversation up to it, as the Agent
renders it), and `agent_turn` scores the model's sampled turn against what the correct
trajectory does there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from lmfast.agents.react import ANSWER_LINE
from lmfast.agents.taskgen import TaskInstance, answer_matches, trajectory

# The reward's reference for training.grpo.rewards (imported by TRL's trainer process).
REWARD = "lmfast.agents.specialize_grpo:agent_turn"
COLUMNS = ("tools", "tool", "arguments", "answer", "kind")
# What a turn must decide: the first call (the plan), another call after an observation, the
# answer after observations, or a refusal at the start.
TURNS = ("first", "again", "answer", "refuse")


def step_rows(
    instances: list[TaskInstance],
    system: str,
    tools: list[dict[str, Any]],
    *,
    think: bool,
    tool_turns: bool,
) -> list[dict[str, Any]]:
    """GRPO prompt rows: for each assistant turn of each correct trajectory, the messages
    before it (`prompt`) and what the turn should do: call `tool` with `arguments`, or give
    the `answer`, and which decision of `TURNS` the turn is. `tools`: the OpenAI-style
    definitions, for checking calls."""
    from lmfast.inference.chat_format import prepare_messages

    rows: list[dict[str, Any]] = []
    for inst in instances:
        messages = trajectory(inst, system, think=think, tool_turns=tool_turns)
        plain = prepare_messages(messages, tools=None, default_system=None, native_tools=False)
        turns = [i for i, m in enumerate(plain) if m["role"] == "assistant"]
        for k, at in enumerate(turns):
            calls = k < len(inst.calls)
            rows.append({
                "prompt": plain[:at],
                "tools": tools,
                "tool": inst.calls[k][0] if calls else None,
                "arguments": inst.calls[k][1] if calls else None,
                "answer": None if calls else inst.answer,
                "kind": inst.kind,
                "turn": ("first" if k == 0 else "again") if calls
                        else ("answer" if k else "refuse"),
            })  # fmt: skip
    return rows


def balance_turns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Repeat the turns that must call again after an observation until they are as many
    as the turns that must answer after one. Drawn tasks are mostly single calls, so
    "answer now" outnumbers "call again" about 2.5 to 1 (60 to 24 on the agent benchmark's
    tools), and GRPO on that mix taught the specialized model to stop after the first call
    of every chain (multi-step 33 % -> 17 %) while it cured chaining one call too many."""
    again = [r for r in rows if r["turn"] == "again"]
    answers = sum(r["turn"] == "answer" for r in rows)
    if not again or len(again) >= answers:
        return rows
    extra = [again[i % len(again)] for i in range(answers - len(again))]
    return rows + extra


def _same_value(expected: Any, got: Any) -> bool:
    """Arguments compare by value: numbers numerically, text without case or spaces (an
    expression's spacing does not change it)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(_same_value(v, got[k])
                                                     for k, v in expected.items())  # fmt: skip
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(map(_same_value, expected, got))
    if isinstance(expected, bool) or isinstance(got, bool):  # bools are ints to Python
        return expected is got
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(expected, got, rel_tol=1e-9)
    if isinstance(expected, str) and isinstance(got, str):
        return "".join(expected.split()).lower() == "".join(got.split()).lower()
    return bool(expected == got)


def turn_reward(
    completion: str,
    tools: Any,
    tool: str | None,
    arguments: Any,
    answer: str | None,
    kind: str | None,
) -> float:
    """One turn's reward.

    A turn that should call `tool`: 1 for that tool with the expected arguments, 0.5 for it
    with other valid arguments, 0.1 for a valid call of another tool, 0 for no call or an
    invalid one. A turn that should answer: 1 for an Answer line holding the expected
    answer (any Answer line for a refusal), 0.2 for another Answer line, 0 for a call, or
    for no Answer line at all."""
    from lmfast.inference.tools import OPEN, parse_tool_calls
    from lmfast.training.rewards import tool_call

    if tool is not None:
        validity = tool_call([completion], tools=[tools], tool=[tool])[0] or 0.0
        if validity < 1.0:
            return 0.1 if validity > 0 else 0.0
        _, calls = parse_tool_calls(completion)
        got = json.loads(calls[0].function.arguments)
        return 1.0 if arguments is None or _same_value(arguments, got) else 0.5
    if OPEN in completion:
        return 0.0
    found = ANSWER_LINE.search(completion)
    if not found:
        return 0.0
    if kind == "refusal" or answer is None:
        return 1.0
    return 1.0 if answer_matches(answer, found.group(1).strip()) else 0.2


def agent_turn(
    completions: list[str],
    tools: Sequence[Any] | None = None,
    tool: Sequence[str | None] | None = None,
    arguments: Sequence[Any] | None = None,
    answer: Sequence[str | None] | None = None,
    kind: Sequence[str | None] | None = None,
    **_: Any,
) -> list[float | None]:
    """GRPO reward (LMFast's contract) over rows from `step_rows`."""
    if tools is None or tool is None:
        raise ValueError("the prompt rows have no 'tools' / 'tool' fields (see step_rows)")
    n = len(completions)
    arguments = arguments if arguments is not None else [None] * n
    answer = answer if answer is not None else [None] * n
    kind = kind if kind is not None else [None] * n
    return [
        turn_reward(c, tools[i], tool[i], arguments[i], answer[i], kind[i])
        for i, c in enumerate(completions)
    ]
