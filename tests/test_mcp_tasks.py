"""MCP as the 2026 clients speak it: the tasks extension over the job store (the official
TypeScript ext-tasks client and LMFast's own Python claim), confirmations before expensive
work on both connection kinds, and resource links to the artifacts a result names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lmfast.agents.mcp_tasks import TaskResults, cancel_task, get_task
from lmfast.mcp_server import build_server
from lmfast.mcp_server.confirm import reasons
from lmfast.mcp_server.links import add_artifact_links
from lmfast.mcp_server.tasks import TASKS_EXTENSION
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ElicitResult, ResourceLink, TextContent

from lmfast.artifacts import ArtifactStore
from lmfast.jobs import JobStore
from tests.tiny_models import make_tiny_llama

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[1]
INTEROP = REPO / "tests" / "interop"
MODERN = "2026-07-28"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _artifact(kind: str = "adapter", name: str | None = "mine") -> str:
    with ArtifactStore().create(kind, name=name) as draft:  # type: ignore[arg-type]
        (draft.path / "weights.bin").write_bytes(b"0")
    return draft.artifact.id


def _chats(folder: Path, rows: int = 40) -> Path:
    path = folder / "chats.jsonl"
    with open(path, "w") as f:
        for i in range(rows):
            turns = [
                {"role": "user", "content": f"Add {i} and {i + 1}."},
                {"role": "assistant", "content": f"{2 * i + 1}"},
            ]
            f.write(json.dumps({"messages": turns}) + "\n")
    return path


async def test_tasks_get_reports_every_job_state(lmfast_home: Path) -> None:
    store = JobStore()
    adapter = _artifact()
    queued, running, done, failed, gone = (store.create("fine_tune", {}) for _ in range(5))
    store.update(running, status="running", step=3, total=10, message="step 3/10, loss 2.1")
    store.finish(done, "succeeded", result={"artifact_id": adapter, "metrics": {"loss": 1.0}})
    store.finish(failed, "failed", error="data.path: no such file")
    store.finish(gone, "cancelled", error="cancelled")
    async with Client(build_server(), mode=MODERN, extensions=[TaskResults()]) as client:
        session = client.session
        state = await get_task(session, queued)
        assert (state.status, state.status_message, state.poll_interval_ms) == (
            "working",
            "queued",
            1000,
        )
        extra = state.model_extra or {}
        assert extra["ttlMs"] is None and extra["createdAt"].endswith("Z")
        state = await get_task(session, running)
        assert state.status == "working" and state.status_message == "3/10 step 3/10, loss 2.1"

        state = await get_task(session, done)
        assert state.status == "completed" and state.result is not None
        result = CallToolResult.model_validate(state.result)
        assert not result.is_error
        assert result.structured_content == {
            "job_id": done,
            "status": "succeeded",
            "result": {"artifact_id": adapter, "metrics": {"loss": 1.0}},
            "error": None,
        }
        links = [c for c in result.content if isinstance(c, ResourceLink)]
        assert [(str(link.uri), link.mime_type) for link in links] == [
            (f"artifact://{adapter}/manifest", "application/json")
        ]
        manifest = await client.read_resource(str(links[0].uri))
        assert json.loads(manifest.contents[0].text)["kind"] == "adapter"

        # A failed job is the tool's failure (completed, isError), not a JSON-RPC failure.
        state = await get_task(session, failed)
        assert state.status == "completed"
        result = CallToolResult.model_validate(state.result)
        assert result.is_error and result.structured_content["error"] == "data.path: no such file"
        assert (await get_task(session, gone)).status == "cancelled"

        with pytest.raises(MCPError, match="no job with id 'job-nope'") as err:
            await get_task(session, "job-nope")
        assert err.value.code == -32602
        with pytest.raises(MCPError, match="no job with id"):
            await cancel_task(session, "job-nope")

        await cancel_task(session, queued)  # never started: cancelled at once
        assert (await get_task(session, queued)).status == "cancelled"
        assert store.get(queued).status == "cancelled"


async def test_only_job_tools_become_tasks(lmfast_home: Path) -> None:
    async with Client(build_server(), mode=MODERN, extensions=[TaskResults()]) as client:
        listed = await client.session.call_tool("list_models", {}, allow_claimed=True)
        assert isinstance(listed, CallToolResult) and not listed.is_error
        refused = await client.session.call_tool(
            "convert_model", {"model": "/etc/hostname"}, allow_claimed=True
        )
        assert isinstance(refused, CallToolResult) and refused.is_error
        assert "outside the allowed roots" in refused.content[0].text
    assert JobStore().list() == []  # nothing was started


async def test_tools_call_becomes_a_task_only_for_clients_that_declare_it(
    lmfast_home: Path,
) -> None:
    data = _chats(lmfast_home)
    args = {"data": str(data), "max_steps": 2, "max_seq_length": 64}
    async with Client(build_server(), mode=MODERN, extensions=[TaskResults()]) as client:
        created = await client.session.call_tool("fine_tune", args, allow_claimed=True)
        assert not isinstance(created, CallToolResult)
        assert created.result_type == "task" and created.status == "working"
        assert created.task_id.startswith("job-")
        assert JobStore().get(created.task_id).kind == "fine_tune"  # durable before the reply
        await cancel_task(client.session, created.task_id)
    # Without the extension (modern or legacy) the same call still answers with a job id.
    for mode in (MODERN, "legacy"):
        async with Client(build_server(), mode=mode) as client:
            started = await client.call_tool("fine_tune", args)
            assert not started.is_error
            job = started.structured_content
            assert job["status"] == "queued" and job["job_id"].startswith("job-")
            await client.call_tool("cancel_job", {"job_id": job["job_id"]})


async def test_every_job_tool_answers_with_a_task(
    lmfast_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe: each tool that runs a job hands a tasks client a task of its own kind
    (jobs are recorded, not run: no worker starts)."""
    import lmfast.jobs
    from lmfast.capabilities import CAPABILITIES
    from lmfast.jobs.kinds import KINDS

    monkeypatch.setattr(
        lmfast.jobs, "submit", lambda kind, request: JobStore().create(kind, request.model_dump())
    )
    chats = str(_chats(lmfast_home))
    pairs = lmfast_home / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    model = "smollm2-135m-instruct"
    args: dict[str, dict[str, Any]] = {
        "convert_model": {},
        "prep_dataset": {"inputs": [chats]},
        "fine_tune": {"data": chats},
        "train_tokenizer": {"corpus": [chats]},
        "tune": {"data": chats, "space": {"training.lora.rank": {"choices": [2, 4]}}},
        "merge_adapter": {"adapter": _artifact("adapter")},
        "distill": {"data": chats},
        "align_orpo": {"data": str(pairs)},
        "specialize_agent": {"tools": ["calculator"]},
        "quantize": {"model": model},
        "export_model": {"model": model},
        "evaluate": {"models": [model], "tasks": ["capitals"]},
    }
    tools = {CAPABILITIES[kind][1]: kind for kind in KINDS}
    assert set(tools) == set(args)  # a new job tool joins the probe
    async with Client(build_server(), mode=MODERN, extensions=[TaskResults()]) as client:
        for tool, kind in tools.items():
            created = await client.session.call_tool(tool, args[tool], allow_claimed=True)
            assert not isinstance(created, CallToolResult), (tool, created)
            assert created.result_type == "task", tool
            assert JobStore().get(created.task_id).kind == kind
            state = await get_task(client.session, created.task_id)
            assert (state.status, state.status_message) == ("working", "queued")


