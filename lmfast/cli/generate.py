"""`lmfast generate`: one reply from a model, streamed to the terminal."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lmfast.cli.options import GuardOpt
from lmfast.cli.output import console, print_json
from lmfast.config import DEFAULT_MODEL


def generate_command(
    prompt: Annotated[str, typer.Argument(help="The user message ('-' reads standard input).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model reference.")] = DEFAULT_MODEL,
    system: Annotated[str | None, typer.Option(help="System message.")] = None,
    backend: Annotated[str, typer.Option(help="auto, llamacpp or transformers.")] = "auto",
    max_tokens: Annotated[int, typer.Option(help="Most tokens to generate.")] = 256,
    temperature: Annotated[float, typer.Option(help="0 is greedy.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Top-k sampling, 0 is off.")] = 0,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    guard: GuardOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Generate a reply to PROMPT (streams tokens unless --json)."""
    from lmfast.generation import GenerateRequest, generate, generate_stream
    from lmfast.inference import SamplingParams

    text = sys.stdin.read() if prompt == "-" else prompt
    request = GenerateRequest(
        model=model,
        prompt=text,
        system=system,
        backend=backend,  # type: ignore[arg-type]
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=stop or [],
        ),
        guard=guard,
    )
    if json_out:
        print_json(generate(request))
        return
    for piece in generate_stream(request):
        console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
    console.print()
