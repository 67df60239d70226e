"""`lmfast distill` (teacher -> student) and `lmfast align` (ORPO / DPO on preference pairs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lmfast.cli.output import console
from lmfast.cli.train import show_result

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Recipe overrides such as training.learning_rate=1e-4 (repeatable)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML recipe.")]
DataOpt = Annotated[str, typer.Option("--data", "-d", help="Dataset id, file, folder or glob.")]
Background = Annotated[bool, typer.Option("--background", help="Print the job id only.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def distill_command(
    overrides: Overrides = None,
    config: ConfigOpt = None,
    data: DataOpt = ...,  # type: ignore[assignment]
    teacher: Annotated[str, typer.Option("--teacher", "-t", help="Teacher model.")] = (
        "smollm2-135m-instruct"
    ),
    student: Annotated[
        str | None, typer.Option("--student", "-s", help="Student model (same tokenizer).")
    ] = None,
    student_layers: Annotated[
        str | None,
        typer.Option(help="Build the student from the teacher: every_other, or e.g. 0,2,4,29."),
    ] = None,
    mlp_ratio: Annotated[
        float | None, typer.Option(help="Built student: share of MLP neurons kept.")
    ] = None,
    mode: Annotated[str, typer.Option(help="online or offline (stored top-k logits).")] = (
        "online"
    ),
    alpha: Annotated[float, typer.Option(help="KL weight; 1 - alpha weighs the CE.")] = 0.5,
    temperature: Annotated[float, typer.Option(help="Softmax temperature.")] = 2.0,
    top_k: Annotated[int, typer.Option(help="Offline: teacher logits kept per token.")] = 32,
    lora: Annotated[
        bool | None,
        typer.Option(
            "--lora/--no-lora",
            help="Train LoRA adapters instead of all weights (default: the recipe's "
            "training.lora.enabled if it sets one, else all weights).",
        ),
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per sequence.")] = None,
    eval_tasks: Annotated[
        list[str] | None,
        typer.Option("--eval-task", help="Task for the side-by-side report (repeatable)."),
    ] = None,
    eval_limit: Annotated[
        int | None, typer.Option(help="At most this many examples per report task.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name for the student artifact.")] = None,
    fresh: Annotated[bool, typer.Option(help="Ignore earlier checkpoints.")] = False,
    background: Background = False,
    json_out: JsonOut = False,
) -> None:
    """Distil a teacher into a student (KL on softened logits + CE) as a job with progress."""
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.config import load_config
    from lmfast.distillation.distill import DistillRequest

    flags = {
        "model.reference": student,
        "data.path": data,
        "training.lora.enabled": lora,
        "training.max_steps": max_steps,
        "training.epochs": epochs,
        "training.max_seq_length": seq_len,
    }
    cfg = load_config(config, overrides, values=flags)
    layers: Any = student_layers
    if student_layers and student_layers != "every_other":
        try:
            layers = [int(x) for x in student_layers.split(",")]
        except ValueError:
            raise typer.BadParameter(
                f"{student_layers!r}: give every_other or layer numbers like 0,2,4",
                param_hint="--student-layers",
            ) from None
    request = DistillRequest(
        config=cfg,
        teacher=teacher,
        mode=mode,  # type: ignore[arg-type]
        alpha=alpha,
        temperature=temperature,
        top_k=top_k,
        student_layers=layers,
        student_mlp_ratio=mlp_ratio,
        eval_tasks=eval_tasks,
        eval_limit=eval_limit,
        name=name,
        fresh=fresh,
    )
    result = run_job_for_people("distill", request, background, json_out)
    if result is None:
        return
    show_result(result["training"])
    if result.get("student"):
        s = result["student"]
        console.print(
            f"student built from layers {s['layers']} of {s['teacher_layers']}: "
            f"{s['parameters']:,} parameters (teacher {s['teacher_parameters']:,}), "
            f"{s['expected_speedup']}x fewer weights per decoded token"
        )
    if result.get("teacher_labels"):
        t = result["teacher_labels"]
        console.print(
            f"teacher top-{t['k']} logits: {t['artifact_id']}, {t['bytes'] / 2**20:.1f} MB for "
            f"{t['positions']:,} positions, {t['coverage']:.1%} of the teacher's mass"
        )
    if result.get("evaluation"):
        ev = result["evaluation"]
        table = Table(title="teacher vs student")
        models = list(ev["models"])
        table.add_column("metric")
        for m in models:
            table.add_column(m)
        keys = sorted({k for v in ev["models"].values() for k in v})
        for k in keys:
            table.add_row(k, *[_fmt(ev["models"][m].get(k)) for m in models])
        console.print(table)
        console.print(f"report: {ev['path']}/report.md")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def align_command(
    overrides: Overrides = None,
    config: ConfigOpt = None,
    data: DataOpt = ...,  # type: ignore[assignment]
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model to align.")] = None,
    method: Annotated[str, typer.Option(help="orpo (no reference model) or dpo.")] = "orpo",
    beta: Annotated[float, typer.Option(help="ORPO lambda / DPO beta.")] = 0.1,
    full: Annotated[bool, typer.Option("--full", help="Train all weights, not LoRA.")] = False,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Peak rate.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per pair side.")] = None,
    validation_split: Annotated[
        float | None, typer.Option(help="Held-out pairs for preference accuracy.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name for the output artifact.")] = None,
    fresh: Annotated[bool, typer.Option(help="Ignore earlier checkpoints.")] = False,
    background: Background = False,
    json_out: JsonOut = False,
) -> None:
    """Align a model to preference pairs (ORPO or DPO, LoRA by default) as a job."""
    from lmfast.alignment.align import AlignRequest
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.config import load_config

    flags = {
        "model.reference": model,
        "data.path": data,
        "training.lora.enabled": False if full else None,
        "training.max_steps": max_steps,
        "training.epochs": epochs,
        "training.learning_rate": learning_rate,
        "training.max_seq_length": seq_len,
        "data.validation_split": validation_split,
    }
    cfg = load_config(config, overrides, values=flags)
    request = AlignRequest(config=cfg, method=method, beta=beta, name=name, fresh=fresh)  # type: ignore[arg-type]
    result = run_job_for_people("align_orpo", request, background, json_out)
    if result is None:
        return
    show_result(result["training"])
    p = result["preference"]
    console.print(
        f"{result['method'].upper()}: chosen preferred on {p['base_preference_accuracy']:.0%} -> "
        f"{p['aligned_preference_accuracy']:.0%} of {result['held_out_pairs']} "
        f"{result['measured_on']} pairs; mean log-prob margin {p['base_mean_margin']:+.2f} -> "
        f"{p['aligned_mean_margin']:+.2f}"
    )
