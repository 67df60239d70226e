"""The CLI and the MCP server cover the same capabilities."""

from __future__ import annotations

import anyio
from lmfast.mcp_server import build_server
from mcp import Client

from lmfast.capabilities import CAPABILITIES, CLI_ONLY, STUDIO
from lmfast.cli.app import COMMANDS


def test_every_capability_has_both_faces() -> None:
    async def tool_names() -> set[str]:
        async with Client(build_server()) as client:
            return {t.name for t in (await client.list_tools()).tools}

    tools = anyio.run(tool_names)
    assert {tool for _, tool in CAPABILITIES.values()} == tools
    cli = {command for command, _ in CAPABILITIES.values()}
    assert cli <= set(COMMANDS)
    assert set(COMMANDS) - cli == set(CLI_ONLY)


def test_studio_pages_exist_for_their_capabilities() -> None:
    from lmfast.studio.app import page_modules

    routes = {getattr(r, "path", "") for page in page_modules() for r in page.router.routes}
    assert set(STUDIO) <= set(CAPABILITIES)
    assert set(STUDIO.values()) <= routes
