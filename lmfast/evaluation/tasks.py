"""Local evaluation tasks: JSONL files (or a small YAML naming one) in three shapes.

- generation: `{"messages": [..., {"role": "assistant", "content": REFERENCE}]}` (the chat
  format fine_tune trains on) or `{"prompt": ..., "answer": ...}`;
- multiple choice: `{"question": ..., "choices": [...], "answer": INDEX}` (optional `context`);
- perplexity: `{"text": ...}` lines, or a plain `.txt` / `.md` file.

Every record is checked when the task loads, so a bad file fails before any model runs, with
the file, the line and the field named.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmfast.errors import LMFastError

TaskKind = Literal["generation", "multiple_choice", "perplexity"]
Extraction = Literal["strip", "first_line", "last_number", "regex"]
GenerationMetric = Literal["exact_match", "f1", "bleu", "rouge1", "rouge2", "rougeL"]

SAMPLES = Path(__file__).parent / "samples"
DEFAULT_METRICS: dict[str, list[str]] = {
    "generation": ["exact_match", "f1"],
    "multiple_choice": ["accuracy", "accuracy_norm"],
    "perplexity": ["perplexity"],
}
MC_TEMPLATE = "Question: {question}\nAnswer:"
MC_CONTEXT_TEMPLATE = "{context}\nQuestion: {question}\nAnswer:"


class TaskError(LMFastError, ValueError):
    """A task file or task reference is unusable."""


class TaskSpec(BaseModel):
    """A task: a data file plus how to prompt and score it (the YAML form, every key optional
    except `path`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Task name in reports.")
    path: Path = Field(description="JSONL (or .txt for perplexity), relative to the YAML.")
    kind: TaskKind | None = Field(None, description="Inferred from the first record if unset.")
    metrics: list[str] | None = Field(None, description="Metrics; defaults depend on the kind.")
    prompt: str | None = Field(
        None,
        description="Template: {prompt} for generation, {question} / {context} for multiple "
        "choice. Default: the prompt itself / 'Question: {question}\\nAnswer:'.",
    )
    chat: bool | None = Field(
        None,
        description="Generation: render prompts with the model's chat template (default: when "
        "the model has one).",
    )
    few_shot: int = Field(0, ge=0, le=32, description="Solved examples shown before each one.")
    extraction: Extraction = Field("strip", description="How the answer is read from the output.")
    pattern: str | None = Field(None, description="extraction=regex: group 1 (or all) is kept.")
    max_tokens: int = Field(128, ge=1, le=4096, description="Generation: most tokens generated.")
    stop: list[str] = Field(default_factory=list, description="Generation: stop strings.")
    window: int | None = Field(
        None, ge=8, description="Perplexity: tokens per window (default: model context, 2048)."
    )
    stride: int | None = Field(
        None, ge=1, description="Perplexity: tokens the window advances (default: window / 2)."
    )
    description: str = Field("", description="What it measures.")

    @model_validator(mode="after")
    def _check(self) -> TaskSpec:
        if self.prompt is not None:
            _check_template(self.prompt)
        if self.extraction == "regex":
            if not self.pattern:
                raise ValueError("pattern: extraction=regex needs `pattern`")
            import re

            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regex: {e}") from None
        if self.kind is not None and self.metrics is not None:
            try:
                check_metrics(self.kind, self.metrics)
            except ValueError as e:
                raise ValueError(f"metrics: {e}") from None
        if self.window and self.stride and self.stride > self.window:
            raise ValueError(f"stride={self.stride} is larger than window={self.window}")
        return self


TEMPLATE_FIELDS = ("prompt", "question", "context")


def _check_template(template: str) -> None:
    """Only plain {prompt} / {question} / {context} fields: str.format would otherwise raise
    mid-run (unknown or positional fields) or reach into attributes."""
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:
        raise ValueError(f"prompt: {e} (write literal braces as {{{{ and }}}})") from None
    bad = [f for f in fields if f not in TEMPLATE_FIELDS]
    if bad:
        raise ValueError(
            f"prompt: field {{{bad[0]}}} is not allowed; use {{prompt}} (generation) or "
            "{question} and {context} (multiple choice)"
        )


def check_metrics(kind: str, metrics: list[str]) -> None:
    allowed = {
        "generation": list(GenerationMetric.__args__),  # type: ignore[attr-defined]
        "multiple_choice": ["accuracy", "accuracy_norm"],
        "perplexity": ["perplexity"],
    }[kind]
    bad = [m for m in metrics if m not in allowed]
    if bad or not metrics:
        raise ValueError(
            f"metrics {bad or metrics} are not available for a {kind} task; "
            f"allowed: {', '.join(allowed)}"
        )


@dataclass
class Example:
    """One scored item. `line` is its 1-based line in the file (0 for plain text)."""

    index: int
    line: int
    prompt: str = ""
    messages: list[dict[str, str]] | None = None
    answer: str = ""
    question: str = ""
    context: str = ""
    choices: list[str] = field(default_factory=list)
    answer_index: int = -1
    text: str = ""


@dataclass
class Task:
    spec: TaskSpec
    kind: TaskKind
    metrics: list[str]
    source: Path
    examples: list[Example]

    @property
    def name(self) -> str:
        return self.spec.name

    def limited(self, limit: int | None) -> list[Example]:
        return self.examples if limit is None else self.examples[:limit]

    def shots(self, example: Example, seed: int) -> list[Example]:
        """`few_shot` solved examples other than `example`, the same on every run."""
        k = self.spec.few_shot
        if k == 0:
            return []
        pool = [e for e in self.examples if e.index != example.index]
        rng = random.Random(f"{seed}-{self.name}-{example.index}")
        return rng.sample(pool, min(k, len(pool)))

    def mc_prompt(self, example: Example, seed: int = 1234) -> str:
        """Context for a multiple-choice example, few-shot solved examples first."""
        parts = [
            f"{self._mc_text(s)} {s.choices[s.answer_index]}" for s in self.shots(example, seed)
        ]
        parts.append(self._mc_text(example))
        return "\n\n".join(parts)

    def _mc_text(self, e: Example) -> str:
        template = self.spec.prompt or (MC_CONTEXT_TEMPLATE if e.context else MC_TEMPLATE)
        return template.format(question=e.question, context=e.context)

    def chat_messages(self, example: Example, seed: int = 1234) -> list[dict[str, str]]:
        """The conversation up to the answer, few-shot pairs as earlier turns."""
        shots: list[dict[str, str]] = []
        for s in self.shots(example, seed):
            shots += [m for m in self._turns(s) if m["role"] != "system"]
            shots.append({"role": "assistant", "content": s.answer})
        turns = self._turns(example)
        system = [m for m in turns if m["role"] == "system"]
        rest = [m for m in turns if m["role"] != "system"]
        return system + shots + rest

    def _turns(self, e: Example) -> list[dict[str, str]]:
        if e.messages is not None:
            return e.messages[:-1]
        return [{"role": "user", "content": self._gen_text(e)}]

    def plain_prompt(self, example: Example, seed: int = 1234) -> str:
        """The prompt as plain text (no chat template), few-shot examples first."""
        parts = [f"{self._plain(s)} {s.answer}" for s in self.shots(example, seed)]
        parts.append(self._plain(example))
        return "\n\n".join(parts)

    def _plain(self, e: Example) -> str:
        if e.messages is not None:
            return "\n".join(m["content"] for m in e.messages[:-1])
        return self._gen_text(e)

    def _gen_text(self, e: Example) -> str:
        return self.spec.prompt.format(prompt=e.prompt) if self.spec.prompt else e.prompt


# -- loading ------------------------------------------------------------------------------
def sample_tasks() -> dict[str, Path]:
    """The small tasks LMFast ships as samples (written for LMFast, not public benchmarks)."""
    return {p.stem: p for p in sorted(SAMPLES.glob("*.yaml"))}


def load_task(reference: str | Path) -> Task:
    """A task from a sample name, a YAML task file, a JSONL file or a plain text file."""
    return build_task(task_spec(reference))


def task_spec(reference: str | Path) -> TaskSpec:
    """What a task reference names (its data file as an absolute path), without reading the
    data: callers that confine paths check `spec.path` before anything opens it."""
    ref = str(reference)
    samples = sample_tasks()
    if ref in samples:
        return _from_yaml(samples[ref])
    path = Path(ref).expanduser()
    if not path.exists():
        raise TaskError(
            f"unknown task {ref!r}: not a file and not a sample task. Sample tasks: "
            f"{', '.join(samples)}; or give a .jsonl / .txt / .yaml task file"
        )
    if path.is_dir():
        raise TaskError(f"task {ref!r} is a folder; give a .jsonl, .txt or .yaml file")
    if path.suffix in (".yaml", ".yml"):
        return _from_yaml(path)
    return TaskSpec(name=path.stem, path=path.resolve())


def _from_yaml(path: Path) -> TaskSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise TaskError(f"{path}: cannot read the task YAML: {e}") from None
    if not isinstance(raw, dict):
        raise TaskError(f"{path}: a task YAML is a mapping with at least `path`")
    raw.setdefault("name", path.stem)
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            ("".join(f"{p}: " for p in err["loc"][:1])) + err["msg"].removeprefix("Value error, ")
            for err in e.errors()
        )
        raise TaskError(f"{path}: {problems}") from None
    if not spec.path.is_absolute():
        spec.path = (path.parent / spec.path).resolve()
    return spec


def build_task(spec: TaskSpec) -> Task:
    source = spec.path
    if not source.is_file():
        raise TaskError(f"task {spec.name!r}: data file {source} does not exist")
    if source.suffix in (".txt", ".md"):
        text = source.read_text(encoding="utf-8", errors="replace")
        examples = [Example(index=0, line=0, text=text)] if text.strip() else []
        kind: TaskKind = "perplexity"
    else:
        examples, kind = _read_jsonl(source, spec.kind)
    if spec.kind is not None and spec.kind != kind:
        raise TaskError(f"{source}: the task says kind={spec.kind} but the records are {kind}")
    if not examples:
        raise TaskError(f"{source}: the task has no examples")
    metrics = spec.metrics or DEFAULT_METRICS[kind]
    try:
        check_metrics(kind, metrics)
    except ValueError as e:
        raise TaskError(f"task {spec.name!r}: {e}") from None
    if spec.few_shot and kind == "perplexity":
        raise TaskError(f"task {spec.name!r}: few_shot does not apply to a perplexity task")
    if spec.few_shot >= len(examples):
        raise TaskError(
            f"task {spec.name!r}: few_shot={spec.few_shot} needs more than {spec.few_shot} "
            f"examples; the file has {len(examples)}"
        )
    return Task(spec=spec, kind=kind, metrics=metrics, source=source, examples=examples)


