"""`lmfast mcp`: the MCP server for Claude Desktop, Claude Code, Cursor and agent scripts."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from lmfast.cli.options import GuardOpt


def mcp_command(
    transport: Annotated[str, typer.Option(help="stdio (default) or http.")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            help="Bearer token HTTP clients must send (or env LMFAST_MCP_TOKEN); "
            "required off loopback."
        ),
    ] = None,
    allow_root: Annotated[
        list[str] | None,
        typer.Option(
            help="Another folder tools may read or write (repeatable). The current "
            "folder and LMFAST_HOME are always allowed."
        ),
    ] = None,
    guard: GuardOpt = None,
    confirm: Annotated[
        bool,
        typer.Option(
            envvar="LMFAST_MCP_CONFIRM",
            help="Ask the person before a job the plan estimates past --confirm-minutes, past "
            "the memory budget, or that deletes a run's checkpoints (--no-confirm: scripts).",
        ),
    ] = True,
    confirm_minutes: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="LMFAST_MCP_CONFIRM_MINUTES",
            help="Estimated training minutes that need a yes.",
        ),
    ] = 60.0,
) -> None:
    """Serve LMFast's tools over MCP (stdio, or streamable HTTP at /mcp). --guard applies to
    the generate tool; clients cannot change it."""
    from lmfast.guardrails.guard import GUARD_ENV
    from lmfast.guardrails.policy import load_policy
    from lmfast.mcp_server import run
    from lmfast.mcp_server.confirm import CONFIRM_ENV, MINUTES_ENV

    os.environ[CONFIRM_ENV] = "on" if confirm else "off"  # the tools read these
    os.environ[MINUTES_ENV] = str(confirm_minutes)
    if guard is not None:
        load_policy(guard)  # a bad policy stops here, not in the first tool call
        os.environ[GUARD_ENV] = guard  # generate's pipelines read it

    run(
        transport,
        host=host,
        port=port,
        token=token or os.environ.get("LMFAST_MCP_TOKEN"),
        allow_roots=allow_root,
    )
