"""CodeAgent: the model writes Python, the sandbox runs it, the output is the observation.

Each step is a thought line and then a ```python block (run in `Sandbox`) or the answer;
locally the format is a grammar, so every step is one of the two. The loop, limits, budget,
transcript and events are the ReAct agent's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lmfast.agents.models import Completion
from lmfast.agents.react import Agent, AgentStep, CallRecord
from lmfast.agents.sandbox import Sandbox, SandboxLimits
from lmfast.agents.tools import Tool

from lmfast.inference.base import ChatMessage

CODE_SYSTEM = (
    "You solve the user's task by writing Python. Write each reply as one line "
    "'Thought: <your reasoning>' followed by either a code block\n```python\n<code that "
    "prints what you need>\n```\nor, once you know it, the line 'Answer: <the final answer>'. "
    "The printed output comes back as the next message. Only the standard library's pure "
    "modules are available (math, statistics, json, re, datetime, ...); no files outside "
    "the working directory, no network."
)
CODE_GRAMMAR = (
    'root ::= "Thought: " line "\\n" ( "```python\\n" code "```" | "Answer: " line )\n'
    "line ::= [^\\n]+\n"
    'code ::= ( [^`] | "`" [^`] | "``" [^`] )+\n'
)
_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


class CodeAgent(Agent):
    def __init__(
        self, model: Any = None, *, limits: SandboxLimits | None = None, **kwargs: Any
    ) -> None:
        self.sandbox = Sandbox(limits)

        def python(code: str) -> str:
            """Run Python code in the sandbox and return what it printed.

            Args:
                code: The program.
            """
            return self.sandbox.run(code).observation()

        kwargs.setdefault("system", CODE_SYSTEM)
        super().__init__([Tool(python)], model, **kwargs)
        if self.constrained:
            self._grammar = self._first = CODE_GRAMMAR

    def _system_prompt(self) -> str:
        return "\n\n".join(p for p in (self.system, self.examples) if p)

    def _parse(self, index: int, reply: Completion) -> AgentStep:
        step = super()._parse(index, reply)
        if not step.calls and (m := _BLOCK.search(reply.text or "")):
            code = json.dumps({"code": m.group(1)})
            step.calls = [CallRecord(name="python", arguments=code, valid=True)]
            step.answer = None
        return step

    def _act(self, index: int, step: AgentStep, reply: Completion) -> list[ChatMessage]:
        """The transcript keeps the code block as written; the output is a user turn."""
        record = step.calls[0]
        self._emit(index, "tool_call", json.loads(record.arguments)["code"], "python")
        record.result = self.by_name["python"](record.arguments)
        self._emit(index, "observation", record.result, "python")
        return [
            ChatMessage(role="assistant", content=reply.text),
            ChatMessage(role="user", content=f"Output:\n{record.result}"),
        ]
