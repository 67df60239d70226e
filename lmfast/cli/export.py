"""`lmfast quantize` (GGUF types, calibrated mixed precision, int8 / int4) and `lmfast export`
(float GGUF, merged safetensors, ONNX): thin adapters over lmfast.export, run as jobs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from lmfast.cli.output import console
from lmfast.export.llama_quantize import GGUF_TYPES

Background = Annotated[bool, typer.Option("--background", help="Print the job id only.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ModelArg = Annotated[
    str, typer.Argument(help="Adapter, model artifact, Hugging Face folder, .gguf or alias.")
]
Name = Annotated[str | None, typer.Option(help="Name for the artifact.")]


def quantize_command(
    model: ModelArg,
    type_: Annotated[
        str,
        typer.Option(
            "--type",
            "-t",
            help=f"{', '.join(GGUF_TYPES)}; mixed (calibrated per-tensor types); int8 / int4.",
        ),
    ] = "q4_k_m",
    base: Annotated[str, typer.Option(help="mixed: llama.cpp mix that sets the budget.")] = (
        "q4_k_m"
    ),
    size_budget_mb: Annotated[
        float | None, typer.Option(help="mixed: tensor data budget in MB.")
    ] = None,
    calibration: Annotated[
        str | None, typer.Option(help="mixed: text / JSONL file to measure sensitivity on.")
    ] = None,
    calibration_tokens: Annotated[int, typer.Option(help="mixed: tokens measured.")] = 512,
    eval_text: Annotated[
        str | None, typer.Option(help="Held-out text file for the perplexity check.")
    ] = None,
    no_measure: Annotated[
        bool, typer.Option("--no-measure", help="Skip the perplexity and speed check.")
    ] = False,
    name: Name = None,
    background: Background = False,
    json_out: JsonOut = False,
) -> None:
    """Quantize a model in one go: merge an adapter, convert to GGUF, quantize with llama.cpp
    (or int8 / int4 in PyTorch), write an Ollama Modelfile and measure the result."""
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.export.quantize import QuantizeRequest

    request = QuantizeRequest(
        model=model, type=type_, base=base, size_budget_mb=size_budget_mb,
        calibration=calibration, calibration_tokens=calibration_tokens, measure=not no_measure,
        eval_text=eval_text, name=name,
    )  # fmt: skip
    result = run_job_for_people("quantize", request, background, json_out)
    if result is None:
        return
    _show(result)


def _show(result: dict[str, Any]) -> None:
    console.print(f"[bold]{result['artifact_id']}[/]: {result['path']}")
    console.print(f"lineage: {' -> '.join(result['lineage'])}")
    table = Table(show_header=False)
    table.add_row("type", result["type"])
    table.add_row("size", f"{result['bytes'] / 1e6:.1f} MB")
    if result.get("size_vs_f16"):
        table.add_row("size vs f16", f"{result['size_vs_f16']:.1%}")
    for key, value in sorted(result.get("metrics", {}).items()):
        table.add_row(key, f"{value:.4g}")
    if result.get("tensor_types"):
        table.add_row("tensors", ", ".join(f"{k}: {v}" for k, v in result["tensor_types"].items()))
    console.print(table)
    if result.get("modelfile"):
        console.print(f"Ollama: ollama create NAME -f {result['modelfile']}")
    if result.get("plan"):
        console.print(f"mixed-precision decisions: {result['plan']} (plot: plan.png)")


def export_command(
    model: ModelArg,
    format_: Annotated[
        str, typer.Option("--format", "-f", help="gguf, safetensors (merged) or onnx.")
    ] = "gguf",
    dtype: Annotated[
        str | None, typer.Option(help="f32, f16 or bf16 (default f16; onnx: f32 only).")
    ] = None,
    name: Name = None,
    background: Background = False,
    json_out: JsonOut = False,
) -> None:
    """Export a model without quantizing it: float GGUF (with an Ollama Modelfile), merged
    safetensors, or ONNX validated in ONNX Runtime."""
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.export.export import ExportRequest

    request = ExportRequest(model=model, format=format_, dtype=dtype, name=name)  # type: ignore[arg-type]
    result = run_job_for_people("export", request, background, json_out)
    if result is None:
        return
    console.print(f"[bold]{result['artifact_id']}[/]: {result['path']}")
    console.print(f"{result['format']}, {result['bytes'] / 1e6:.1f} MB; lineage: "
                  f"{' -> '.join(result['lineage'])}")  # fmt: skip
    if "max_abs_logit_diff" in result["details"]:
        console.print(f"ONNX Runtime vs PyTorch: max logit difference "
                      f"{result['details']['max_abs_logit_diff']:.2e}")  # fmt: skip
