"""lmfast.mcp_server: LMFast's capabilities as MCP tools, resources and prompts."""

from __future__ import annotations

import os
import secrets
from typing import Any

from lmfast.config import is_loopback
from lmfast.errors import ConfigError

__all__ = ["build_server", "run"]


def build_server() -> Any:
    from lmfast.mcp_server.server import build_server as build

    return build()


class _BearerAuth:
    """Require `Authorization: Bearer <token>` on every HTTP request (pure ASGI)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"")
            given = header[7:] if header.lower().startswith(b"bearer ") else b""
            if not secrets.compare_digest(given, self.token):
                from starlette.responses import JSONResponse

                body = {"error": "unauthorized: send 'Authorization: Bearer <token>'"}
                await JSONResponse(body, status_code=401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def run(
    transport: str = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    allow_roots: list[str] | None = None,
) -> None:
    """Serve MCP over stdio or streamable HTTP (at /mcp)."""
    from lmfast.mcp_server.paths import ROOTS_ENV

    if allow_roots:
        existing = [p for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p]
        os.environ[ROOTS_ENV] = os.pathsep.join([*existing, *allow_roots])
    server = build_server()
    if transport == "stdio":
        server.run("stdio")
        return
    if transport != "http":
        raise ConfigError([("--transport", f"{transport!r} is not one of stdio, http")])
    if token is None and not is_loopback(host):
        raise ConfigError(
            [
                (
                    "--token",
                    f"host={host!r} is reachable from other machines, so a "
                    "bearer token is required (or bind to 127.0.0.1)",
                )
            ]
        )
    import uvicorn

    app = server.streamable_http_app()
    if token:
        app = _BearerAuth(app, token)
    uvicorn.run(app, host=host, port=port, log_level="warning")
