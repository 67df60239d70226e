"""The ReAct agent: think -> call tool(s) -> observe -> ... -> answer.

Every step the model writes one line of thought and then either a tool call or the final
answer:

    Thought: I need to convert 5 miles first.
    <tool_call>{"name": "convert_units", "arguments": {"value": 5, ...}}</tool_call>

    Thought: The result is 8.05 km.
    Answer: 8.05 km

With a local model that format is a GBNF grammar (the tool call part built from the tools'
JSON schemas by the serving code), so every call parses and its arguments fit the schema,
even from a 135M model. Without a grammar (remote endpoints, or `constrained=False`) the
same text is parsed, native tool calls are taken as they come, and anything the model gets
wrong (bad JSON, an unknown tool, arguments that do not validate, a tool that raises) is
fed back to it as the observation, so it can correct itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal

from lmfast.agents.models import AgentError, AgentModel, Completion, resolve_agent_model
from lmfast.agents.tools import Tool, ToolArgumentError, as_tools, result_text
from pydantic import BaseModel, Field

from lmfast.inference.base import ChatMessage, SamplingParams, ToolCall, ToolCallFunction
from lmfast.inference.tools import CLOSE, OPEN, call_rules, new_call_id, parse_tool_calls
from lmfast.observability.tracing import span

REACT_SYSTEM = (
    "You solve the user's task step by step, using the tools when they help. Write each "
    "reply as one line 'Thought: ...' followed by either exactly one tool call "
    f'{OPEN}{{"name": ..., "arguments": {{...}}}}{CLOSE} or, once you know it, the line '
    "'Answer: ...'. The tool's result comes back as an Observation: use it in your Answer.\n\n"
    "For example, with a tool named lookup:\n"
    "Thought: I need to look this up.\n"
    f'{OPEN}{{"name": "lookup", "arguments": {{"query": "boiling point of water"}}}}{CLOSE}\n'
    "Observation (lookup): 100 degrees Celsius\n"
    "Thought: The lookup gave the boiling point.\n"
    "Answer: 100 degrees Celsius"
)


# For a model specialized on its tools: they are listed one line each, not as JSON schemas
# (a quarter of the tokens to train on and to read at every step; the call grammar still
# holds each call to its schema).
COMPACT_SYSTEM = (
    "You solve the user's task with the tools below. Reply with one line 'Thought: ...' "
    f'and then either one tool call {OPEN}{{"name": ..., "arguments": {{...}}}}{CLOSE} '
    "or, once you know it, the line 'Answer: ...'. Tool results come back as Observations."
)
ToolListing = Literal["schemas", "compact"]


class CallRecord(BaseModel):
    """One tool call a step asked for, and what came of it."""

    name: str
    arguments: str = Field(description="As the model wrote them (JSON text).")
    valid: bool = Field(description="Parsed, names a tool, arguments fit its schema.")
    result: str | None = None
    error: str | None = None


class AgentStep(BaseModel):
    index: int
    thought: str | None = None
    calls: list[CallRecord] = Field(default_factory=list)
    answer: str | None = None
    text: str = Field("", description="The model's raw reply.")
    prompt_tokens: int = 0
    completion_tokens: int = 0


StopReason = Literal["answer", "max_steps", "token_budget", "truncated"]


class AgentResult(BaseModel):
    answer: str | None
    stop_reason: StopReason
    steps: list[AgentStep]
    transcript: list[ChatMessage]
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def calls(self) -> list[CallRecord]:
        return [c for s in self.steps for c in s.calls]


class AgentEvent(BaseModel):
    """What a step did, as it happens (for terminals and traces)."""

    step: int
    kind: Literal["thought", "tool_call", "observation", "answer", "error"]
    text: str
    tool: str | None = None


EventFn = Callable[[AgentEvent], None]

_THOUGHT = re.compile(r"^\s*Thought:\s*(.*)$", re.MULTILINE)
ANSWER_LINE = re.compile(
    r"^\s*(?:Final )?Answer:\s*(.*)", re.MULTILINE | re.DOTALL | re.IGNORECASE
)


class Agent:
    """A tool-calling ReAct agent over any LMFast engine or OpenAI-compatible endpoint."""

    def __init__(
        self,
        tools: list[Tool | Callable[..., Any]],
        model: Any = None,
        *,
        system: str | None = None,
        examples: str | None = None,
        max_steps: int = 6,
        token_budget: int = 16_384,
        constrained: bool | None = None,
        think: bool | None = None,
        require_tool_first: bool = False,
        params: SamplingParams | None = None,
        on_event: EventFn | None = None,
        tool_listing: ToolListing | None = None,
    ) -> None:
        """`model`: an AgentModel, a Pipeline, a model reference or 'http://host/v1#name'.
        `think`, `tool_listing`: a Thought line before each action (default yes); the tools
        as JSON schemas (default) or one line each. A model made by `specialize_agent`
        carries the settings it was trained with, and they are its defaults.
        `constrained`: use the step grammar (default: whenever the model takes grammars).
        `token_budget`: prompt + completion tokens over the whole run.
        `require_tool_first`: the first step must call a tool (by grammar locally, by
        `tool_choice: required` remotely): small models otherwise answer from memory, and
        often wrongly, tasks a tool would solve."""
        self.tools = as_tools(tools)
        if not self.tools:
            raise AgentError("tools: an agent needs at least one tool")
        self.by_name = {t.name: t for t in self.tools}
        self.model: AgentModel = resolve_agent_model(model)
        profile: dict[str, Any] = getattr(self.model, "agent_profile", None) or {}
        think = profile.get("think", True) if think is None else think
        self.tool_listing: ToolListing = tool_listing or profile.get("tool_listing", "schemas")
        self.constrained = self.model.constrained if constrained is None else constrained
        if self.constrained and not self.model.constrained:
            raise AgentError(f"{self.model.name} takes no grammar: use constrained=False")
        self.think, self.max_steps, self.token_budget = think, max_steps, token_budget
        self.params = params or SamplingParams(temperature=0.0, max_tokens=256)
        self.on_event = on_event
        self.system = system
        self.examples = examples
        native = bool(getattr(self.model, "native_tools", False))
        if require_tool_first and not (self.constrained or native):
            raise AgentError("require_tool_first needs constrained decoding or native tools")
        self.require_tool_first = require_tool_first
        self._grammar = step_grammar(self.tools, think) if self.constrained else None
        self._first = (
            step_grammar(self.tools, think, answer=False) if require_tool_first else self._grammar
        )
        self._answer_only = (
            step_grammar(self.tools, think, call=False) if self.constrained else None
        )
        # Templates without tool turns (SmolLM2's, most small models') get tool results as
        # user turns: such models ignore a role they were never trained on.
        self.tool_turns = bool(getattr(self.model, "tool_turns", True))

    # -- the loop --------------------------------------------------------------------------
    def run(self, task: str) -> AgentResult:
        """Think and act until an answer or a limit; traced as an `invoke_agent` span whose
        children are each model call (`chat ...`) and tool call (`execute_tool ...`)."""
        name = type(self).__name__
        attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name}
        with span(f"invoke_agent {name}", **attrs) as s:
            result = self._run(task)
            if s is not None:
                s.set_attribute("lmfast.agent.stop_reason", result.stop_reason)
                s.set_attribute("lmfast.agent.steps", len(result.steps))
            return result

    def _run(self, task: str) -> AgentResult:
        messages = [
            ChatMessage(role="system", content=self._system_prompt()),
            ChatMessage(role="user", content=task),
        ]
        steps: list[AgentStep] = []
        used = [0, 0]
        self._seen: dict[tuple[str, str], str] = {}
        self._repeated = retry = False
        retries = 0
        for index in range(self.max_steps):
            if used[0] + used[1] >= self.token_budget:
                return self._result(None, "token_budget", steps, messages, used)
            grammar = self._first if index == 0 else self._grammar
            params = self.params
            retries = retries + 1 if retry else 0
            if retry:
                params = retry_params(params, index, retries)
            if self._repeated and self.constrained:
                # The model repeated a call (answered from memory): small models loop here
                # forever, so this step may only answer.
                grammar = self._answer_only
            extra: dict[str, Any] = {}
            if getattr(self.model, "native_tools", False):
                extra["tools"] = self._specs()
                if self.require_tool_first and index == 0:
                    extra["tool_choice"] = "required"  # the API's way to force a call
            reply = self.model.complete(messages, params, grammar=grammar, **extra)[0]
            used[0] += reply.prompt_tokens
            used[1] += reply.completion_tokens
            step = self._parse(index, reply)
            steps.append(step)
            if step.thought:
                self._emit(index, "thought", step.thought)
            if step.calls:
                retry = False
                messages.extend(self._act(index, step, reply))
                continue
            if step.answer is not None:
                messages.append(ChatMessage(role="assistant", content=reply.text))
                self._emit(index, "answer", step.answer)
                return self._result(step.answer, "answer", steps, messages, used)
            # Neither a call nor an answer: a reply cut off by max_tokens or stopped in a
            # loop (finish_reason 'repetition'), or prose.
            retry = reply.finish_reason in ("length", "repetition")
            if retry:
                text = reply.text if len(reply.text) <= 300 else reply.text[:300] + " ..."
                messages.append(ChatMessage(role="assistant", content=text))
                why = "cut off at max_tokens" if reply.finish_reason == "length" else "a loop"
                self._emit(index, "error", f"the reply was {why}: stopped")
                messages.append(ChatMessage(role="user", content=_CUT_OFF))
                if index == self.max_steps - 1:
                    return self._result(None, "truncated", steps, messages, used)
                continue
            messages.append(ChatMessage(role="assistant", content=reply.text or "(empty)"))
            step.answer = reply.text.strip()
            self._emit(index, "answer", step.answer)
            return self._result(step.answer, "answer", steps, messages, used)
        return self._result(None, "max_steps", steps, messages, used)

    def _act(self, index: int, step: AgentStep, reply: Completion) -> list[ChatMessage]:
        """Run the step's calls; the assistant turn plus one tool message per call."""
        calls = [
            ToolCall(
                id=new_call_id(), function=ToolCallFunction(name=c.name, arguments=c.arguments)
            )
            for c in step.calls
        ]
        thought = f"Thought: {step.thought}" if step.thought is not None else None
        out = [ChatMessage(role="assistant", content=thought, tool_calls=calls)]
        self._repeated = False
        for record, call in zip(step.calls, calls, strict=True):
            self._emit(index, "tool_call", f"{record.name}({record.arguments})", record.name)
            key = (record.name, _canonical(record.arguments))
            if record.error is None and key in self._seen:
                # Small models loop on one call: answer from memory instead of running it.
                record.result = self._seen[key]
                # Only the result: small models copy any instruction here into their answer.
                observation = record.result
                self._repeated = True
                self._emit(index, "observation", observation, record.name)
                out.append(self._observation(observation, record.name, call.id))
                continue
            if record.error is None:
                tool_attrs = {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": record.name,
                    "gen_ai.tool.call.id": call.id,
                }
                with span(f"execute_tool {record.name}", **tool_attrs) as s:
                    try:
                        record.result = result_text(self.by_name[record.name](record.arguments))
                    except ToolArgumentError as e:  # only reachable unconstrained
                        record.valid, record.error = False, f"invalid arguments: {e}"
                    except Exception as e:  # a tool's failure is the model's observation
                        record.error = f"{type(e).__name__}: {e}"
                    if s is not None and record.error is not None:
                        s.set_attribute("error.type", record.error[:100])
            if record.error is None and record.result is not None:
                self._seen[key] = record.result
            observation = record.result if record.error is None else f"Error: {record.error}"
            self._emit(index, "observation" if record.error is None else "error",
                       observation, record.name)  # fmt: skip
            out.append(self._observation(observation, record.name, call.id))
        return out

    def _observation(self, text: str, tool: str, call_id: str) -> ChatMessage:
        if self.tool_turns:
            return ChatMessage(role="tool", content=text, tool_call_id=call_id)
        return ChatMessage(role="user", content=f"Observation ({tool}): {text}")

    # -- parsing ---------------------------------------------------------------------------
    def _parse(self, index: int, reply: Completion) -> AgentStep:
        text = reply.text or ""
        step = AgentStep(index=index, text=text, prompt_tokens=reply.prompt_tokens,
                         completion_tokens=reply.completion_tokens)  # fmt: skip
        if m := _THOUGHT.search(text):
            step.thought = m.group(1).strip()
        calls = [(c.function.name, c.function.arguments) for c in reply.tool_calls]
        unfinished = reply.finish_reason in ("length", "repetition") and CLOSE not in text
        if not calls and OPEN in text and not unfinished:  # unfinished: retried, not an error
            _, parsed = parse_tool_calls(text)
            calls = [(c.function.name, c.function.arguments) for c in parsed]
            if not parsed:  # a call was attempted but its JSON does not parse
                raw = text.split(OPEN, 1)[1].split(CLOSE, 1)[0]
                error = f"the call is not valid JSON: {raw[:200]!r}"
                step.calls.append(CallRecord(name="?", arguments=raw, valid=False, error=error))
        for name, arguments in calls:
            step.calls.append(self._check_call(name, arguments))
        if not step.calls and (m := ANSWER_LINE.search(text)):
            step.answer = m.group(1).strip()
        return step

    def _check_call(self, name: str, arguments: str) -> CallRecord:
        tool = self.by_name.get(name)
        if tool is None:
            known = ", ".join(self.by_name)
            error = f"there is no tool named {name!r}; the tools are: {known}"
            return CallRecord(name=name, arguments=arguments, valid=False, error=error)
        try:
            tool.validate(arguments)
        except ToolArgumentError as e:
            return CallRecord(name=name, arguments=arguments, valid=False,
                              error=f"invalid arguments for {name}: {e}")  # fmt: skip
        return CallRecord(name=name, arguments=arguments, valid=True)

    # -- helpers ---------------------------------------------------------------------------
    def _specs(self) -> list[Any]:
        return [t.spec for t in self.tools]

    def _system_prompt(self) -> str:
        native = bool(getattr(self.model, "native_tools", False))
        return system_prompt(self.tools, self.system, self.examples, native_tools=native,
                             listing=self.tool_listing)  # fmt: skip

    def _emit(self, step: int, kind: str, text: str, tool: str | None = None) -> None:
        if self.on_event is not None:
            self.on_event(AgentEvent(step=step, kind=kind, text=text, tool=tool))  # type: ignore[arg-type]

    @staticmethod
    def _result(
        answer: str | None,
        reason: StopReason,
        steps: list[AgentStep],
        messages: list[ChatMessage],
        used: list[int],
    ) -> AgentResult:
        return AgentResult(answer=answer, stop_reason=reason, steps=steps, transcript=messages,
                           prompt_tokens=used[0], completion_tokens=used[1])  # fmt: skip


