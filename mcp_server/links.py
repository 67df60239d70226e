"""Tool results point at what they made: every artifact a result names (dataset, adapter,
model, GGUF export, evaluation report, ...) comes back as a `resource_link` to its
`artifact://{id}/manifest` resource, beside the JSON text and the structured content."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pydantic_core
from mcp_types import CallToolResult, ResourceLink, TextContent

from lmfast.artifacts import KINDS, ArtifactStore

_ARTIFACT_ID = re.compile(rf"^(?:{'|'.join(KINDS)})-\d{{8}}-\d{{6}}-[0-9a-f]{{6}}$")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def artifact_links(value: Any) -> list[ResourceLink]:
    """A link for each existing artifact whose id appears in `value`, in order, once."""
    store = ArtifactStore()
    links: list[ResourceLink] = []
    seen: set[str] = set()
    for text in _strings(value):
        if text in seen or not _ARTIFACT_ID.match(text) or not store.exists(text):
            continue
        seen.add(text)
        manifest = store.get(text).manifest
        label = f"{manifest.kind} {manifest.name!r}" if manifest.name else manifest.kind
        links.append(
            ResourceLink(
                uri=f"artifact://{text}/manifest",
                name=text,
                title=f"{label} ({text})",
                description=f"The {manifest.kind} artifact's manifest: its settings, parents, "
                "metrics and files.",
                mime_type="application/json",
            )
        )
    return links


def add_artifact_links(result: Any) -> Any:
    """Append links for the artifacts a successful tool result names (other results pass)."""
    if not isinstance(result, CallToolResult) or result.is_error or not result.structured_content:
        return result
    links = artifact_links(result.structured_content)
    known = {c.uri for c in result.content if isinstance(c, ResourceLink)}
    fresh = [link for link in links if link.uri not in known]
    if not fresh:
        return result
    return result.model_copy(update={"content": [*result.content, *fresh]})


def outcome_result(outcome: Any) -> CallToolResult:
    """A finished job as the job tool itself returns it with `wait: true` (the text and
    structured content of its `JobOutcome`, links included); a failed job is `isError`."""
    structured = outcome.model_dump(mode="json", by_alias=True)
    text = TextContent(text=pydantic_core.to_json(outcome, fallback=str, indent=2).decode())
    result = CallToolResult(content=[text], structured_content=structured)
    if outcome.status == "failed":
        return result.model_copy(update={"is_error": True})
    return add_artifact_links(result)
