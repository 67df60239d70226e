"""`lmfast models ...`: list, describe and convert models."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from lmfast.cli.output import console, human_bytes, print_json
from lmfast.config import DEFAULT_MODEL

app = typer.Typer(help="List, inspect and convert models.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("list")
def list_command(json_out: JsonOpt = False) -> None:
    """List model aliases (and whether they work offline) and model artifacts."""
    from lmfast.registry import list_models

    rows = list_models()
    if json_out:
        print_json(rows)
        return
    table = Table(title="Models")
    for col in ("name", "source", "format", "offline", "detail"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, r.source, r.format, "yes" if r.available else "no", r.detail)
    console.print(table)


@app.command("info")
def info_command(
    name: Annotated[str, typer.Argument(help="Alias, path, .gguf, artifact id or hub id.")] = (
        DEFAULT_MODEL
    ),
    json_out: JsonOpt = False,
) -> None:
    """Describe a model (architecture, size, quantization, lineage) without loading it."""
    from lmfast.registry import model_info

    info = model_info(name)
    if json_out:
        print_json(info)
        return
    table = Table(title=info.name, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("source", info.source + (f" ({info.hub_id})" if info.hub_id else ""))
    table.add_row("format", info.format)
    table.add_row("path", info.path)
    table.add_row("size", human_bytes(info.size_bytes))
    table.add_row("weights", info.quantization)
    if info.spec:
        s = info.spec
        table.add_row("architecture", s.architecture)
        table.add_row("parameters", f"{s.parameters / 1e6:.1f} M")
        table.add_row("layers x hidden", f"{s.num_layers} x {s.hidden_size}")
        table.add_row("heads (kv)", f"{s.num_heads} ({s.num_kv_heads})")
        table.add_row("vocabulary", str(s.vocab_size))
        table.add_row("context length", str(s.context_length))
    table.add_row("chat template", "yes" if info.chat_template else "no")
    for i, line in enumerate(info.lineage):
        table.add_row("lineage" if i == 0 else "", line)
    console.print(table)


@app.command("convert")
def convert_command(
    name: Annotated[str, typer.Argument(help="Model to convert.")] = DEFAULT_MODEL,
    dtype: Annotated[
        str, typer.Option(help="Weight dtype: bfloat16, float16, float32 or auto.")
    ] = "bfloat16",
    label: Annotated[str | None, typer.Option("--name", help="Name for the artifact.")] = None,
    background: Annotated[
        bool, typer.Option("--background", help="Start the job and print its id.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Dequantize a GGUF (or copy any model) into a trainable Hugging Face artifact (a job)."""
    from lmfast.cli.jobs import run_job
    from lmfast.convert import ConvertRequest

    request = ConvertRequest(model=name, dtype=dtype, name=label)  # type: ignore[arg-type]
    result = run_job("convert_model", request, background)
    if result is None:
        return
    if json_out:
        console.print_json(json.dumps(result))
    else:
        console.print(
            f"[green]saved[/] {result['artifact_id']} "
            f"({result['parameters'] / 1e6:.1f} M parameters) at {result['path']}"
        )