def _shape(record: dict[str, Any]) -> TaskKind | None:
    if "messages" in record or "prompt" in record:
        return "generation"
    if "question" in record or "choices" in record:
        return "multiple_choice"
    if "text" in record:
        return "perplexity"
    return None


def _read_jsonl(path: Path, declared: TaskKind | None) -> tuple[list[Example], TaskKind]:
    examples: list[Example] = []
    kind = declared
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as e:
                raise TaskError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise TaskError(f"{where}: each line must be a JSON object")
            shape = _shape(record)
            if shape is None:
                raise TaskError(
                    f"{where}: no task fields; expected messages, prompt + answer, "
                    f"question + choices + answer, or text (got {sorted(record)[:8]})"
                )
            kind = kind or shape
            if shape != kind:
                raise TaskError(f"{where}: a {shape} record in a {kind} task")
            examples.append(_parse(record, kind, len(examples), lineno, where))
    return examples, kind or "generation"


def _field(record: dict[str, Any], name: str, where: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{where}: field {name!r} must be a non-empty string (got {value!r:.60})")
    return value


def _parse(record: dict[str, Any], kind: TaskKind, index: int, line: int, where: str) -> Example:
    if kind == "perplexity":
        return Example(index, line, text=_field(record, "text", where))
    if kind == "multiple_choice":
        choices = record.get("choices")
        if (
            not isinstance(choices, list)
            or len(choices) < 2
            or not all(isinstance(c, str) and c.strip() for c in choices)
        ):
            raise TaskError(
                f"{where}: field 'choices' must be a list of at least 2 non-empty strings "
                f"(got {choices!r:.80})"
            )
        answer = record.get("answer")
        if isinstance(answer, bool) or not isinstance(answer, int):
            raise TaskError(f"{where}: field 'answer' must be the index of the right choice")
        if not 0 <= answer < len(choices):
            raise TaskError(
                f"{where}: field 'answer' is {answer} but there are {len(choices)} choices "
                f"(allowed: 0 to {len(choices) - 1})"
            )
        context = record.get("context", "")
        if not isinstance(context, str):
            raise TaskError(f"{where}: field 'context' must be a string")
        return Example(
            index,
            line,
            question=_field(record, "question", where),
            context=context,
            choices=choices,
            answer_index=answer,
        )
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or len(messages) < 2:
            raise TaskError(
                f"{where}: field 'messages' must be a list of at least 2 messages, the last "
                "one the assistant's reference answer"
            )
        for i, m in enumerate(messages):
            if (
                not isinstance(m, dict)
                or m.get("role") not in ("system", "user", "assistant")
                or not isinstance(m.get("content"), str)
            ):
                raise TaskError(
                    f"{where}: messages[{i}] must be {{'role': system|user|assistant, "
                    f"'content': str}} (got {m!r:.80})"
                )
        if messages[-1]["role"] != "assistant":
            raise TaskError(
                f"{where}: the last message must be the assistant's reference answer "
                f"(got role {messages[-1]['role']!r})"
            )
        clean = [{"role": m["role"], "content": m["content"]} for m in messages]
        return Example(index, line, messages=clean, answer=clean[-1]["content"])
    answer = record.get("answer")
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)  # GSM8K-style numeric answers
    return Example(
        index,
        line,
        prompt=_field(record, "prompt", where),
        answer=_field({"answer": answer}, "answer", where),
    )
