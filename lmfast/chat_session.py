"""A terminal chat conversation: history, sampling settings and slash commands.

Pure logic, no terminal I/O: `lmfast chat` reads lines and prints, this decides what they mean.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from lmfast.errors import GenerationError
from lmfast.guardrails.guard import GuardrailBlocked
from lmfast.inference.base import ChatMessage, SamplingParams
from lmfast.pipeline import Pipeline

HELP = """commands:
  /system TEXT     set the system message (empty: remove it)
  /reset           forget the conversation (keeps the system message)
  /save FILE       write the conversation and settings as JSON
  /load FILE       read a conversation saved with /save
  /params [k=v..]  show or change sampling settings (temperature=0.2 max_tokens=128 ...)
  /help            this list
  /exit            leave (also /quit or Ctrl-D)
multi-line input: end a line with \\ to continue it, or wrap a block in triple quotes (\"\"\")"""


@dataclass
class Reply:
    """What the terminal should do with one input."""

    kind: str  # "stream" | "text" | "exit"
    text: str = ""
    pieces: Iterator[str] | None = None


@dataclass
class ChatSession:
    pipeline: Pipeline
    params: SamplingParams = field(default_factory=SamplingParams)
    system: str | None = None
    history: list[ChatMessage] = field(default_factory=list)

    def messages(self) -> list[ChatMessage]:
        head = [ChatMessage(role="system", content=self.system)] if self.system else []
        return head + self.history

    def handle(self, line: str) -> Reply:
        """Interpret one (possibly multi-line) input."""
        if line.startswith("/"):
            return self._command(line)
        if not line.strip():
            return Reply("text", "")
        self.history.append(ChatMessage(role="user", content=line))
        pieces = self._answer()
        try:  # start generating now, so a guard refusing the message is told as such
            first = next(pieces)
        except StopIteration:
            return Reply("stream", pieces=iter(()))
        except GuardrailBlocked as e:
            self.history.pop()  # the refused message is not kept in the conversation
            return Reply("text", f"{e} (message not sent)")
        except GenerationError as e:  # e.g. the engine process crashed: it restarts
            self.history.pop()
            return Reply("text", f"error: {e} (message not answered; send it again)")
        return Reply("stream", pieces=_primed(first, pieces))

    def _answer(self) -> Iterator[str]:
        parts: list[str] = []
        started = False
        try:
            for piece in self.pipeline.stream(self.messages(), self.params):
                started = True
                parts.append(piece)
                yield piece
        except (GuardrailBlocked, GenerationError) as e:
            if not started:
                raise
            yield f" [{e}]"  # the reply is cut where the guard or the engine stopped it
        finally:  # an interrupted answer is kept as far as it got
            if started:
                self.history.append(ChatMessage(role="assistant", content="".join(parts)))

    def _command(self, line: str) -> Reply:
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        if name in ("exit", "quit"):
            return Reply("exit")
        if name == "help":
            return Reply("text", HELP)
        if name == "reset":
            self.history.clear()
            return Reply("text", "conversation cleared")
        if name == "system":
            self.system = arg or None
            return Reply("text", f"system message {'set' if arg else 'removed'}")
        if name == "params":
            return Reply("text", self._params(arg))
        if name == "save":
            return Reply("text", self._save(arg))
        if name == "load":
            return Reply("text", self._load(arg))
        return Reply("text", f"unknown command /{name}; /help lists them")

    def _params(self, arg: str) -> str:
        if not arg:
            return " ".join(f"{k}={v}" for k, v in self.params.model_dump().items())
        updates: dict[str, object] = {}
        for item in arg.split():
            key, sep, value = item.partition("=")
            if not sep:
                return f"expected key=value, got {item!r}"
            if key not in SamplingParams.model_fields:
                return (
                    f"unknown setting {key!r}; settings: {', '.join(SamplingParams.model_fields)}"
                )
            updates[key] = json.loads(value) if value[:1] in '[{"' or _is_number(value) else value
        try:
            self.params = SamplingParams.model_validate({**self.params.model_dump(), **updates})
        except ValidationError as e:
            err = e.errors()[0]
            return f"{'.'.join(map(str, err['loc']))}: {err['msg']} (got {err.get('input')!r})"
        return "ok: " + " ".join(f"{k}={getattr(self.params, k)}" for k in updates)

    def _save(self, arg: str) -> str:
        if not arg:
            return "usage: /save FILE"
        from lmfast.artifacts import write_atomic

        path = Path(arg).expanduser()
        if path.is_dir():
            return f"cannot save: {path} is a folder; give a file name such as {path / 'chat.json'}"
        if not path.parent.is_dir():
            return f"cannot save: the folder {path.parent} does not exist (nothing was written)"
        data = {
            "system": self.system,
            "params": self.params.model_dump(),
            "messages": [m.model_dump(exclude_none=True) for m in self.history],
        }
        try:
            write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False))
        except OSError as e:
            return f"cannot save to {path}: {e.strerror or e} (the conversation is kept)"
        return f"saved {len(self.history)} messages to {path}"

    def _load(self, arg: str) -> str:
        if not arg:
            return "usage: /load FILE"
        path = Path(arg).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            history = [ChatMessage.model_validate(m) for m in data["messages"]]
            params = SamplingParams.model_validate(data.get("params", {}))
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"cannot load {path}: {e}"
        self.history, self.params, self.system = history, params, data.get("system")
        return f"loaded {len(history)} messages from {path}"


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return value in ("true", "false", "null")
    return True


def read_message(first: str, more: Iterator[str]) -> str:
    """Join continuation lines: trailing backslash, or a triple-quoted block."""
    if first.strip().startswith('"""'):
        body = first.strip()[3:]
        if body.endswith('"""'):
            return body[:-3]
        lines = [body] if body else []
        for line in more:
            if line.rstrip().endswith('"""'):
                if tail := line.rstrip()[:-3]:
                    lines.append(tail)
                break
            lines.append(line)
        return "\n".join(lines)
    lines = [first]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        nxt = next(more, None)
        if nxt is None:
            break
        lines.append(nxt)
    return "\n".join(lines)


def _primed(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest
