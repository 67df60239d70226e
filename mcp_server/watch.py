"""Resource updates: a client subscribed to `jobs://{id}` hears when that job moves (progress,
status, result), and one subscribed to `artifacts://index` when an artifact appears.

Workers write the SQLite job store from other processes, so the server polls it (one indexed
query a second) and publishes what changed: on modern connections through the SDK's
`subscriptions/listen` bus, on legacy ones as `notifications/resources/updated` to each
session that sent `resources/subscribe`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.subscriptions import ResourceUpdated
from mcp_types import SubscribeRequestParams, UnsubscribeRequestParams

from lmfast.jobs.store import JobStore

POLL_S = 1.0
INDEX = "artifacts://index"


def _connection(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The client connection behind a request: subscriptions outlive the request, and the
    SDK's `ctx.session` is a per-request wrapper around it (no public accessor in 2.3)."""
    return getattr(ctx.session, "_connection", ctx.session)


class Subscribers:
    """Legacy connections and the URIs each asked to hear about."""

    def __init__(self) -> None:
        self.by_uri: dict[str, list[Any]] = {}

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> HandlerResult:
        connections = self.by_uri.setdefault(str(params.uri), [])
        if _connection(ctx) not in connections:
            connections.append(_connection(ctx))
        return {}

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> HandlerResult:
        connections = self.by_uri.get(str(params.uri), [])
        if _connection(ctx) in connections:
            connections.remove(_connection(ctx))
        return {}

    async def notify(self, uri: str) -> None:
        for connection in list(self.by_uri.get(uri, [])):
            try:
                await connection.send_resource_updated(uri)
            except Exception:  # the client went away: forget it
                with contextlib.suppress(ValueError):
                    self.by_uri[uri].remove(connection)


def _artifact_count() -> int:
    from lmfast.artifacts import ArtifactStore

    return sum(1 for p in ArtifactStore().root.iterdir() if not p.name.startswith("."))


async def _watch(server: MCPServer, subscribers: Subscribers) -> None:
    store = JobStore()
    since = time.time()
    artifacts = await anyio.to_thread.run_sync(_artifact_count)
    while True:
        await anyio.sleep(POLL_S)
        changed, since = await anyio.to_thread.run_sync(store.changed_since, since)
        uris = [f"jobs://{job_id}" for job_id in changed]
        count = await anyio.to_thread.run_sync(_artifact_count)
        if count != artifacts:
            artifacts = count
            uris.append(INDEX)
        for uri in uris:
            await server._subscriptions.publish(ResourceUpdated(uri=uri))
            await subscribers.notify(uri)


def add_resource_updates(server: MCPServer) -> None:
    """Serve `resources/subscribe` (legacy) and publish updates from a background poller that
    lives as long as the server (its lifespan)."""
    subscribers = Subscribers()
    low = server._lowlevel_server
    low.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribers.subscribe)
    low.add_request_handler(
        "resources/unsubscribe", UnsubscribeRequestParams, subscribers.unsubscribe
    )
    inner = low.lifespan

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        async with inner(app) as state, anyio.create_task_group() as tasks:
            tasks.start_soon(_watch, server, subscribers)
            try:
                yield state
            finally:
                tasks.cancel_scope.cancel()

    low.lifespan = lifespan
