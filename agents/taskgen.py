"""Tasks and correct trajectories for a tool set, from task templates and the tools' schemas.

A task file names requests a user would make, with `{slots}`, and the calls that answer
them:

    values:
      n: {min: 2, max: 20}
    tasks:
      - task: ["What is the population of {city}?", "How many people live in {city}?"]
        calls:
          - lookup_city: {city: "{city}", field: population}
      - task: "What is the population of {city} divided by {n}?"
        calls:
          - lookup_city: {city: "{city}", field: population}
          - calculator: {expression: "{result1} / {n}"}
        answer: "{result2}"

A slot takes its values from `values`, or, when some call argument is exactly that slot,
from the argument's schema (enum, integer / number bounds, boolean). `{resultN}` is the Nth
call's result as the tool returned it, `{numberN}` the first number in it; `answer`
defaults to the last result. Each instance is executed (where the tools can be), so its
observations and answer are what the tools really return; an instance whose tool raises
(units that do not convert) is skipped. A template with two or more phrasings keeps its
last one for held-out tasks only, so they are worded differently from anything trained.

Requests no tool fits (`refuse`, default a built-in list) teach the model to answer that
it cannot help rather than call something.
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfast.agents.tools import Tool, ToolArgumentError, result_text
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmfast.errors import LMFastError
from lmfast.inference.base import ChatMessage, ToolCall, ToolCallFunction
from lmfast.inference.tools import new_call_id


class TaskFileError(LMFastError, ValueError):
    """A task file that cannot be used; the message names the task and the field."""


REFUSALS = [
    "Write a short poem about the sea.",
    "Tell me a joke about cats.",
    "What is your favourite colour?",
    "Translate 'good morning' into Japanese.",
    "Summarise the plot of Hamlet.",
    "Who won the football world cup in 1998?",
    "Book me a table for two tonight.",
    "What will the weather be like tomorrow?",
    "Send an email to my manager saying I am late.",
    "Write a cover letter for a job as a chef.",
    "What is the meaning of life?",
    "Recommend a good science fiction novel.",
    "Play some relaxing music.",
    "How do I bake sourdough bread?",
    "Give me three tips for a job interview.",
    "What's the latest news about the stock market?",
    "Draw a picture of a horse.",
    "Who painted the Mona Lisa?",
    "Set an alarm for 7 am.",
    "Explain quantum entanglement simply.",
    "Write a limerick about a programmer.",
    "What should I cook for dinner?",
    "Order a pizza with extra cheese.",
    "Describe the smell of rain.",
    "Hi! How are you today?",
    "Can you help me write a birthday message for my sister?",
    "What are the rules of chess?",
    "Tell me a bedtime story about a dragon.",
    "Which programming language should I learn first?",
    "Fix the grammar in this sentence: 'me and him goes to school'.",
    "What do you think about modern art?",
    "Remind me to call my mother tomorrow.",
    "Write a haiku about autumn leaves.",
    "Why is the sky blue?",
    "Suggest a name for my new puppy.",
    "Who was the first person on the moon?",
    "Give me a motivational quote.",
    "Turn off the lights in the kitchen.",
    "Plan a three-day trip to the mountains.",
    "What's a good gift for a ten-year-old?",
    "Explain how vaccines work.",
    "Write a tweet announcing our new product.",
    "Are you a human or a computer?",
    "List the planets of the solar system.",
    "How can I sleep better?",
    "Compose a short song about friendship.",
    "What is the capital of Mongolia?",
    "Help me choose between two job offers.",
]
REFUSAL_ANSWER = "I cannot help with that: none of my tools ({tools}) fits this request."

_SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RESULT = re.compile(r"^(result|number)([1-9]?)$")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class Said(BaseModel):
    """A slot value shown one way in the request and passed another way to the tool:
    {say: kilometres, value: kilometre}."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    say: str
    value: Any


class Range(BaseModel):
    """Numbers from min to max (integers unless `decimals` is set)."""

    model_config = ConfigDict(extra="forbid")
    min: float
    max: float
    decimals: int = Field(0, ge=0, le=6)


class CallTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class TaskTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: list[str] = Field(description="Phrasings of one request, with {slots}.")
    calls: list[CallTemplate] = Field(min_length=1, max_length=5)
    answer: str = Field("{result}", description="The final answer, with {slots}/{resultN}.")

    @field_validator("task", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("calls", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        """`- tool_name: {arguments}` as well as `- {tool: ..., arguments: ...}`."""
        if not isinstance(v, list):
            return v
        out = []
        for c in v:
            if isinstance(c, dict) and "tool" not in c and len(c) == 1:
                ((name, args),) = c.items()
                c = {"tool": name, "arguments": args or {}}
            out.append(c)
        return out


class TaskFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: dict[str, list[Said | Any] | Range] = Field(default_factory=dict)
    tasks: list[TaskTemplate] = Field(default_factory=list)
    refuse: list[str] | None = Field(
        None, description="Requests no tool fits (default: a built-in list; [] for none)."
    )


@dataclass
class TaskInstance:
    """One request with its correct trajectory."""

    template: int  # index into the task file's tasks; -1 for a refusal
    kind: str  # single, chain, refusal
    task: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    results: list[str | None] = field(default_factory=list)  # None: the tool is not executable
    answer: str | None = None


def load_task_file(path: str | Path) -> TaskFile:
    """Read a task file (YAML or JSON); a TaskFileError names the file and the field."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TaskFileError(f"tasks: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise TaskFileError(f"tasks: {path.name} is not valid YAML/JSON: {e}") from None
    if isinstance(raw, list):
        raw = {"tasks": raw}
    try:
        return TaskFile.model_validate(raw or {})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:5]
        )
        raise TaskFileError(f"tasks: {path.name}: {problems}") from None


def check_task_file(spec: TaskFile, tools: list[Tool]) -> None:
    """Every template names known tools, and every slot has values."""
    by_name = {t.name: t for t in tools}
    for i, t in enumerate(spec.tasks):
        where = f"tasks[{i}]"
        for c in t.calls:
            if c.tool not in by_name:
                raise TaskFileError(
                    f"{where}: calls tool {c.tool!r}; the tools are {', '.join(by_name)}"
                )
        for slot in _slots_of(t):
            if _RESULT.match(slot):
                n = int(slot[-1]) if slot[-1].isdigit() else len(t.calls)
                if n > len(t.calls):
                    raise TaskFileError(
                        f"{where}: {{{slot}}} refers to call {n}, but there are {len(t.calls)}"
                    )
                continue
            if slot not in spec.values and _argument_schema(t, slot, by_name) is None:
                raise TaskFileError(
                    f"{where}: slot {{{slot}}} has no values: add values.{slot} to the task "
                    "file, or use it as a whole argument whose schema has an enum or bounds"
                )
        for phrasing in t.task:
            if any(_RESULT.match(s) for s in _SLOT.findall(phrasing)):
                raise TaskFileError(f"{where}: the task text cannot use a tool's result")


def schema_tasks(tools: list[Tool]) -> TaskFile:
    """Templates from the schemas alone, for tools without a task file: one request per
    tool, worded from its description and arguments. A user's own phrasings (a task file)
    teach far more; free-text arguments need `examples` in their schema."""
    tasks, values = [], {}
    for t in tools:
        props = t.parameters.get("properties", {})
        required = t.parameters.get("required", list(props))
        args, shown = {}, []
        for arg in required:
            schema = props.get(arg, {})
            slot = f"{t.name}_{arg}"
            if "enum" in schema or schema.get("type") in ("integer", "number", "boolean"):
                pass
            elif isinstance(schema.get("examples"), list) and schema["examples"]:
                values[slot] = schema["examples"]
            else:
                raise TaskFileError(
                    f"tools: {t.name}.{arg} is free text with no enum or examples in its "
                    "schema: write a task file with example requests for this tool"
                )
            args[arg] = f"{{{slot}}}"
            shown.append(f"{arg.replace('_', ' ')} {{{slot}}}")
        what = t.description.split(". ")[0].rstrip(".")
        task = f"{what}" + (f", with {', '.join(shown)}." if shown else ".")
        tasks.append(TaskTemplate(task=[task], calls=[CallTemplate(tool=t.name, arguments=args)]))
    return TaskFile(values=values, tasks=tasks)


def _slots_of(t: TaskTemplate) -> set[str]:
    texts = [*t.task, t.answer]
    for c in t.calls:
        texts += [v for v in c.arguments.values() if isinstance(v, str)]
    return {s for text in texts for s in _SLOT.findall(text)}


def _argument_schema(t: TaskTemplate, slot: str, by_name: dict[str, Tool]) -> dict[str, Any] | None:
    """The schema of an argument that is exactly `{slot}`, if it says what values it takes."""
    for c in t.calls:
        props = by_name[c.tool].parameters.get("properties", {})
        for arg, value in c.arguments.items():
            if value == f"{{{slot}}}" and arg in props:
                schema = props[arg]
                if "enum" in schema or schema.get("type") in ("integer", "number", "boolean"):
                    return schema
    return None


def _draw(rng: random.Random, source: list[Any] | Range | dict[str, Any]) -> Any:
    if isinstance(source, list):
        return rng.choice(source)
    if isinstance(source, Range):
        if source.decimals == 0:
            return rng.randint(int(source.min), int(source.max))
        return round(rng.uniform(source.min, source.max), source.decimals)
    if "enum" in source:
        return rng.choice(source["enum"])
    kind = source.get("type")
    if kind == "boolean":
        return rng.random() < 0.5
    low = source.get("minimum", source.get("exclusiveMinimum", 0))
    high = source.get("maximum", source.get("exclusiveMaximum", max(low, 0) + 1000))
    if kind == "integer" or rng.random() < 0.6:
        return rng.randint(int(low) + ("exclusiveMinimum" in source), int(high))
    return round(rng.uniform(low, high), 1)


def _fill(text: str, values: dict[str, Any], said: bool = False) -> Any:
    """The template with its slots filled; a whole-slot template keeps the value's type.
    `said`: the request's wording ({say}) rather than the tool's value."""
    whole = _SLOT.fullmatch(text)
    if whole and not said:
        value = values[whole.group(1)]
        return value.value if isinstance(value, Said) else value
    return _SLOT.sub(lambda m: _shown(values[m.group(1)], said), text)


def _shown(value: Any, said: bool = False) -> str:
    if isinstance(value, Said):
        return value.say if said else _shown(value.value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _number(text: str) -> int | float | None:
    m = _NUMBER.search(text.replace(",", ""))
    if m is None:
        return None
    v = float(m.group())
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


class _Skip(Exception):
    """This draw does not work (a tool refused the arguments): draw again."""


def instantiate(
    spec: TaskFile,
    index: int,
    phrasing: str,
    tools: dict[str, Tool],
    executable: bool,
    rng: random.Random,
) -> TaskInstance:
    """One instance of template `index` with freshly drawn slot values, executed."""
    t = spec.tasks[index]
    values: dict[str, Any] = {}
    for slot in sorted(_slots_of(t)):
        if _RESULT.match(slot):
            continue
        source = spec.values.get(slot) or _argument_schema(t, slot, tools)
        assert source is not None  # check_task_file made sure
        values[slot] = _draw(rng, source)
    inst = TaskInstance(
        template=index, kind="single" if len(t.calls) == 1 else "chain",
        task=_fill(phrasing, values, said=True),
    )  # fmt: skip
    for n, c in enumerate(t.calls, 1):
        args = {k: _fill(v, values) if isinstance(v, str) else v for k, v in c.arguments.items()}
        tool = tools[c.tool]
        try:
            checked = tool.validate(args)
        except ToolArgumentError as e:
            raise _Skip(f"tasks[{index}] call {n} ({c.tool}): {e}") from None
        inst.calls.append((c.tool, _ordered(tool, args)))
        if not executable:
            inst.results.append(None)
            return inst  # later calls may need this result: the trajectory stops here
        try:
            result = result_text(tool.fn(**checked))
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
            raise _Skip(f"tasks[{index}] call {n} ({c.tool}{args}): {why}") from None
        inst.results.append(result)
        values[f"result{n}"] = result
        number = _number(result)
        if number is not None:
            values[f"number{n}"] = number
        elif f"{{number{n}}}" in json.dumps(t.model_dump()):
            raise _Skip(f"tasks[{index}] call {n} ({c.tool}): no number in {result!r}")
    values["result"] = values[f"result{len(t.calls)}"]
    if f"number{len(t.calls)}" in values:
        values["number"] = values[f"number{len(t.calls)}"]
    inst.answer = str(_fill(t.answer, values, said=True))
    return inst


def _ordered(tool: Tool, args: dict[str, Any]) -> dict[str, Any]:
    """Arguments in the schema's property order: the call grammar writes them in that order."""
    order = list(tool.parameters.get("properties", {}))
    return {k: args[k] for k in sorted(args, key=lambda k: order.index(k) if k in order else 99)}


@dataclass
class TaskSets:
    train: list[TaskInstance]
    held_out: list[TaskInstance]
    skipped: int = 0
    # More training-worded tasks, drawn after the held-out ones (so `train` and `held_out`
    # are the same with or without them): the prompts of a GRPO stage.
    extra: list[TaskInstance] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)


def build_tasks(
    spec: TaskFile,
    tools: list[Tool],
    *,
    train: int,
    held_out: int,
    executable: set[str],
    seed: int = 0,
    refusal_share: float = 0.1,
    extra: int = 0,
) -> TaskSets:
    """`train` and `held_out` instances spread evenly over the templates (and refusals),
    no held-out task text seen in training; held-out tasks use each template's last
    phrasing when it has two or more. `extra`: more training-worded instances, texts seen
    in neither set."""
    check_task_file(spec, tools)
    by_name = {t.name: t for t in tools}
    refusals = REFUSALS if spec.refuse is None else spec.refuse
    if not spec.tasks:
        raise TaskFileError("tasks: the task file has no tasks")
    rng = random.Random(seed)
    refusal_pool = list(refusals)
    rng.shuffle(refusal_pool)
    split = max(1, len(refusal_pool) // 4) if len(refusal_pool) >= 4 else 0
    held_refusals, train_refusals = refusal_pool[:split], refusal_pool[split:]
    skipped = 0
    seen: set[str] = set()
    held_texts: set[str] = set()

    def draw(count: int, held: bool, pool: list[str]) -> list[TaskInstance]:
        nonlocal skipped
        out: list[TaskInstance] = []
        n_refuse = round(count * refusal_share) if pool else 0
        refusal = REFUSAL_ANSWER.format(tools=", ".join(by_name))
        for i in range(n_refuse):
            task = pool[i % len(pool)]
            out.append(TaskInstance(template=-1, kind="refusal", task=task, answer=refusal))
        order = [i % len(spec.tasks) for i in range(count - n_refuse)]
        for index in order:
            t = spec.tasks[index]
            phrasings = (
                t.task[-1:]
                if held and len(t.task) > 1
                else (t.task[:-1] if len(t.task) > 1 else t.task)
            )
            last_error = ""
            repeat: TaskInstance | None = None
            for _ in range(50):
                phrasing = rng.choice(phrasings)
                executable_all = all(c.tool in executable for c in t.calls)
                try:
                    inst = instantiate(spec, index, phrasing, by_name, executable_all, rng)
                except _Skip as e:
                    skipped += 1
                    last_error = str(e)
                    continue
                if inst.task in seen:
                    # Training takes a repeat only when new text is hard to find (a small
                    # template); held-out tasks are never seen in training.
                    repeat = repeat or (None if held or inst.task in held_texts else inst)
                    continue
                seen.add(inst.task)
                if held:
                    held_texts.add(inst.task)
                out.append(inst)
                break
            else:
                if repeat is not None:
                    out.append(repeat)
                    continue
                if held and not last_error:
                    continue  # every held-out wording of this template is used: fewer tasks
                raise TaskFileError(
                    f"tasks[{index}]: no usable instance in 50 draws"
                    + (f"; the last: {last_error}" if last_error else " (all seen in training)")
                )
        return out

    train_set = draw(train, False, train_refusals)
    held_set = draw(held_out, True, held_refusals or train_refusals)
    rng.shuffle(train_set)
    extra_set = draw(extra, False, train_refusals) if extra else []
    rng.shuffle(extra_set)
    kinds: dict[str, int] = {}
    for inst in train_set:
        kinds[inst.kind] = kinds.get(inst.kind, 0) + 1
    return TaskSets(train=train_set, held_out=held_set, skipped=skipped, by_kind=kinds,
                    extra=extra_set)  # fmt: skip


# -- conversations in the agent's run-time format ------------------------------------------


def thought_for(step: int, tools: list[str]) -> str:
    """The short Thought a specialized model learns to write. The first one is the plan,
    the tools in order ("I need lookup_city, then calculator."), so a chain is decided
    from the request and then followed; later ones name the next tool. A fixed form costs
    a few tokens and keeps the model from 'computing' in it."""
    if step >= len(tools):
        return "I have what I need to answer."
    if step == 0:
        return f"I need {', then '.join(tools)}."
    return f"Next: {tools[step]}."


def trajectory(
    inst: TaskInstance, system: str, *, think: bool, tool_turns: bool
) -> list[ChatMessage]:
    """The messages an Agent exchanges while solving `inst` correctly, as it builds them."""
    messages = [
        ChatMessage(role="system", content=system),
        ChatMessage(role="user", content=inst.task),
    ]
    names = [name for name, _ in inst.calls]
    for step, ((name, args), result) in enumerate(zip(inst.calls, inst.results, strict=True)):
        call = ToolCall(id=new_call_id(), function=ToolCallFunction(
            name=name, arguments=json.dumps(args, ensure_ascii=False)))  # fmt: skip
        thought = f"Thought: {thought_for(step, names)}" if think else None
        messages.append(ChatMessage(role="assistant", content=thought, tool_calls=[call]))
        if result is None:
            return messages
        if tool_turns:
            messages.append(ChatMessage(role="tool", content=result, tool_call_id=call.id))
        else:
            messages.append(ChatMessage(role="user", content=f"Observation ({name}): {result}"))
    final = f"Answer: {inst.answer}"
    if think:
        thought = (
            "None of my tools fits this request."
            if inst.kind == "refusal"
            else (thought_for(len(inst.calls), names))
        )
        final = f"Thought: {thought}\n{final}"
    messages.append(ChatMessage(role="assistant", content=final))
    return messages


def chat_rows(
    instances: list[TaskInstance], system: str, *, think: bool, tool_turns: bool
) -> list[dict[str, Any]]:
    """SFT rows ({"messages": [...]}) rendered the way the engine renders the agent's turns."""
    from lmfast.inference.chat_format import prepare_messages

    rows = []
    for inst in instances:
        messages = trajectory(inst, system, think=think, tool_turns=tool_turns)
        plain = prepare_messages(messages, tools=None, default_system=None, native_tools=False)
        rows.append({"messages": plain})
    return rows


# -- scoring an agent's run against the correct trajectory ---------------------------------


def answer_matches(expected: str, got: str | None) -> bool:
    """Every number in the expected answer appears in `got` (1 % tolerance), or, with no
    numbers, the expected text does (case-insensitive)."""
    if not got:
        return False
    wanted = [float(m) for m in _NUMBER.findall(expected.replace(",", ""))]
    if not wanted:
        return _norm(expected) in _norm(got)
    found = [float(m) for m in _NUMBER.findall(got.replace(",", ""))]
    return all(any(abs(f - w) <= 0.01 * max(1.0, abs(w)) for f in found) for w in wanted)


def _norm(text: str) -> str:
    return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())
