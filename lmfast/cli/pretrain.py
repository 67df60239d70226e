"""`lmfast tokenizer train`, `lmfast templates list` and `lmfast tune`: the pieces of
pretraining from scratch and of searching recipes, over their Python functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lmfast.cli.output import console, print_json
from lmfast.config import DEFAULT_MODEL

tokenizer_app = typer.Typer(help="Train tokenizers for models pretrained from scratch.")
templates_app = typer.Typer(help="Model templates for pretraining from scratch.")

Background = Annotated[bool, typer.Option("--background", help="Print the job id only.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@tokenizer_app.command("train")
def tokenizer_train_command(
    corpus: Annotated[list[str], typer.Argument(help="Files, folders, globs or dataset ids.")],
    vocab_size: Annotated[int, typer.Option(help="Tokens, special tokens included.")] = 8192,
    model: Annotated[str, typer.Option(help="bpe (byte-level) or unigram.")] = "bpe",
    text_field: Annotated[str | None, typer.Option(help="Field holding the text.")] = None,
    min_frequency: Annotated[int, typer.Option(help="BPE: fewest sightings of a merge.")] = 2,
    held_out: Annotated[float, typer.Option(help="Share held out for compression.")] = 0.05,
    special_token: Annotated[
        list[str] | None,
        typer.Option("--special-token", help="Another special token to reserve (repeatable)."),
    ] = None,
    compare_with: Annotated[
        str | None,
        typer.Option(help="Model whose tokenizer the compression is compared with."),
    ] = DEFAULT_MODEL,
    name: Annotated[str | None, typer.Option(help="Name for the artifact.")] = None,
    background: Background = False,
    json_out: JsonOut = False,
) -> None:
    """Train a byte-level BPE or Unigram tokenizer with a ChatML template (an artifact that
    `lmfast prep --tokenizer` and `model.tokenizer` take), and compare its compression."""
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.training.tokenizer import TokenizerTrainRequest

    request = TokenizerTrainRequest(
        corpus=corpus,
        vocab_size=vocab_size,
        model=model,  # type: ignore[arg-type]
        text_field=text_field,
        min_frequency=min_frequency,
        held_out=held_out,
        special_tokens=special_token or [],
        compare_with=compare_with or None,
        name=name,
    )
    result = run_job_for_people("train_tokenizer", request, background, json_out)
    if result is None:
        return
    table = Table(title="train_tokenizer", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("artifact", result["artifact_id"])
    table.add_row("model", f"{result['model']}, {result['vocab_size']:,} tokens")
    table.add_row("documents", f"{result['documents']:,} (+{result['held_out_documents']:,} "
                  "held out)")  # fmt: skip
    if result["bytes_per_token"] is not None:
        table.add_row("held-out bytes/token", f"{result['bytes_per_token']:.3f}")
    if result["reference_bytes_per_token"] is not None:
        table.add_row(
            f"{result['reference']} bytes/token", f"{result['reference_bytes_per_token']:.3f}"
        )
    table.add_row("time", f"{result['seconds']:.1f} s")
    console.print(table)


@templates_app.command("list")
def templates_list_command(
    tokenizer: Annotated[
        str | None, typer.Option(help="Count with this tokenizer's vocabulary.")
    ] = None,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence for the plan.")] = 512,
    profile: Annotated[
        str | None, typer.Option(help="Plan for t4, a100, h100 or cpu instead of this machine.")
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """The built-in templates with their parameter counts and, from the hardware plan, the
    memory and speed of pretraining each on this machine (or a --profile)."""
    from lmfast.training.templates import BUILTIN, template_table

    rows = template_table(tokenizer, seq_len, profile)
    if json_out:
        print_json(rows)
        return
    table = Table(title=f"templates ({BUILTIN}); plan: {rows[0].hardware if rows else ''}")
    for col in ("name", "architecture", "parameters", "layers x width", "peak GB", "tokens/s"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.name,
            r.architecture,
            f"{r.parameters / 1e6:.1f} M",
            f"{r.layers} x {r.width}",
            f"{r.peak_memory_gb:.2f}" + ("" if r.fits else " (too big)"),
            f"{r.tokens_per_second:,.0f}",
        )
    console.print(table)
    console.print(f"copy {BUILTIN} to make your own; use it as model.template=FILE:NAME")


def tune_command(
    space: Annotated[Path, typer.Option("--space", "-s", help="YAML: field -> range/choices.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Recipe overrides such as training.max_steps=50.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Base recipe.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Base model.")] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Dataset artifact id, file, folder, glob.")
    ] = None,
    trials: Annotated[int, typer.Option(help="Trials in the study, in total.")] = 10,
    objective: Annotated[
        list[str] | None,
        typer.Option(help="Metric to optimise (repeat for a Pareto front): eval_loss, seconds…"),
    ] = None,
    sampler: Annotated[str, typer.Option(help="auto, cmaes, nsga2, tpe or random.")] = "auto",
    prune: Annotated[bool, typer.Option(help="Prune trials behind the median.")] = True,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    study: Annotated[str | None, typer.Option(help="Study name (continues it).")] = None,
    name: Annotated[str | None, typer.Option(help="Name for the report artifact.")] = None,
    background: Background = False,
    json_out: JsonOut = False,
) -> None:
    """Search recipe fields with Optuna (CMA-ES, or NSGA-II for several objectives); each
    trial is a tracked training run; writes the best recipe as YAML and a plot."""
    import yaml

    from lmfast.cli.jobs import run_job_for_people
    from lmfast.config import load_config
    from lmfast.errors import ConfigError
    from lmfast.training.tune import TuneRequest

    if not space.is_file():
        raise ConfigError([("--space", f"file not found: {space}")])
    loaded: Any = yaml.safe_load(space.read_text())
    if not isinstance(loaded, dict):
        raise ConfigError([("--space", f"{space} must map recipe fields to ranges or choices")])
    flags = {"model.reference": model, "data.path": data}
    request = TuneRequest(
        config=load_config(config, overrides, values=flags),
        space=loaded,
        trials=trials,
        objectives=objective or ["eval_loss"],
        sampler=sampler,  # type: ignore[arg-type]
        prune=prune,
        seed=seed,
        study=study,
        name=name,
    )
    result = run_job_for_people("tune", request, background, json_out)
    if result is None:
        return
    table = Table(title=f"tune: study {result['study']}")
    for col in ("trial", "state", *request.objectives, "parameters"):
        table.add_column(col)
    for t in result["trials"]:
        values = t["values"] or [None] * len(request.objectives)
        table.add_row(
            str(t["number"]) + (" *" if t["number"] == result["best_trial"] else ""),
            t["state"],
            *[f"{v:.4g}" if v is not None else "-" for v in values],
            json.dumps(t["params"]),
        )
    console.print(table)
    console.print(f"[green]best[/] trial {result['best_trial']}: {result['best_recipe']}")
    console.print(f"plot: {result['plot']}")
