"""Who may use Studio: anyone on this machine when it listens on loopback, only token holders
otherwise (and on loopback too when a token is set).

Studio starts jobs and reads files, so three browser attacks matter besides other hosts: a
page on another site posting to localhost (refused: a changing request must come from
Studio's own origin), DNS rebinding (refused: without a token the Host header must name
loopback), and a leaked link (the token moves from the URL into an HttpOnly cookie at once).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from lmfast.config import is_loopback
from lmfast.errors import ConfigError

COOKIE = "lmfast_studio"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class StudioSettings:
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None
    roots: tuple[Path, ...] = ()  # folders beside LMFAST_HOME whose files pages may read

    def check(self) -> None:
        if self.token is None and not is_loopback(self.host):
            raise ConfigError([(
                "--token",
                f"host={self.host!r} is reachable from other machines, so a token is required "
                "(--token or env LMFAST_STUDIO_TOKEN)",
            )])  # fmt: skip
        if self.token is not None and len(self.token) < 16:
            raise ConfigError([("--token", "use at least 16 characters")])


def _host_name(host_header: str) -> str:
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return host.strip("[]")


class StudioAccess:
    """Pure ASGI middleware: a 401 page without the token, a 403 for cross-site writes."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, token

    def _has_token(self, scope: Any) -> bool:
        assert self.token is not None
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            return secrets.compare_digest(auth[7:].encode(), self.token.encode())
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return secrets.compare_digest(value.encode(), self.token.encode())
        return False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if self.token is not None:
            given = (query.get("token") or [""])[0]
            if given and secrets.compare_digest(given.encode(), self.token.encode()):
                # Move the token into a cookie and drop it from the address bar.
                rest = {k: v for k, v in query.items() if k != "token"}
                target = scope["path"] + (f"?{urlencode(rest, doseq=True)}" if rest else "")
                await _respond(send, 303, "", [
                    (b"location", target.encode()),
                    (b"set-cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; "
                                    "Path=/".encode()),
                ])  # fmt: skip
                return
            if not self._has_token(scope):
                await _respond(send, 401, _page(
                    "Studio needs its token",
                    "Open the address `lmfast studio` printed when it started (it ends in "
                    "?token=...), or send 'Authorization: Bearer TOKEN'.",
                ))  # fmt: skip
                return
        elif not is_loopback(_host_name(host)):
            await _respond(send, 403, _page(
                "Host not allowed",
                f"Studio without a token answers only to localhost addresses, not {host!r}. "
                "Start it with --token to reach it another way.",
            ))  # fmt: skip
            return
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get(b"origin", b"").decode("latin-1")
            if origin and urlparse(origin).netloc != host:
                await _respond(send, 403, _page(
                    "Cross-site request refused",
                    f"A page at {origin} tried to change something in Studio at {host}.",
                ))  # fmt: skip
                return
        await self.app(scope, receive, send)


def _page(title: str, text: str) -> str:
    from html import escape

    return (
        f"<!doctype html><title>{escape(title)}</title><body style='font-family:sans-serif'>"
        f"<h1>{escape(title)}</h1><p class='error'>{escape(text)}</p></body>"
    )


async def _respond(
    send: Any, status: int, body: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = body.encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(data)).encode()), *(headers or [])],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": data})