def system_prompt(
    tools: list[Tool],
    system: str | None = None,
    examples: str | None = None,
    *,
    native_tools: bool = False,
    listing: ToolListing = "schemas",
) -> str:
    """The agent's system message: its instructions, the tools (unless the API carries them
    natively) and any examples. Specialization trains on exactly this text."""
    from lmfast.inference.tools import tools_system_prompt

    if listing == "compact":
        parts = [system or COMPACT_SYSTEM, "Tools:\n" + "\n".join(map(compact_line, tools))]
    else:
        parts = [system or REACT_SYSTEM]
    if not native_tools and listing == "schemas":
        parts.append(tools_system_prompt([t.spec for t in tools]))
    if examples:
        parts.append(examples)
    return "\n\n".join(parts)


def compact_line(tool: Tool, max_enum: int = 8) -> str:
    """`- name(arg, field: a|b|c): description`: arguments by name, short enums spelt out."""
    props = tool.parameters.get("properties", {})
    args = []
    for name, schema in props.items():
        enum = schema.get("enum") if isinstance(schema, dict) else None
        shown = "|".join(map(str, enum)) if enum and len(enum) <= max_enum else ""
        args.append(f"{name}: {shown}" if shown else name)
    return f"- {tool.name}({', '.join(args)}): {tool.description.split(chr(10))[0]}"


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except ValueError:
        return arguments


