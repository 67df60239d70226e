"""Reward functions for GRPO: the built-in ones and the user's own, behind one contract.

A reward function is called once per batch of completions:

    f(completions: list[str], prompts: list[str], **columns) -> list[float | None]

`columns` are the prompt rows' other fields (answer, tools, pattern, ...), one value per
completion; None means "does not apply" (TRL averages it out). LMFast wraps every function so
that a reward that raises, returns the wrong number of values or a non-number stops the run
with the function's name and the completion it failed on, instead of TRL's bare traceback.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from lmfast.config import GRPOSettings
from lmfast.errors import LMFastError

RewardFn = Callable[..., list[float | None]]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_LINE = re.compile(r"(?:^|\n)\s*(?:final\s+)?answer\s*[:=]\s*(.+)", re.IGNORECASE)


# What TRL adds to a reward's keyword arguments besides the rows' columns.
_TRAINER_ONLY = ("trainer_state", "log_extra", "log_metric", "environments")


class RewardError(LMFastError):
    """A reward function failed; the message names it and the completion."""


def completion_text(completion: Any) -> str:
    """TRL hands conversational completions as message lists: the assistant's text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))
    return str(completion)


def final_answer(text: str) -> str:
    """What a completion answers: the text after the last 'Answer:' line, else all of it."""
    found = _ANSWER_LINE.findall(text)
    return (found[-1] if found else text).strip()


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".").strip()).lower()


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def answer_matches(completion: str, answer: Any) -> bool:
    """The completion's final answer is the reference: numbers compare by value (its last
    number), text case- and space-insensitively."""
    said = final_answer(completion)
    expected = str(answer).strip()
    target = _as_number(expected)
    if target is not None:
        numbers = _NUMBER.findall(said)
        return bool(numbers) and math.isclose(
            _as_number(numbers[-1]) or math.nan, target, rel_tol=1e-9, abs_tol=1e-9
        )
    return _normalise(said) == _normalise(expected)


def exact_answer(
    completions: list[str], answer: Sequence[Any] | None = None, **_: Any
) -> list[float | None]:
    """1 when the completion's final answer equals the row's `answer`, else 0."""
    if answer is None:
        raise ValueError("the prompt rows have no 'answer' field")
    return [
        None if a is None else float(answer_matches(c, a))
        for c, a in zip(completions, answer, strict=True)
    ]


def format_reward(settings: GRPOSettings) -> RewardFn:
    """1 when the whole completion matches the pattern (the row's `pattern`, else
    training.grpo.pattern), else 0."""
    default = re.compile(settings.pattern, re.DOTALL) if settings.pattern else None

    def format(
        completions: list[str], pattern: Sequence[str | None] | None = None, **_: Any
    ) -> list[float | None]:
        scores: list[float | None] = []
        for i, c in enumerate(completions):
            own = pattern[i] if pattern is not None else None
            regex = re.compile(own, re.DOTALL) if own else default
            if regex is None:
                raise ValueError("no pattern: set training.grpo.pattern or a 'pattern' field")
            scores.append(float(regex.fullmatch(c.strip()) is not None))
        return scores

    return format


def _json_value(text: str) -> Any:
    text = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    return json.loads(fenced.group(1) if fenced else text)


def json_valid(
    completions: list[str], schema: Sequence[Any] | None = None, **_: Any
) -> list[float | None]:
    """1 when the completion is JSON (and fits the row's `schema`, when there is one)."""
    import jsonschema

    scores: list[float | None] = []
    for i, c in enumerate(completions):
        try:
            value = _json_value(c)
        except ValueError:
            scores.append(0.0)
            continue
        own = schema[i] if schema is not None else None
        if own:
            own = json.loads(own) if isinstance(own, str) else own
            scores.append(float(jsonschema.Draft202012Validator(own).is_valid(value)))
        else:
            scores.append(1.0)
    return scores


def _tool_schemas(tools: Any) -> dict[str, dict[str, Any]]:
    """{name: parameters schema} from OpenAI-style tool definitions (or their JSON)."""
    if isinstance(tools, str):
        tools = json.loads(tools)
    found: dict[str, dict[str, Any]] = {}
    for t in tools or []:
        fn = t.get("function", t) if isinstance(t, dict) else {}
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            found[fn["name"]] = fn.get("parameters") or {"type": "object"}
    return found


