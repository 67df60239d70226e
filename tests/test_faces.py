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
    import lmfast.mcp_server.jobs as mcp_jobs
    from lmfast.mcp_server.jobs import JobOutcome

    import lmfast.cli.jobs

    seen: list[tuple[str, BaseModel]] = []

    def cli_run(kind: str, request: BaseModel, *args: Any, **kwargs: Any) -> None:
        seen.append((kind, request))

    async def mcp_start(kind: str, request: BaseModel, *args: Any) -> JobOutcome:
        seen.append((kind, request))
        return JobOutcome(job_id="captured", status="queued")

    monkeypatch.setattr(lmfast.cli.jobs, "run_job_for_people", cli_run)
    monkeypatch.setattr(mcp_jobs, "start_job", mcp_start)
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
            if "default" in schema and name in request_model.model_json_schema().get(
                "required", []
            ):
                drifts.append(f"{where} defaults to {schema['default']!r}; the request has none")
            checked += 1
    assert not drifts, drifts
    assert checked >= 20


# Request fields a face deliberately does not take, and why. Every other field must be
# reachable from both faces, as its own argument or through the face's generic setter
# (`lmfast prep --set`, MCP prep_dataset `settings`; recipes: overrides on both).
NOT_OFFERED: dict[tuple[str, str, str], str] = {
    ("cli", "fine_tune", "run_id"): "set by `lmfast train --resume RUN`",
    ("mcp", "fine_tune", "run_id"): "runs resume by name; a run id is internal",
    ("mcp", "fine_tune", "fresh"): "agents start new runs by name",
    ("cli", "fine_tune", "profile"): "`lmfast train` profiles through LMFAST_PROFILE",
    ("mcp", "fine_tune", "profile"): "a profiler trace is a local debugging aid",
    ("mcp", "fine_tune", "launch"): "multi-process launch is for a person at the machine",
    ("cli", "distill", "run_id"): "internal: the job system names runs",
    ("mcp", "distill", "run_id"): "internal: the job system names runs",
    ("mcp", "distill", "fresh"): "agents start new runs by name",
    ("cli", "align_orpo", "run_id"): "internal: the job system names runs",
    ("mcp", "align_orpo", "run_id"): "internal: the job system names runs",
    ("mcp", "align_orpo", "fresh"): "agents start new runs by name",
    ("cli", "specialize_agent", "run_id"): "internal: the job system names runs",
    ("mcp", "specialize_agent", "run_id"): "internal: the job system names runs",
    ("mcp", "specialize_agent", "fresh"): "agents start new runs by name",
    ("mcp", "specialize_agent", "mcp"): "MCP servers are commands to run: not on a client's word",
}
# CLI parameters named differently from their request field.
CLI_NAMES = {
    ("fine_tune", "num_processes"): "launch",
    ("tune", "objective"): "objectives",
    ("distill", "mlp_ratio"): "student_mlp_ratio",
    ("quantize", "type_"): "type",
    ("quantize", "no_measure"): "measure",
    ("export", "format_"): "format",
    ("convert_model", "name"): "model",
    ("convert_model", "label"): "name",
    ("train_tokenizer", "special_token"): "special_tokens",
    ("specialize_agent", "held_out"): "held_out_tasks",
    ("specialize_agent", "listing"): "tool_listing",
}
GENERIC_SETTERS = {("cli", "prep_dataset"): "setting", ("mcp", "prep_dataset"): "settings"}


def _cli_command(path: str) -> Any:
    import typer

    command: Any = typer.main.get_command(app)
    for part in path.split():
        command = command.commands[part]
    return command


async def test_every_request_field_is_reachable_from_every_face_or_excused() -> None:
    from lmfast.capabilities import CAPABILITIES
    from lmfast.jobs.kinds import resolve_kind

    async with Client(build_server()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    missing = []
    for capability, (cli_path, tool_name) in CAPABILITIES.items():
        try:
            request_model, _ = resolve_kind(capability)
        except Exception:
            continue
        faces = {
            "cli": {
                CLI_NAMES.get((capability, p.name or ""), p.name)
                for p in _cli_command(cli_path).params
            },
            "mcp": set(tools[tool_name].input_schema["properties"]),
        }
        for face, names in faces.items():
            if (face, capability) in GENERIC_SETTERS:
                assert GENERIC_SETTERS[face, capability] in names
                continue
            for field in request_model.model_fields:
                if field == "config" or field in names or (face, capability, field) in NOT_OFFERED:
                    continue
                missing.append(f"{face} {capability}: {field}")
    assert not missing, missing


async def test_cli_defaults_are_the_request_models_or_unset() -> None:
    """A CLI option named after a request field defaults to None (the request's default
    applies) or to exactly the request's default."""
    from lmfast.capabilities import CAPABILITIES
    from lmfast.jobs.kinds import resolve_kind

    drifts, checked = [], 0
    for capability, (cli_path, _) in CAPABILITIES.items():
        try:
            request_model, _ = resolve_kind(capability)
        except Exception:
            continue
        fields = request_model.model_fields
        for param in _cli_command(cli_path).params:
            field = fields.get(CLI_NAMES.get((capability, param.name or ""), param.name or ""))
            if param.name in ("no_measure", "num_processes"):
                continue  # a negated flag, and one part of a composite (LaunchSettings)
            if field is None or param.default is None or ("cli", capability) in GENERIC_SETTERS:
                continue
            want = field.get_default(call_default_factory=True)
            got = list(param.default) if isinstance(param.default, tuple) else param.default
            if got != want and not (got == [] and want is None):
                drifts.append(f"{cli_path} --{param.name}: {got!r} != {want!r}")
            checked += 1
    assert not drifts, drifts
    assert checked >= 15


async def test_mcp_prep_settings_reach_the_request_but_never_paths_or_arguments(
    lmfast_home: Path, captured: list[tuple[str, BaseModel]]
) -> None:
    data = _data(lmfast_home, [{"text": "hello world"}])
    settings: dict[str, Any] = {"pack": False, "scrub": {"emails": True}}
    await _mcp("prep_dataset", {"inputs": [data], "settings": settings})
    ((_, request),) = captured
    assert request.pack is False and request.scrub.emails  # type: ignore[attr-defined]
    async with Client(build_server()) as client:
        for settings in ({"inputs": ["/etc/passwd"]}, {"seq_len": 16}, {"bogus": 1}):
            result = await client.call_tool(
                "prep_dataset", {"inputs": [data], "settings": settings}
            )
            assert result.is_error, settings
            assert next(iter(settings)) in result.content[0].text  # type: ignore[union-attr]
