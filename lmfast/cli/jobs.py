"""`lmfast jobs ...`: the same jobs the MCP server and Python API see."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from lmfast.cli.output import console, err_console, print_json

app = typer.Typer(help="Follow, wait for and cancel long-running jobs.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
JobId = Annotated[str, typer.Argument(help="Job id (lmfast jobs list shows them).")]


def follow(job_id: str, quiet: bool = False) -> None:
    """Show a progress bar (on stderr) until the job ends; Ctrl-C cancels the job."""
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lmfast.jobs import cancel, wait
    from lmfast.jobs.store import JobInfo

    with Progress(
        TextColumn("[bold]{task.fields[kind]}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
        disable=quiet,
    ) as bar:
        task = bar.add_task("queued", total=None, kind=job_id)
        printed = 0

        def show(info: JobInfo) -> None:
            nonlocal printed
            for note in info.notes[printed:]:  # the plan and warnings stay on screen
                style = "yellow" if note.startswith("warning: ") else "cyan"
                bar.console.print(f"[{style}]{escape(note)}[/]")
            printed = len(info.notes)
            bar.update(
                task,
                completed=info.step,
                total=info.total,
                description=info.message,
                kind=info.kind,
            )

        try:
            info = wait(job_id, on_progress=show)
        except KeyboardInterrupt:
            bar.update(task, description="cancelling ...")
            info = cancel(job_id)
    if info.status != "succeeded":
        from lmfast.errors import LMFastError

        raise LMFastError(f"job {job_id} {info.status}: {info.error or ''}".strip())


def run_job(
    kind: str, request: Any, background: bool, quiet: bool = False
) -> dict[str, Any] | None:
    """Submit a job; print its id (background) or follow it and return its result."""
    from lmfast.jobs import JobStore, submit

    job_id = submit(kind, request)
    if background:
        print(job_id)
        return None
    follow(job_id, quiet)
    return JobStore().result(job_id) or {}


def run_job_for_people(
    kind: str, request: Any, background: bool, json_out: bool
) -> dict[str, Any] | None:
    """`run_job`, then print the result as JSON for --json; returns it only when a table
    should be shown (foreground, no --json)."""
    result = run_job(kind, request, background, quiet=json_out)
    if result is not None and json_out:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return None
    return result


@app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option(help="Only jobs in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most jobs to show.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Recent jobs, newest first."""
    from typing import get_args

    from lmfast.errors import ConfigError
    from lmfast.jobs import JobStore
    from lmfast.jobs.store import JobStatus

    if status is not None and status not in get_args(JobStatus):
        allowed = ", ".join(get_args(JobStatus))
        raise ConfigError([("--status", f"{status!r} is not one of {allowed}")])
    jobs = JobStore().list(status=status, limit=limit)
    if json_out:
        print_json(jobs)
        return
    table = Table(title="Jobs")
    # Ids are copied into other commands: never cut or wrap them.
    table.add_column("id", no_wrap=True, min_width=max((len(j.id) for j in jobs), default=2))
    for col in ("kind", "status", "progress", "message", "age"):
        table.add_column(col)
    for j in jobs:
        prog = f"{j.step:g}/{j.total:g}" if j.total else f"{j.step:g}"
        table.add_row(
            j.id, j.kind, j.status, prog, j.error or j.message, f"{time.time() - j.created_at:.0f}s"
        )
    console.print(table)


@app.command("status")
def status_command(job_id: JobId) -> None:
    """A job's state and progress (JSON)."""
    from lmfast.jobs import JobStore

    print_json(JobStore().get(job_id))


@app.command("result")
def result_command(job_id: JobId) -> None:
    """A finished job's result (JSON)."""
    from lmfast.errors import LMFastError
    from lmfast.jobs import JobStore

    store = JobStore()
    info = store.get(job_id)
    if info.status != "succeeded":
        raise LMFastError(
            f"job {job_id} is {info.status}" + (f": {info.error}" if info.error else "")
        )
    console.print_json(json.dumps(store.result(job_id)))


@app.command("wait")
def wait_command(job_id: JobId) -> None:
    """Follow a job with a progress bar until it ends (Ctrl-C cancels it)."""
    follow(job_id)
    result_command(job_id)


@app.command("cancel")
def cancel_command(job_id: JobId) -> None:
    """Stop a job; its worker cleans up and nothing half-written is kept."""
    from lmfast.jobs import cancel

    info = cancel(job_id)
    console.print(f"{job_id}: {info.status}")
