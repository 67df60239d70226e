"""Shared terminal output: one console, JSON for scripts, tables for people."""

from __future__ import annotations

from pydantic import BaseModel
from rich.console import Console

console = Console()
err_console = Console(stderr=True)  # progress bars: stdout stays clean for pipes and --json


def print_json(model: BaseModel | list[BaseModel]) -> None:
    """Machine-readable output for `--json`."""
    if isinstance(model, list):
        body = "[" + ",".join(m.model_dump_json() for m in model) + "]"
    else:
        body = model.model_dump_json(indent=2)
    console.print_json(body)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"
