"""Chain-of-thought with answer extraction, and best-of-N / self-consistency.

The model reasons, then writes `Answer: ...`. With N > 1, one greedy reply and N - 1
sampled ones (submitted together, so llama.cpp decodes them as one batch when the engine
has the slots) are generated, their answers extracted and normalised, and the most frequent
one wins, ties going to the greedy answer (self-consistency, Wang et al. 2022), or the one
a `scorer` rates highest.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from lmfast.agents.models import AgentModel, resolve_agent_model
from pydantic import BaseModel, Field

from lmfast.inference.base import ChatMessage, SamplingParams

THINK_SYSTEM = (
    "Think the problem through step by step in a short paragraph starting with "
    "'Reasoning:', then give the final answer alone on the last line as 'Answer: <answer>'."
)
# Reasoning is one paragraph: a small model's later lines rarely add anything but drift.
THINK_GRAMMAR = 'root ::= "Reasoning: " line "\\nAnswer: " line\nline ::= [^\\n]+\n'

_ANSWER = re.compile(r"Answer:\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")

Scorer = Callable[[str, str, str], float]  # (question, reply text, answer) -> score


class Sample(BaseModel):
    text: str
    answer: str | None = Field(description="Extracted answer, normalised.")
    score: float | None = None


class ThinkingResult(BaseModel):
    answer: str | None
    votes: dict[str, int] = Field(description="Normalised answer -> number of samples.")
    agreement: float = Field(description="Share of samples that gave the chosen answer.")
    samples: list[Sample]
    completion_tokens: int


def extract_answer(text: str) -> str | None:
    """The text after the last 'Answer:', else the last number, else the last line."""
    found = _ANSWER.findall(text)
    if found:
        return found[-1].strip()
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def normalise(answer: str | None) -> str | None:
    """Comparable form: a number if the answer is (or starts with) one, else lower-case
    words without surrounding punctuation."""
    if answer is None:
        return None
    text = answer.strip().strip(".").strip()
    m = _NUMBER.match(text.lstrip("$€£ "))
    if m:
        value = float(m.group().replace(",", ""))
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return re.sub(r"\s+", " ", text.lower()).strip(" .!?\"'") or None


class ThinkingAgent:
    def __init__(
        self,
        model: Any = None,
        *,
        n: int = 1,
        temperature: float | None = None,
        max_tokens: int = 256,
        scorer: Scorer | None = None,
        system: str | None = None,
        constrained: bool | None = None,
        seed: int = 0,
    ) -> None:
        """`n`: samples per question. 1 is plain chain-of-thought (greedy unless a
        temperature is given). More is self-consistency: one greedy sample plus n - 1
        sampled at `temperature` (default 0.5), majority vote with ties going to the greedy
        sample's answer, so a vote can only overrule the greedy answer by outnumbering it.
        Small models' samples at the usual 0.7 are mostly noise: measured in
        bench/agent_bench.py."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.model: AgentModel = resolve_agent_model(model)
        self.n, self.scorer = n, scorer
        self.system = system or THINK_SYSTEM
        self.constrained = self.model.constrained if constrained is None else constrained
        self.greedy = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=seed)
        if n == 1 and temperature:
            self.greedy = self.greedy.model_copy(update={"temperature": temperature})
        self.sampled = SamplingParams(
            temperature=0.5 if temperature is None else temperature,
            max_tokens=max_tokens,
            seed=seed,
        )

    def run(self, question: str) -> ThinkingResult:
        messages = [
            ChatMessage(role="system", content=self.system),
            ChatMessage(role="user", content=question),
        ]
        grammar = THINK_GRAMMAR if self.constrained else None
        replies = self.model.complete(messages, self.greedy, grammar=grammar)
        if self.n > 1:  # the n - 1 samples go to the engine together (one batch)
            replies += self.model.complete(messages, self.sampled, grammar=grammar, n=self.n - 1)
        samples = [Sample(text=r.text, answer=normalise(extract_answer(r.text))) for r in replies]
        votes = Counter(s.answer for s in samples if s.answer is not None)
        if self.scorer is not None:
            for s in samples:
                s.score = float(self.scorer(question, s.text, s.answer or ""))
            ranked = sorted(
                (s for s in samples if s.answer is not None),
                key=lambda s: (s.score or 0.0, votes[s.answer]),
                reverse=True,
            )
            answer = ranked[0].answer if ranked else None
        else:
            first = samples[0].answer
            # Highest count; among equals, the greedy sample's answer.
            answer = max(votes, key=lambda a: (votes[a], a == first)) if votes else None
        return ThinkingResult(
            answer=answer,
            votes=dict(votes.most_common()),
            agreement=votes[answer] / len(samples) if answer is not None else 0.0,
            samples=samples,
            completion_tokens=sum(r.completion_tokens for r in replies),
        )
