"""An engine that streams a fixed reply: pipeline and guard tests time or inspect only what
surrounds the model."""

from __future__ import annotations

from lmfast.inference.base import Delta, EngineRequest, Finished, GenerationStream


class ScriptedEngine:
    """Streams the given pieces, then finishes; remembers every prompt it was sent."""

    name = "scripted"
    supports_grammar = True

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.prompts: list[str] = []

    @classmethod
    def chunked(cls, text: str, size: int) -> ScriptedEngine:
        return cls([text[i : i + size] for i in range(0, len(text), size)])

    def render_chat(self, messages, tools=None):  # type: ignore[no-untyped-def]
        return "\n".join(f"{m.role}: {m.content}" for m in messages)

    def submit(self, request: EngineRequest) -> GenerationStream:
        self.prompts.append(str(request.prompt))
        stream = GenerationStream()
        for p in self.pieces:
            stream.put(Delta(p))
        stream.put(Finished("stop", 10, len(self.pieces)))
        return stream