def retry_params(params: SamplingParams, index: int, attempt: int) -> SamplingParams:
    """Sampling for the `attempt`-th retry in a row after a cut-off or looping reply: greedy
    decoding would only repeat it, and a peaked small model repeats it even at a mild
    temperature, so each retry samples hotter (0.7, 0.9, ... up to 1.2), with a seed of its
    own and a penalty on repeated tokens."""
    seed = ((params.seed or 0) * 1_000_003 + index * 7_919 + attempt) % 2**32
    return params.model_copy(
        update={
            "temperature": min(1.2, max(params.temperature, 0.5) + 0.2 * attempt),
            "seed": seed,
            "repetition_penalty": max(params.repetition_penalty, 1.1 + 0.05 * attempt),
        }
    )


_CUT_OFF = (
    "Your reply was cut off (too long, or repeating itself). Reply with one short Thought "
    "line, then one tool call or the Answer line."
)


def step_grammar(
    tools: list[Tool], think: bool = True, answer: bool = True, call: bool = True
) -> str:
    """GBNF for one ReAct step: an optional thought line, then (when `call`) a tool call or
    (when `answer`) the final answer. Lines are `[^\\n]+`, not a bounded repeat: llama.cpp
    expands `{1,n}` into n nested rules, which makes every sampling step slow."""
    if not (answer or call):
        raise ValueError("a step must allow a tool call, an answer or both")
    thought = '"Thought: " line "\\n" ' if think else ""
    options = ([f'"{OPEN}" call "{CLOSE}"'] if call else []) + (
        ['"Answer: " line'] if answer else []
    )
    grammar = f"root ::= {thought}( {' | '.join(options)} )\nline ::= [^\\n]+\n"
    return grammar + call_rules([t.spec for t in tools]) if call else grammar
