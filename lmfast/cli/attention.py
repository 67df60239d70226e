"""`lmfast attention`: which input tokens an output token came from, as a PNG and data."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmfast.cli.output import console, print_json


def attention_command(
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model reference.")] = (
        "smollm2-135m-instruct"
    ),
    target: Annotated[
        str | None, typer.Option(help="Explain this continuation, not the greedy reply.")
    ] = None,
    token: Annotated[int, typer.Option(min=0, help="Which output token (0: the first).")] = 0,
    system: Annotated[str | None, typer.Option(help="System message.")] = None,
    chat: Annotated[bool, typer.Option(help="Render with the chat template.")] = True,
    out: Annotated[Path | None, typer.Option(help="Also copy the PNG here.")] = None,
    top: Annotated[int, typer.Option(min=1, help="Input tokens listed.")] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Saliency (gradient x input) and attention rollout of one output token over the input
    tokens: a heatmap PNG (a report artifact) and the scores."""
    from lmfast.observability.attention import AttentionRequest, attention_map

    request = AttentionRequest(
        prompt=prompt, model=model, target=target, token=token, system=system, chat=chat
    )
    result = attention_map(request)
    if out is not None:
        shutil.copyfile(result.png, out)
    if json_out:
        print_json(result)
        return
    table = Table(title=f"input tokens behind {result.output_token!r} (p={result.probability:.3f})")
    for col in ("token", "saliency", "rollout"):
        table.add_column(col)
    ranked = sorted(range(len(result.input_tokens)), key=lambda i: -result.saliency[i])[:top]
    for i in ranked:
        table.add_row(
            repr(result.input_tokens[i]), f"{result.saliency[i]:.3f}", f"{result.rollout[i]:.3f}"
        )
    console.print(table)
    console.print(f"heatmap: {out or result.png} ({result.artifact_id})")
