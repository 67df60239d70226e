"""`lmfast eval`: score models on tasks; several models give a comparison report."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from lmfast.cli.output import console


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def eval_command(
    models: Annotated[
        list[str],
        typer.Argument(help="Model references (alias, .gguf, folder, adapter, artifact id)."),
    ],
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            "-t",
            help="Sample task names or task files (.jsonl, .txt, .yaml), comma-separated or "
            "repeated. Samples: arithmetic, capitals, definitions, prose, reading.",
        ),
    ] = None,
    harness_tasks: Annotated[
        list[str] | None,
        typer.Option("--harness-task", help="lm-evaluation-harness task name (repeatable)."),
    ] = None,
    harness_include: Annotated[
        str | None, typer.Option(help="Folder of extra harness YAML tasks (offline).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most N examples per task.")] = None,
    backend: Annotated[
        str, typer.Option(help="auto (llama.cpp for GGUF, transformers otherwise).")
    ] = "auto",
    batch_size: Annotated[int, typer.Option(help="Requests decoded together.")] = 8,
    efficiency: Annotated[
        bool, typer.Option(help="Measure time to first token, tokens/s and peak memory.")
    ] = True,
    tracker: Annotated[str, typer.Option(help="auto, mlflow or none.")] = "auto",
    seed: Annotated[int, typer.Option(help="Few-shot selection seed.")] = 1234,
    name: Annotated[str | None, typer.Option(help="Name for the report artifact.")] = None,
    background: Annotated[bool, typer.Option("--background", help="Print the job id only.")] = (
        False
    ),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate models on tasks (perplexity, multiple choice, generation, lm-eval harness)."""
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.evaluation.evaluate import EvaluateRequest

    request = EvaluateRequest(
        models=models,
        tasks=_split(tasks),
        harness_tasks=_split(harness_tasks),
        harness_include=harness_include,
        limit=limit,
        backend=backend,  # type: ignore[arg-type]
        batch_size=batch_size,
        efficiency=efficiency,
        tracker=tracker,  # type: ignore[arg-type]
        seed=seed,
        name=name,
    )
    result = run_job_for_people("evaluate", request, background, json_out)
    if result is not None:
        show_result(result)


def show_result(result: dict[str, Any]) -> None:
    from lmfast.evaluation.report import fmt

    models = result["models"]
    table = Table(title="evaluate")
    table.add_column("task")
    table.add_column("metric")
    for m in models:
        table.add_column(m["label"], justify="right")
    rows: dict[tuple[str, str], list[str]] = {}
    for i, m in enumerate(models):
        sections = [(t["task"], t["metrics"]) for t in m["tasks"]]
        sections += [(f"harness:{k}", v) for k, v in m["harness"].items()]
        sections += [("efficiency", m["efficiency"])] if m["efficiency"] else []
        for task, values in sections:
            for key, value in values.items():
                cells = rows.setdefault((task, key), ["-"] * len(models))
                cells[i] = fmt(key, value)
    for (task, key), cells in rows.items():
        table.add_row(task, key, *cells)
    console.print(table)
    if result.get("disagreements"):
        console.print(f"{result['disagreements']} examples where the models disagree")
    console.print(f"[green]report[/] {result['artifact_id']} at {result['path']}")
