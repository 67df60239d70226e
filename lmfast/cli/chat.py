"""`lmfast chat`: talk to a model in the terminal, or drive it through a pipe."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from lmfast.cli.options import GuardOpt
from lmfast.config import DEFAULT_MODEL

PROMPT = "\001\033[1;32m\002you>\001\033[0m\002 "


def _prompted(prompt: str) -> Iterator[str]:
    """Lines typed at a prompt (readline editing); Ctrl-C clears the line, Ctrl-D ends."""
    import readline  # noqa: F401  (line editing and history for input())

    while True:
        try:
            yield input(prompt)
        except KeyboardInterrupt:
            print()
            continue
        except EOFError:
            return


def chat_command(
    model: Annotated[str, typer.Argument(help="Model to chat with.")] = DEFAULT_MODEL,
    system: Annotated[str | None, typer.Option(help="System message.")] = None,
    backend: Annotated[str, typer.Option(help="auto, llamacpp or transformers.")] = "auto",
    temperature: Annotated[float, typer.Option(help="0 is greedy.")] = 0.7,
    max_tokens: Annotated[int, typer.Option(help="Most tokens per answer.")] = 512,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    guard: GuardOpt = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print each answer as one JSON object per line ({"role", "content"}), '
            "so a script can tell where a multi-line answer ends.",
        ),
    ] = False,
) -> None:
    """Chat with MODEL: tokens stream as they are generated; /help lists commands.

    With standard input not a terminal, each line is a message and each answer goes to
    standard output (with --json, one JSON object per answer), so scripts can drive it."""
    from rich.console import Console

    from lmfast.chat_session import ChatSession, read_message
    from lmfast.generation import get_pipeline
    from lmfast.inference.base import SamplingParams

    interactive = sys.stdin.isatty()
    params = SamplingParams(temperature=temperature, max_tokens=max_tokens, top_p=top_p, seed=seed)
    err = Console(stderr=True)
    with err.status(f"loading {model} ...") if interactive else _nullcontext():
        pipeline = get_pipeline(model, backend, guard)  # type: ignore[arg-type]
    session = ChatSession(pipeline=pipeline, params=params, system=system)
    if interactive:
        err.print(
            f"[bold]{model}[/] on {pipeline.engine.name}. /help for commands, /exit to leave."
        )
    if interactive:
        lines, more = _prompted(PROMPT), _prompted("... ")
    else:
        lines = more = (line.rstrip("\n") for line in sys.stdin)
    out = sys.stdout
    for first in lines:
        reply = session.handle(read_message(first, more))
        if reply.kind == "exit":
            break
        if reply.kind == "text":
            if reply.text:
                (
                    err.print(reply.text, highlight=False, markup=False)
                    if interactive
                    else print(reply.text, file=sys.stderr)
                )
            continue
        assert reply.pieces is not None
        if json_out:
            import json

            text = "".join(reply.pieces)
            out.write(json.dumps({"role": "assistant", "content": text}, ensure_ascii=False))
            out.write("\n")
            out.flush()
            continue
        try:
            for piece in reply.pieces:
                out.write(piece)
                out.flush()
        except KeyboardInterrupt:  # Ctrl-C stops this answer, not the session
            reply.pieces.close()  # type: ignore[attr-defined]
            out.write(" [stopped]")
        out.write("\n")
        out.flush()


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
