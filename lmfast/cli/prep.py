"""`lmfast prep`: clean, filter, deduplicate, tokenize and pack a dataset (a job)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from lmfast.cli.output import console, human_bytes


def show_report(report: dict[str, Any]) -> None:
    table = Table(title="prep_dataset", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("format", f"{report['format']} (field {report['text_field']})")
    table.add_row("documents", f"{report['documents_in']} in -> {report['documents_out']} kept")
    chars_in, chars_out = report["characters_in"], report["characters_out"]
    table.add_row(
        "text",
        f"{chars_in:,} characters ({human_bytes(report['bytes_in'])}) in -> {chars_out:,} kept"
        f" ({chars_out / max(chars_in, 1):.0%})",
    )
    for reason, n in sorted(report["dropped"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"  dropped: {reason}", str(n))
    for issue, n in report["read_issues"].items():
        table.add_row(f"  input issue: {issue}", str(n))
    table.add_row("duplicate clusters", str(report["duplicate_clusters"]))
    if report.get("tokens") is not None:
        table.add_row("tokens", f"{report['tokens']:,} in {report['sequences']:,} sequences")
        table.add_row("  with a loss", f"{report['trainable_tokens']:,}")
        table.add_row("  padding", f"{report['padding_tokens']:,}")
        if report.get("documents_truncated"):
            table.add_row(
                "  truncated",
                f"{report['documents_truncated']} documents, "
                f"{report['tokens_truncated']:,} tokens cut",
            )
    table.add_row("shards", f"{report['shards']} ({report['resumed_shards']} resumed)")
    table.add_row("throughput", f"{report['mb_per_second']} MB/s over {report['seconds']} s")
    console.print(table)
    for example in report["issue_examples"][:5]:
        console.print(f"[dim]- {example}[/]")
    for warning in report.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {warning}", highlight=False)


def show_explanation(doc_id: str, dataset: str | None, json_out: bool) -> None:
    from lmfast.cli.output import print_json
    from lmfast.data.audit import explain_document

    e = explain_document(doc_id, dataset)
    if json_out:
        print_json(e)
        return
    where = f" ({e.source})" if e.source and e.source != e.id else ""
    if e.status == "kept":
        console.print(f"[green]{e.id}[/]{where} was kept: line {e.line} of {e.dataset}")
    elif e.status == "dropped":
        console.print(f"[yellow]{e.id}[/]{where} was dropped by the filters: {e.reason}")
    elif e.status == "duplicate":
        console.print(
            f"[yellow]{e.id}[/]{where} is an {e.kind} duplicate of [green]{e.kept_id}[/] "
            f"({e.kept_source}), kept in its place; estimated Jaccard {e.similarity:.2f}"
        )
    else:
        console.print(f"[red]{e.id}[/] is not in {e.dataset}'s input (ids or file:line)")
        raise typer.Exit(1)


def explain_command(
    doc_id: Annotated[str, typer.Argument(metavar="ID", help="Its id field, or file:line.")],
    dataset: Annotated[
        str | None, typer.Option(help="Dataset artifact (default: the newest).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Say why prep kept, dropped or deduplicated a document (and which one it duplicates)."""
    show_explanation(doc_id, dataset, json_out)


def prep_command(
    inputs: Annotated[list[str] | None, typer.Argument(help="Files, folders or globs.")] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto, text, messages, alpaca, sharegpt, prompt_response or preference.",
        ),
    ] = "auto",
    text_field: Annotated[str | None, typer.Option(help="Field holding raw text.")] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Tokenize and pack with this model's tokenizer (e.g. smollm2-135m-instruct)."
        ),
    ] = None,
    seq_len: Annotated[int, typer.Option(help="Tokens per packed sequence.")] = 2048,
    no_pack: Annotated[bool, typer.Option("--no-pack", help="One sequence per document.")] = False,
    filters: Annotated[str, typer.Option(help="auto, web, document, minimal or off.")] = "auto",
    no_exact_dedup: Annotated[bool, typer.Option("--no-exact-dedup")] = False,
    no_near_dedup: Annotated[bool, typer.Option("--no-near-dedup")] = False,
    scrub_pii: Annotated[
        bool, typer.Option("--scrub-pii", help="Replace e-mails, IPs and phone numbers.")
    ] = False,
    text_files: Annotated[str, typer.Option(help="file or blocks: documents in .txt files.")] = (
        "file"
    ),
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Any setting, e.g. filters.gopher_quality.min_doc_words=20 (repeatable)."
        ),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first malformed record.")] = False,
    engine: Annotated[
        str, typer.Option(help="local, or ray (lmfast[distributed]): where shards and dedup run.")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join with --engine ray (default: a local runtime)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name for the dataset artifact.")] = None,
    background: Annotated[bool, typer.Option("--background", help="Print the job id only.")] = (
        False
    ),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    explain: Annotated[
        str | None,
        typer.Option(
            "--explain",
            metavar="ID",
            help="Say why document ID (its id field, or file:line) was kept, dropped or "
            "deduplicated, instead of preparing data.",
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset artifact for --explain (default: the newest).")
    ] = None,
) -> None:
    """Prepare a dataset: readers, quality filters, exact + MinHash dedup, formatting, packing."""
    if explain is not None:
        show_explanation(explain, dataset, json_out)
        return
    if not inputs:
        from lmfast.errors import ConfigError

        raise ConfigError([("INPUTS", "give at least one file, folder or glob (or --explain ID)")])
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.config import merge_dicts, parse_overrides
    from lmfast.data.settings import FilterSettings, PrepRequest

    body: dict[str, Any] = {
        "inputs": inputs,
        "format": fmt,
        "text_field": text_field,
        "tokenizer": tokenizer,
        "seq_len": seq_len,
        "pack": not no_pack,
        "text_files": text_files,
        "strict": strict,
        "engine": engine,
        "ray_address": ray_address,
        "name": name,
        "dedup": {"exact": not no_exact_dedup, "near": not no_near_dedup},
        "scrub": {"emails": scrub_pii, "ip_addresses": scrub_pii, "phone_numbers": scrub_pii},
    }
    try:
        preset = FilterSettings.preset(filters)
    except ValueError as e:
        from lmfast.errors import ConfigError

        raise ConfigError([("--filters", str(e))]) from None
    if preset is not None:
        body["filters"] = preset.model_dump()
    body = merge_dicts(body, parse_overrides(setting or []))
    request = PrepRequest.model_validate(body)
    result = run_job_for_people("prep_dataset", request, background, json_out)
    if result is None:
        return
    show_report(result["report"])
    console.print(
        f"[green]saved[/] {result['artifact_id']} (version "
        f"{result['dataset_version'][:12]}) at {result['path']}"
    )
