"""One request, whichever face it comes through: the CLI command, the MCP tool and the Python
request model given the same minimal input must build the same request (the defaults live in
the request model and the recipe, not in a face), and the MCP tools' bounds are the request
models' bounds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lmfast.mcp_server import build_server
from mcp import Client
from pydantic import BaseModel
from typer.testing import CliRunner

from lmfast.cli.app import app
from lmfast.config import load_config

pytestmark = pytest.mark.anyio
runner = CliRunner()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, BaseModel]]:
    """Requests the faces hand to the job system, instead of running them."""
    import lmfast.mcp_server.lifecycle_tools as lifecycle
    import lmfast.mcp_server.server as server
    from lmfast.mcp_server.server import JobOutcome

    import lmfast.cli.jobs

    seen: list[tuple[str, BaseModel]] = []

    def cli_run(kind: str, request: BaseModel, *args: Any, **kwargs: Any) -> None:
        seen.append((kind, request))

    async def mcp_start(kind: str, request: BaseModel, *args: Any) -> JobOutcome:
        seen.append((kind, request))
        return JobOutcome(job_id="captured", status="queued")

    monkeypatch.setattr(lmfast.cli.jobs, "run_job_for_people", cli_run)
    monkeypatch.setattr(server, "_start_job", mcp_start)
    monkeypatch.setattr(lifecycle, "_start_job", mcp_start)
    return seen


def _dump(request: BaseModel) -> dict[str, Any]:
    return json.loads(request.model_dump_json())


def _data(home: Path, rows: list[dict[str, str]]) -> str:
    path = home / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path.resolve())


def _recipe(data: str) -> Any:
    return load_config(None, [f"data.path={json.dumps(data)}"])


async def _mcp(tool: str, args: dict[str, Any]) -> None:
    async with Client(build_server()) as client:
        result = await client.call_tool(tool, args)
    assert not result.is_error, result.content


async def test_align_is_the_same_request_from_every_face(
    lmfast_home: Path, captured: list[tuple[str, BaseModel]]
) -> None:
    from lmfast.alignment.align import AlignRequest

    data = _data(lmfast_home, [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    out = runner.invoke(app, ["align", "-d", data])
    assert out.exit_code == 0, out.output
    await _mcp("align_orpo", {"data": data})
    python = AlignRequest(config=_recipe(data))
    (_, cli), (_, mcp) = captured
    # MCP used to train at 5e-5 with a 0.1 split while the CLI trained at the recipe's 2e-4.
    assert _dump(cli) == _dump(python) == _dump(mcp)


async def test_distill_is_the_same_request_from_every_face(
    lmfast_home: Path, captured: list[tuple[str, BaseModel]]
) -> None:
    from lmfast.distillation.distill import DistillRequest

    data = _data(lmfast_home, [{"text": "hello world"}])
    assert runner.invoke(app, ["distill", "-d", data]).exit_code == 0
    await _mcp("distill", {"data": data})
    python = DistillRequest(config=_recipe(data))
    (_, cli), (_, mcp) = captured
    # Python used to train LoRA while the CLI and MCP trained all weights.
    assert not python.config.training.lora.enabled
    assert _dump(cli) == _dump(python) == _dump(mcp)


async def test_distill_keeps_a_recipes_lora(
    lmfast_home: Path, tmp_path: Path, captured: list[tuple[str, BaseModel]]
) -> None:
    data = _data(lmfast_home, [{"text": "hello world"}])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("training:\n  lora:\n    enabled: true\n    rank: 4\n")
    assert runner.invoke(app, ["distill", "-c", str(recipe), "-d", data]).exit_code == 0
    assert (
        runner.invoke(app, ["distill", "-c", str(recipe), "-d", data, "--no-lora"]).exit_code == 0
    )
    (_, kept), (_, dropped) = captured
    lora_on = kept.config.training.lora  # type: ignore[attr-defined]
    assert lora_on.enabled and lora_on.rank == 4  # the recipe's choice, not silently replaced
    assert not dropped.config.training.lora.enabled  # type: ignore[attr-defined]


async def test_fine_tune_is_the_same_request_from_every_face(
    lmfast_home: Path, captured: list[tuple[str, BaseModel]]
) -> None:
    from lmfast.training.finetune import FineTuneRequest

    data = _data(lmfast_home, [{"prompt": "p", "completion": "c"}])
    out = runner.invoke(app, ["train", "-d", data])
    assert out.exit_code == 0, out.output
    await _mcp("fine_tune", {"data": data})
    python = FineTuneRequest(config=_recipe(data))
    (_, cli), (_, mcp) = captured
    assert _dump(cli) == _dump(python) == _dump(mcp)


async def test_quantize_is_the_same_request_from_every_face(
    captured: list[tuple[str, BaseModel]],
) -> None:
    from lmfast.export.quantize import QuantizeRequest

    model = "smollm2-135m-instruct"
    assert runner.invoke(app, ["quantize", model]).exit_code == 0
    await _mcp("quantize", {"model": model})
    (_, cli), (_, mcp) = captured
    assert _dump(cli) == _dump(QuantizeRequest(model=model)) == _dump(mcp)


# MCP arguments that carry a request field in another form (documented, not drift).
REPRESENTED = {("prep_dataset", "filters"): "a preset name; FilterSettings.preset makes the field"}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "maxLength", "minLength")


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """Bounds of a property, looking through `anyOf` (optional fields)."""
    found = {k: schema[k] for k in _BOUNDS if k in schema}
    for option in schema.get("anyOf", []):
        found.update({k: option[k] for k in _BOUNDS if k in option})
    return found


async def test_mcp_tools_share_their_request_models_defaults_and_bounds() -> None:
    from lmfast.capabilities import CAPABILITIES
    from lmfast.jobs.kinds import resolve_kind

    async with Client(build_server()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    checked, drifts = 0, []
    for capability, (_, tool_name) in CAPABILITIES.items():
        try:
            request_model, _ = resolve_kind(capability)
        except Exception:
            continue  # not a job capability
        props = request_model.model_json_schema()["properties"]
        for name, schema in tools[tool_name].input_schema["properties"].items():
            if name not in props or (tool_name, name) in REPRESENTED:
                continue
            want = props[name]
            where = f"{tool_name}.{name}"
            if _bounds(schema) != _bounds(want):
                drifts.append(f"{where} bounds {_bounds(schema)} != {_bounds(want)}")
            if "default" in want and "default" in schema and schema["default"] != want["default"]:
                drifts.append(f"{where} default {schema['default']!r} != {want['default']!r}")
            checked += 1
    assert not drifts, drifts
    assert checked >= 20
