"""The MCP server through the official SDK client: in memory, over stdio and over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from lmfast.mcp_server import build_server
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.server_utils import free_port

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _stdio(home: Path) -> StdioServerParameters:
    # The SDK passes only a safe subset of the environment by default; the server needs ours.
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "lmfast", "mcp"],
        env={**os.environ, "LMFAST_HOME": str(home)},
        cwd=str(REPO),
    )


def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def test_tools_have_input_and_output_schemas() -> None:
    async with Client(build_server()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {
        "generate",
        "list_models",
        "model_info",
        "convert_model",
        "job_status",
        "job_result",
        "cancel_job",
        "list_jobs",
    } <= set(tools)
    gen = tools["generate"]
    props = gen.input_schema["properties"]
    assert props["max_tokens"]["maximum"] == 4096 and "prompt" in props
    assert gen.output_schema and "text" in gen.output_schema["properties"]
    assert tools["convert_model"].input_schema["properties"]["wait"]["type"] == "boolean"
    for tool in tools.values():
        assert tool.description


@pytest.mark.slow
async def test_generate_on_the_embedded_model() -> None:
    async with Client(build_server()) as client:
        result = await client.call_tool(
            "generate",
            {"prompt": "What is the capital of France?", "temperature": 0, "max_tokens": 24},
        )
    assert not result.is_error, _text(result)
    assert "Paris" in result.structured_content["text"]
    assert result.structured_content["backend"] == "llama.cpp"


@pytest.mark.slow
async def test_job_with_wait_reports_increasing_progress(lmfast_home: Path) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with Client(build_server()) as client:
        result = await client.call_tool(
            "convert_model", {"dtype": "float32", "wait": True}, progress_callback=on_progress
        )
        assert not result.is_error, _text(result)
        out = result.structured_content
        assert out["status"] == "succeeded"
        art = out["result"]["artifact_id"]
        info = await client.read_resource(f"model://{art}/info")
        assert json.loads(info.contents[0].text)["format"] == "hf"
        manifest = await client.read_resource(f"artifact://{art}/manifest")
        assert json.loads(manifest.contents[0].text)["kind"] == "model"
        job = await client.read_resource(f"jobs://{out['job_id']}")
        assert json.loads(job.contents[0].text)["result"]["artifact_id"] == art
    values = [v for v, _, _ in progress]
    assert len(values) >= 3
    assert values == sorted(values) and values[-1] == 4
    assert all(total == 4 for _, total, _ in progress[1:])
    assert any(m and "loading" in m for _, _, m in progress)


@pytest.mark.slow
async def test_cancel_a_running_job(lmfast_home: Path) -> None:
    async with Client(build_server()) as client:
        started = await client.call_tool("convert_model", {"dtype": "float32"})
        job_id = started.structured_content["job_id"]
        assert started.structured_content["status"] == "queued"
        for _ in range(300):  # wait until the worker is busy loading the model
            status = (await client.call_tool("job_status", {"job_id": job_id})).structured_content
            if status["status"] == "running" and status["step"] >= 1:
                break
            await anyio.sleep(0.1)
        early = await client.call_tool("job_result", {"job_id": job_id})
        assert early.is_error and "still running" in _text(early)
        cancelled = await client.call_tool("cancel_job", {"job_id": job_id})
        assert cancelled.structured_content["status"] == "cancelled"
        result = await client.call_tool("job_result", {"job_id": job_id})
        assert result.structured_content["status"] == "cancelled"
        jobs = (await client.call_tool("list_jobs", {"status": "cancelled"})).structured_content
        assert [j["id"] for j in jobs["result"]] == [job_id]
    artifacts = lmfast_home / "artifacts"
    assert not artifacts.exists() or list(artifacts.iterdir()) == []  # nothing half-written


async def test_bad_arguments_are_tool_errors(lmfast_home: Path, tmp_path: Path) -> None:
    link = lmfast_home / "escape"
    link.symlink_to("/etc")
    cases = {
        "generate": [
            ({"prompt": "hi", "max_tokens": 99999}, "max_tokens"),
            ({"max_tokens": 5}, "exactly one of prompt or messages"),
            ({"prompt": "hi", "model": "/etc/hostname"}, "outside the allowed roots"),
            ({"prompt": "hi", "model": f"{lmfast_home}/../../etc/hostname"}, "outside"),
            ({"prompt": "hi", "model": str(link / "hostname")}, "outside the allowed roots"),
            ({"prompt": "hi", "model": "no-such-model"}, "not found"),
            ({"prompt": "hi", "temperature": "hot"}, "temperature"),
        ],
        "job_status": [({"job_id": "job-nope"}, "no job with id")],
        "list_jobs": [({"limit": 0}, "limit"), ({"status": "sleeping"}, "status")],
        "convert_model": [({"model": str(tmp_path.parent.parent)}, "outside the allowed roots")],
    }
    async with Client(build_server()) as client:
        for tool, calls in cases.items():
            for args, expected in calls:
                result = await client.call_tool(tool, args)
                assert result.is_error, (tool, args)
                assert expected in _text(result), (tool, args, _text(result))


@pytest.mark.slow
async def test_stdio_and_a_job_that_survives_a_server_restart(lmfast_home: Path) -> None:
    async with Client(_stdio(lmfast_home)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "generate" in names
        gen = await client.call_tool(
            "generate",
            {"prompt": "What is the capital of France?", "temperature": 0, "max_tokens": 24},
        )
        assert "Paris" in gen.structured_content["text"]
        started = await client.call_tool("convert_model", {"dtype": "float32"})
        job_id = started.structured_content["job_id"]
    # The first server process is gone; a new one still knows the job and sees it finish.
    async with Client(_stdio(lmfast_home)) as client:
        for _ in range(900):
            status = (await client.call_tool("job_status", {"job_id": job_id})).structured_content
            if status["status"] in ("succeeded", "failed", "cancelled"):
                break
            await anyio.sleep(0.2)
        assert status["status"] == "succeeded", status
        result = await client.call_tool("job_result", {"job_id": job_id})
        assert result.structured_content["result"]["artifact_id"].startswith("model-")


@pytest.mark.slow
async def test_streamable_http_needs_the_token(lmfast_home: Path) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lmfast",
            "mcp",
            "--transport",
            "http",
            "--port",
            str(port),
            "--token",
            "t0ken",
        ],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for _ in range(300):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.post(url, json={}, timeout=5).status_code == 401
        wrong = httpx.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        http = httpx2.AsyncClient(headers={"Authorization": "Bearer t0ken"}, timeout=60)
        async with Client(streamable_http_client(url, http_client=http)) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
        assert "generate" in tools
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_http_off_loopback_requires_a_token() -> None:
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    result = CliRunner().invoke(app, ["mcp", "--transport", "http", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "token" in result.stderr


@pytest.mark.slow
def test_mcp_inspector_cli_lists_tools_and_calls_generate(lmfast_home: Path) -> None:
    inspector = REPO / "tests" / "interop" / "node_modules" / ".bin" / "mcp-inspector"
    if not inspector.exists():
        pytest.fail("the MCP Inspector is not installed: run `make install`")
    base = [str(inspector), "--cli", sys.executable, "-m", "lmfast", "mcp"]
    env = {**os.environ, "LMFAST_HOME": str(lmfast_home)}
    listed = subprocess.run(
        [*base, "--method", "tools/list"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert listed.returncode == 0, listed.stderr
    names = {t["name"] for t in json.loads(listed.stdout)["tools"]}
    assert {"generate", "convert_model", "job_status"} <= names
    called = subprocess.run(
        [
            *base,
            "--method",
            "tools/call",
            "--tool-name",
            "generate",
            "--tool-arg",
            "prompt=What is the capital of France?",
            "--tool-arg",
            "temperature=0",
            "--tool-arg",
            "max_tokens=24",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert called.returncode == 0, called.stderr
    out = json.loads(called.stdout)
    assert not out.get("isError")
    assert "Paris" in json.dumps(out)


async def test_prep_dataset_tool(lmfast_home: Path, tmp_path: Path) -> None:
    data = lmfast_home / "raw.jsonl"
    text = "The river runs through the city and the people walk along it in the evening. " * 8
    data.write_text("\n".join(json.dumps({"text": text + str(i)}) for i in range(3)) + "\n")
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with Client(build_server()) as client:
        result = await client.call_tool(
            "prep_dataset",
            {"inputs": [str(data)], "filters": "minimal", "wait": True},
            progress_callback=on_progress,
        )
        assert not result.is_error, _text(result)
        report = result.structured_content["result"]["report"]
        assert report["documents_in"] == 3 and report["documents_out"] == 1  # near duplicates
        assert progress == sorted(progress) and progress[-1] == 100
        outside = await client.call_tool("prep_dataset", {"inputs": ["/etc/*.conf"]})
        assert outside.is_error and "outside the allowed roots" in _text(outside)
        escape = await client.call_tool("prep_dataset", {"inputs": [f"{lmfast_home}/*/../../x"]})
        assert escape.is_error
