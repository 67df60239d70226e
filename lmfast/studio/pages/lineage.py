"""Lineage: any artifact's graph, from the raw files and base model through dataset, run,
adapter, merged model and GGUF, to what was made from it; each node with its manifest and
metrics, and a link to its own graph."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from lmfast.artifacts import ArtifactManifest, ArtifactStore
from lmfast.errors import ArtifactError
from lmfast.studio.rendering import render

router = APIRouter()
MAX_NODES = 200  # a graph this big is unreadable on a page anyway


@dataclass
class Node:
    id: str
    depth: int  # generations from the artifact shown: < 0 its sources, > 0 made from it
    manifest: ArtifactManifest | None = None  # None: a file, folder or model reference
    parents: list[str] = field(default_factory=list)


def graph(art_id: str, store: ArtifactStore) -> list[list[Node]]:
    """Columns of nodes, oldest generation first."""
    everything = {a.id: a.manifest for a in store.list()}
    if art_id not in everything:
        store.get(art_id)  # raises the store's own "no artifact" error
    children: dict[str, list[str]] = {}
    for m in everything.values():
        for p in m.parents:
            children.setdefault(p, []).append(m.id)
    nodes: dict[str, Node] = {}
    queue: list[tuple[str, int]] = [(art_id, 0)]
    while queue and len(nodes) < MAX_NODES:
        current, depth = queue.pop(0)
        if current in nodes:
            continue
        manifest = everything.get(current)
        nodes[current] = Node(current, depth, manifest, list(manifest.parents if manifest else []))
        if depth <= 0:  # walk up from the artifact and its sources
            queue += [(p, depth - 1) for p in nodes[current].parents]
        if depth >= 0:  # and down from it
            queue += [(c, depth + 1) for c in children.get(current, [])]
    columns: dict[int, list[Node]] = {}
    for node in nodes.values():
        columns.setdefault(node.depth, []).append(node)
    return [columns[d] for d in sorted(columns)]


@router.get("/lineage", response_class=HTMLResponse)
async def artifacts_page(request: Request, kind: str | None = None) -> HTMLResponse:
    arts = await asyncio.to_thread(ArtifactStore().list)
    shown = [a for a in arts if kind is None or a.manifest.kind == kind]
    return render(request, "artifacts.html", artifacts=shown, kind=kind)


@router.get("/lineage/{art_id}", response_class=HTMLResponse)
async def lineage_page(request: Request, art_id: str) -> HTMLResponse:
    try:
        columns = await asyncio.to_thread(graph, art_id, ArtifactStore())
    except ArtifactError as e:
        raise HTTPException(404, str(e)) from None
    return render(request, "lineage.html", columns=columns, current=art_id, page_for=page_for)


def page_for(manifest: ArtifactManifest | None) -> str | None:
    """The page that shows an artifact best, beside its lineage."""
    if manifest is None:
        return None
    pages: dict[str, Any] = {"dataset": "/data/", "report": "/evaluate/", "export": "/export/"}
    prefix = pages.get(manifest.kind)
    return f"{prefix}{manifest.id}" if prefix else None