def test_links_name_each_existing_artifact_once(lmfast_home: Path) -> None:
    adapter, dataset = _artifact("adapter"), _artifact("dataset", None)
    structured = {
        "result": {"artifact_id": adapter, "dataset_artifact": dataset, "lineage": [adapter]},
        "note": "model-20260101-000000-abcdef is not an artifact here",
    }
    result = CallToolResult(content=[TextContent(text="{}")], structured_content=structured)
    linked = add_artifact_links(result)
    names = [c.name for c in linked.content if isinstance(c, ResourceLink)]
    assert names == [adapter, dataset]
    titles = [c.title for c in linked.content if isinstance(c, ResourceLink)]
    assert titles == [f"adapter 'mine' ({adapter})", f"dataset ({dataset})"]
    assert add_artifact_links(linked).content == linked.content  # idempotent
    failed = result.model_copy(update={"is_error": True})
    assert add_artifact_links(failed) is failed


# -- confirmations -----------------------------------------------------------------------


def _answer(yes: bool, asked: list[str]) -> Any:
    async def callback(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"proceed": yes})

    return callback


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
async def test_a_long_run_waits_for_a_yes(
    mode: str, lmfast_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMFAST_MCP_CONFIRM_MINUTES", "0.0001")  # any estimate is "long"
    data = _chats(lmfast_home)
    args = {"data": str(data), "max_steps": 5000, "max_seq_length": 64}
    asked: list[str] = []
    async with Client(build_server(), mode=mode, elicitation_callback=_answer(False, asked)) as c:
        refused = await c.call_tool("fine_tune", args)
    assert refused.is_error and "not started: the confirmation was declined" in (
        refused.content[0].text
    )
    assert len(asked) == 1 and asked[0].startswith("Start fine_tune? the plan estimates about")
    assert "5000 steps" in asked[0]
    assert JobStore().list() == []

    async with Client(build_server(), mode=mode, elicitation_callback=_answer(True, asked)) as c:
        started = await c.call_tool("fine_tune", args)
        assert not started.is_error, started.content
        await c.call_tool("cancel_job", {"job_id": started.structured_content["job_id"]})
    assert len(asked) == 2 and len(JobStore().list()) == 1


async def test_scripts_turn_confirmations_off(
    lmfast_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMFAST_MCP_CONFIRM_MINUTES", "0.0001")
    args = {"data": str(_chats(lmfast_home)), "max_steps": 5000, "max_seq_length": 64}
    async with Client(build_server(), mode="legacy") as client:  # no elicitation support
        refused = await client.call_tool("fine_tune", args)
        assert refused.is_error
        assert "no elicitation support" in refused.content[0].text
        assert "--no-confirm" in refused.content[0].text
    monkeypatch.setenv("LMFAST_MCP_CONFIRM", "off")
    asked: list[str] = []
    async with Client(build_server(), mode=MODERN, elicitation_callback=_answer(False, asked)) as c:
        started = await c.call_tool("fine_tune", args)
        assert not started.is_error and asked == []
        await c.call_tool("cancel_job", {"job_id": started.structured_content["job_id"]})


def test_what_needs_a_yes(lmfast_home: Path) -> None:
    from lmfast.config import load_config
    from lmfast.training.finetune import FineTuneRequest

    data = _chats(lmfast_home, rows=2000)

    def request(*overrides: str, **kw: Any) -> FineTuneRequest:
        config = load_config(None, [f"data.path={data}", *overrides])
        return FineTuneRequest(config=config, **kw)

    assert reasons(request("training.max_steps=10")) == []
    long = reasons(request("training.max_steps=1000000"))
    assert len(long) == 1 and "of training on" in long[0] and "1000000 steps" in long[0]
    too_big = reasons(
        request(
            "training.micro_batch_size=512", "training.max_seq_length=4096", "training.max_steps=1"
        )
    )
    assert any("past this machine's" in r for r in too_big)
    checkpoints = lmfast_home / "runs" / "mine" / "checkpoints" / "checkpoint-4"
    checkpoints.mkdir(parents=True)
    wipe = reasons(request("training.max_steps=10", run_id="mine", fresh=True))
    assert wipe == [f"fresh=true deletes the checkpoints of run 'mine' ({checkpoints.parent})"]
    assert reasons(request("training.max_steps=10", run_id="mine")) == []
    # Specialization counts its tasks and its GRPO steps.
    from lmfast.agents.specialize import SpecializeRequest

    assert reasons(SpecializeRequest(tools=["calculator"], train_tasks=300)) == []
    grpo = reasons(SpecializeRequest(tools=["calculator"], train_tasks=300, grpo_steps=2000))
    assert len(grpo) == 1 and "hours of training" in grpo[0]


# -- the official TypeScript tasks client --------------------------------------------------


def _node(
    mode: str, payload: dict[str, Any], home: Path, cwd: Path, confirm: str = "no"
) -> dict[str, Any]:
    env = {
        **os.environ,
        "LMFAST_TEST_CONFIRM": confirm,
        "LMFAST_HOME": str(home),
        "LMFAST_MCP_COMMAND": json.dumps([sys.executable, "-m", "lmfast", "mcp"]),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.run(
        ["node", str(INTEROP / "tasks_client.mjs"), mode, json.dumps(payload)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (make install)")
def test_typescript_ext_tasks_client(lmfast_home: Path, tmp_path: Path) -> None:
    """Start a fine-tune as a task and follow it, cancel another, and get a third's result
    from a new client on a new server process after the first ones are gone."""
    make_tiny_llama(tmp_path / "tiny")
    _chats(tmp_path, rows=120)
    base = {"data": "chats.jsonl", "model": "tiny", "max_seq_length": 64}
    call = {"tool": "fine_tune", "arguments": {**base, "max_steps": 3}}

    ran = _node("run", call, lmfast_home, tmp_path)
    assert (ran["era"], ran["kind"], ran["status"]) == ("modern", "task", "completed")
    assert ran["capabilities"]["execution"] and ran["capabilities"]["cancellation"]
    seen = [status for status, _ in ran["statuses"]]
    assert seen[0] == "working" and seen[-1] == "completed"
    assert any("step 3/3" in message for _, message in ran["statuses"])  # its progress
    outcome = ran["result"]["structuredContent"]
    assert outcome["job_id"] == ran["taskId"] and outcome["status"] == "succeeded"
    adapter = outcome["result"]["artifact_id"]
    links = [c["uri"] for c in ran["result"]["content"] if c["type"] == "resource_link"]
    assert f"artifact://{adapter}/manifest" in links

    # A run the plan estimates past the hour asks first (input_required), then is a task.
    long_call = {"tool": "fine_tune", "arguments": {**base, "max_steps": 1_000_000}}
    refused = _node("cancel", long_call, lmfast_home, tmp_path, confirm="no")
    assert refused["kind"] == "immediate" and refused["result"]["isError"]
    assert "not started: the confirmation was declined" in refused["result"]["content"][0]["text"]
    stopped = _node("cancel", long_call, lmfast_home, tmp_path, confirm="yes")
    assert stopped["asked"][0].startswith("Start fine_tune? the plan estimates about")
    assert stopped["kind"] == "task" and stopped["afterCancel"] == "cancelled"
    assert JobStore().get(stopped["taskId"]).status == "cancelled"

    handed = _node(
        "handoff", {**call, "arguments": {**base, "max_steps": 4}}, lmfast_home, tmp_path
    )
    reference = handed["reference"]
    assert reference["generation"] == "v2" and reference["taskId"] == handed["taskId"]
    resumed = _node("resume", reference, lmfast_home, tmp_path)
    assert resumed["status"] == "completed" and resumed["taskId"] == handed["taskId"]
    assert resumed["result"]["structuredContent"]["status"] == "succeeded"


async def test_server_advertises_the_extension() -> None:
    server = build_server()
    assert TASKS_EXTENSION in server._lowlevel_server.extensions


# -- resource updates -----------------------------------------------------------------------


async def test_subscribers_hear_a_job_move_on_both_connection_kinds(lmfast_home: Path) -> None:
    import anyio
    from mcp_types import ServerNotification

    store = JobStore()
    job = store.create("fine_tune", {})
    uri = f"jobs://{job}"

    async with (
        Client(build_server(), mode=MODERN) as client,
        client.listen(resource_subscriptions=[uri, "artifacts://index"]) as events,
    ):
        store.update(job, status="running", step=1, total=4, message="step 1/4")
        with anyio.fail_after(10):
            first = await events.__anext__()
        assert getattr(first, "uri", None) == uri
        _artifact()
        with anyio.fail_after(10):
            second = await events.__anext__()
        assert getattr(second, "uri", None) == "artifacts://index"

    heard: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ServerNotification):
            params = getattr(message, "params", None)
            if getattr(message, "method", "") == "notifications/resources/updated":
                heard.append(str(params.uri))

    async with Client(build_server(), mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.resources.subscribe
        await client.subscribe_resource(uri)
        store.update(job, step=2, message="step 2/4")
        with anyio.fail_after(10):
            while uri not in heard:
                await anyio.sleep(0.1)
        await client.unsubscribe_resource(uri)
        count = len(heard)
        store.update(job, step=3, message="step 3/4")
        await anyio.sleep(2.5)
        assert len(heard) == count  # unsubscribed: nothing more