def tool_call(
    completions: list[str],
    tools: Sequence[Any] | None = None,
    tool: Sequence[str | None] | None = None,
    **_: Any,
) -> list[float | None]:
    """A completion that should call a tool: 1 for one well-formed call of the row's
    expected `tool` (any tool when the row names none) whose arguments fit its schema;
    0.5 for a valid call of another tool; 0 for no call, bad JSON, an unknown tool or
    arguments that do not fit. Rows without `tools` score None."""
    import jsonschema

    from lmfast.inference.tools import parse_tool_calls

    if tools is None:
        raise ValueError("the prompt rows have no 'tools' field (OpenAI-style definitions)")
    scores: list[float | None] = []
    for i, c in enumerate(completions):
        if tools[i] is None:
            scores.append(None)
            continue
        schemas = _tool_schemas(tools[i])
        _, calls = parse_tool_calls(c)
        if len(calls) != 1 or calls[0].function.name not in schemas:
            scores.append(0.0)
            continue
        call = calls[0].function
        try:
            arguments = json.loads(call.arguments)
        except ValueError:
            scores.append(0.0)
            continue
        if not jsonschema.Draft202012Validator(schemas[call.name]).is_valid(arguments):
            scores.append(0.0)
            continue
        expected = tool[i] if tool is not None else None
        scores.append(1.0 if expected in (None, call.name) else 0.5)
    return scores


def length_reward(settings: GRPOSettings) -> RewardFn:
    """1 up to training.grpo.target_length tokens, then target / length."""
    target = settings.target_length or 1

    def length(
        completions: list[str], completion_ids: Sequence[Sequence[int]] | None = None, **_: Any
    ) -> list[float | None]:
        sizes = (
            [len(ids) for ids in completion_ids]
            if completion_ids is not None
            else [len(c.split()) for c in completions]
        )
        return [1.0 if n <= target else target / n for n in sizes]

    return length


def _builtin(name: str, settings: GRPOSettings) -> RewardFn:
    if name == "format":
        return format_reward(settings)
    if name == "length":
        return length_reward(settings)
    return {"exact_answer": exact_answer, "json_valid": json_valid, "tool_call": tool_call}[name]


def load_user_reward(reference: str) -> RewardFn:
    """module:function or file.py:function; a clear error when either part is missing."""
    from lmfast.user_code import load_object

    fn = load_object(reference, "training.grpo.rewards")
    if not callable(fn):
        raise LMFastError(f"training.grpo.rewards: {reference!r} is not a function")
    return fn


def guarded(name: str, fn: RewardFn, nested: frozenset[str] = frozenset()) -> RewardFn:
    """`fn` with LMFast's contract: plain-text completions and prompts in, checked floats out;
    every failure names the reward and the completion. `nested`: columns that crossed Arrow
    as JSON text, handed back as the lists and objects they were."""

    def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        prompt_texts = [completion_text(p) for p in prompts]
        kept = {k: v for k, v in columns.items() if k not in _TRAINER_ONLY}
        for k in nested & kept.keys():
            kept[k] = [json.loads(v) if isinstance(v, str) else v for v in kept[k]]
        try:
            scores = list(fn(completions=texts, prompts=prompt_texts, **kept))
        except Exception as e:
            sample = texts[0][:200] if texts else ""
            raise RewardError(
                f"reward {name!r} raised {type(e).__name__}: {e} (on {len(texts)} completions; "
                f"the first: {sample!r})"
            ) from e
        if len(scores) != len(texts):
            raise RewardError(
                f"reward {name!r} returned {len(scores)} values for {len(texts)} completions; "
                "return one float (or None) per completion"
            )
        for i, s in enumerate(scores):
            if s is None:
                continue
            if not isinstance(s, (int, float)) or not math.isfinite(s):
                raise RewardError(
                    f"reward {name!r} returned {s!r} for completion {i} ({texts[i][:200]!r}); "
                    "rewards are finite numbers or None"
                )
        return [None if s is None else float(s) for s in scores]

    reward.__name__ = name.rpartition(":")[2]  # TRL logs rewards/<name>/mean
    return reward


def load_rewards(settings: GRPOSettings, nested: frozenset[str] = frozenset()) -> list[RewardFn]:
    """The recipe's rewards, each guarded; built-ins by name, the rest imported."""
    return [
        guarded(
            name,
            _builtin(name, settings) if ":" not in name else load_user_reward(name),
            nested,
        )
        for name in settings.rewards
    ]


def score(
    rewards: list[RewardFn],
    rows: list[dict[str, Any]],
    completions: list[str],
    prompts: list[str],
    completion_ids: list[list[int]],
) -> dict[str, float]:
    """Mean of each reward over `completions` (one per row), for held-out measurements."""
    columns = {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r} if k != "prompt"}
    means: dict[str, float] = {}
    for fn in rewards:
        out = fn(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
        values = [v for v in out if v is not None]
        means[fn.__name__] = sum(values) / len(values) if values else math.nan
    return means
