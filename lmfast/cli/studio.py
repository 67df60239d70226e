"""`lmfast studio`: the web app over every capability."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def studio_command(
    host: Annotated[str, typer.Option(help="Interface; off loopback a token is required.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 7860,
    token: Annotated[
        str | None,
        typer.Option(
            help="Token browsers must present (or env LMFAST_STUDIO_TOKEN); required off "
            "loopback. The printed address carries it once, then a cookie does."
        ),
    ] = None,
    allow_root: Annotated[
        list[Path] | None,
        typer.Option(
            "--allow-root",
            help="Folder whose files pages may read, beside LMFAST_HOME and the folder "
            "Studio starts in (repeatable).",
        ),
    ] = None,
) -> None:
    """Open LMFast Studio: data, training, evaluation, export, chat, lineage and jobs in a
    browser, over the same job store as the CLI and MCP."""
    from lmfast.studio import StudioSettings, run_studio

    settings = StudioSettings(
        host=host,
        port=port,
        token=token or os.environ.get("LMFAST_STUDIO_TOKEN") or None,
        roots=tuple(p.expanduser().resolve() for p in allow_root or []),
    )
    run_studio(settings)
