"""MCP path confinement as real clients start the server (cwd '/'), client-declared roots,
relative paths, and refusal of unknown arguments."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from lmfast.mcp_server import build_server
from mcp import Client, types
from mcp.client.stdio import StdioServerParameters

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def _server_from_root(home: Path, *args: str) -> StdioServerParameters:
    """As Claude Desktop starts it: working directory '/'."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "lmfast", "mcp", *args],
        env={**os.environ, "LMFAST_HOME": str(home)},
        cwd="/",
    )


def _records(folder: Path) -> Path:
    path = folder / "notes.jsonl"
    words = ["river", "garden", "city", "council", "budget"]
    words += ["teacher", "winter", "summer", "library", "music"]
    text = " ".join(
        f"The {a} and the {b} met in {c}." for a in words for b in words[:3] for c in words[:1]
    )
    path.write_text(json.dumps({"text": text}) + "\n")
    return path


async def test_cwd_root_is_not_an_allowed_root(lmfast_home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _records(data)
    params = _server_from_root(lmfast_home, "--allow-root", str(data))
    async with Client(params) as client:
        refused = await client.call_tool(
            "prep_dataset", {"inputs": ["/etc/os-release"], "wait": True}
        )
        assert refused.is_error and "outside the allowed roots" in _text(refused)
        assert "/etc" in _text(refused) and str(data) in _text(refused)
        # Relative paths resolve against the first --allow-root, not against '/'.
        ok = await client.call_tool(
            "prep_dataset", {"inputs": ["notes.jsonl"], "filters": "minimal", "wait": True}
        )
        assert not ok.is_error, _text(ok)
        assert ok.structured_content["status"] == "succeeded", ok.structured_content
        escape = await client.call_tool("prep_dataset", {"inputs": ["../../etc/passwd"]})
        assert escape.is_error and "outside the allowed roots" in _text(escape)


async def test_system_and_home_folders_never_become_roots(monkeypatch: Any) -> None:
    from lmfast.mcp_server.paths import allowed_roots, cwd_root

    for folder in ("/", "/etc", "/usr/lib", str(Path.home())):
        monkeypatch.chdir(folder)
        assert cwd_root() is None
        assert Path(folder).resolve() not in allowed_roots()


async def test_client_declared_roots_are_honoured(lmfast_home: Path, tmp_path: Path) -> None:
    declared = tmp_path / "declared"
    declared.mkdir()
    data = _records(declared)
    os.chdir("/")  # the server process's cwd is not a root here either

    async def list_roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=declared.as_uri(), name="data")])

    try:
        async with Client(build_server()) as plain:
            refused = await plain.call_tool("prep_dataset", {"inputs": [str(data)]})
            assert refused.is_error and "outside the allowed roots" in _text(refused)
        # Clients on the pre-2026 protocol (Claude Desktop today) can declare roots.
        async with Client(build_server(), list_roots_callback=list_roots, mode="legacy") as client:
            ok = await client.call_tool("prep_dataset", {"inputs": [str(data)]})
            assert not ok.is_error, _text(ok)
            assert ok.structured_content["status"] == "queued"
    finally:
        os.chdir(Path(__file__).resolve().parents[1])


async def test_unknown_arguments_are_refused_with_the_valid_ones() -> None:
    async with Client(build_server()) as client:
        result = await client.call_tool("list_jobs", {"limt": 3})
        assert result.is_error
        assert "unknown argument 'limt'" in _text(result)
        assert "valid arguments: limit, status" in _text(result)
        typo = await client.call_tool("generate", {"prompt": "hi", "temprature": 0})
        assert typo.is_error and "'temprature'" in _text(typo) and "temperature" in _text(typo)
        tools = (await client.list_tools()).tools
    assert all(t.input_schema.get("additionalProperties") is False for t in tools)


async def test_fine_tune_overrides_cannot_reach_paths() -> None:
    async with Client(build_server()) as client:
        for key in ("data.path", "model.reference", "serve.host", "training.grpo.rewards"):
            result = await client.call_tool(
                "fine_tune", {"data": "README.md", "overrides": {key: "/etc/passwd"}}
            )
            assert result.is_error and f"{key!r} cannot be overridden" in _text(result)


async def test_grpo_rewards_from_a_client_are_built_in_or_files_inside_the_roots(
    tmp_path: Path,
) -> None:
    """A reward is code LMFast runs: over MCP only the built-in ones, or a file.py:function
    inside the roots; never an importable module, and never through overrides."""
    async with Client(build_server()) as client:
        for rewards in (["os:system"], [f"{tmp_path}/mine.py:score"]):
            result = await client.call_tool("fine_tune", {"data": "README.md", "rewards": rewards})
            assert result.is_error, rewards
            assert "rewards" in _text(result)
        smuggled = await client.call_tool(
            "fine_tune",
            {"data": "README.md", "overrides": {"training.grpo": {"rewards": ["os:system"]}}},
        )
        assert smuggled.is_error and "cannot be overridden" in _text(smuggled)
    from lmfast.mcp_server.paths import confine_rewards

    inside = tmp_path / "mine.py"
    assert confine_rewards(["exact_answer", f"{inside}:score"], [tmp_path]) == [
        "exact_answer",
        f"{inside}:score",
    ]
