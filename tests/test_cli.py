"""The `lmfast` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from lmfast.cli.app import COMMANDS, app

runner = CliRunner()


def _registered(group: Any, prefix: str = "") -> set[str]:
    names: set[str] = set()
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            names |= _registered(cmd, f"{prefix}{name} ")
        else:
            names.add(f"{prefix}{name}")
    return names


def test_command_table_matches_the_app() -> None:
    assert _registered(get_command(app)) == set(COMMANDS)


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("doctor", "plan", "generate", "models"):
        assert name in result.output


def test_doctor_reports_environment() -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["native_core"] == "0.1.0"
    assert report["hardware"]["accelerator"] in ("cpu", "cuda", "mps")
    names = {p["name"]: p for p in report["packages"] + report["accelerators"]}
    assert names["llama-cpp-python"]["installed"]
    assert "bitsandbytes" in names and "vllm" in names
    table = runner.invoke(app, ["doctor"])
    assert "rust core" in table.output and "Packages" in table.output


def test_models_list_and_info() -> None:
    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.output)}
    assert rows["smollm2-135m-instruct"]["available"] is True
    info = runner.invoke(app, ["models", "info"])
    assert info.exit_code == 0, info.output
    assert "Q4_1" in info.output and "576" in info.output


def test_plan_for_a_t4() -> None:
    result = runner.invoke(app, ["plan", "--profile", "t4", "training.max_steps=200", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["quantization"] == "nf4" and plan["dtype"] == "float16"
    assert plan["estimated_training_time_minutes"] > 0
    table = runner.invoke(app, ["plan", "--profile", "cpu"])
    assert "training time (est.)" in table.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["plan", "training.lora.rank=0"], "training.lora.rank"),
        (["plan", "--profile", "tpu"], "--profile"),
        (["plan", "--profile", "cpu", "model.quantization=nf4"], "model.quantization"),
        (["models", "info", "nobody/nothing"], "nobody/nothing"),
        (["generate", "hi", "--temperature", "9"], "temperature"),
        (["jobs", "status", "job-nope"], "no job with id"),
        (["jobs", "result", "job-nope"], "no job with id"),
        (["serve", "--host", "0.0.0.0"], "api_key"),
        (["jobs", "list", "--status", "bogus"], "--status"),
        (["jobs", "status", "job-nope"], "lmfast jobs list"),
        (["generate", "hi", "--backend", "vllm"], "Backends that fit this model here: llamacpp"),
        (["chat", "--backend", "bogus"], "backend='bogus' is not one of"),
    ],
)
def test_errors_are_one_clear_message(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.output


@pytest.mark.slow
def test_generate_through_the_installed_command() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmfast",
            "generate",
            "What is the capital of France?",
            "--temperature",
            "0",
            "--max-tokens",
            "24",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_plan_refuses_negative_dataset_tokens() -> None:
    result = runner.invoke(app, ["plan", "--dataset-tokens", "-5"])
    assert result.exit_code == 2 and "dataset-tokens" in result.output + result.stderr


def test_doctor_has_a_bf16_row() -> None:
    table = runner.invoke(app, ["doctor"])
    assert "bf16" in table.output
    assert "bf16" in json.loads(runner.invoke(app, ["doctor", "--json"]).output)


def test_json_errors_are_json() -> None:
    result = runner.invoke(app, ["jobs", "list", "--status", "bogus", "--json"])
    assert result.exit_code == 2
    assert "--status" in json.loads(result.stdout)["error"]["message"]


def test_hub_message_without_offline_variable(monkeypatch: Any) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    result = runner.invoke(app, ["models", "info", "nobody/nothing"])
    assert result.exit_code == 2
    assert "HF_HUB_OFFLINE=''" not in result.stderr
    assert "only reads local files" in result.stderr


def test_hf_folder_with_llamacpp_backend_is_a_clear_error(tmp_path: Any) -> None:
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=32, vocab_size=64).save_pretrained(tmp_path)  # fmt: skip
    result = runner.invoke(app, ["generate", "hi", "-m", str(tmp_path), "--backend", "llamacpp"])
    assert result.exit_code == 2, result.output
    assert "needs a .gguf model" in result.stderr and "transformers" in result.stderr
    assert "Traceback" not in result.stderr


def test_job_ids_are_never_cut(lmfast_home: Any) -> None:
    from lmfast.jobs.store import JobStore

    store = JobStore()
    ids = [store.create("prep_dataset", {"x": i}) for i in range(2)]
    narrow = CliRunner(env={"COLUMNS": "60"})
    result = narrow.invoke(app, ["jobs", "list"], terminal_width=60)
    for job_id in ids:
        assert job_id in result.output


def test_serve_stops_when_the_model_fails_to_load(tmp_path: Any) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    from tests.server_utils import free_port

    out = subprocess.run(
        [sys.executable, "-m", "lmfast", "serve", str(bad), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "failed to load" in out.stderr and "Traceback" not in out.stderr


def test_prep_command_runs_a_job_and_prints_the_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d.jsonl"
    rows = [
        json.dumps({"text": f"Document number {i} talks about the weather today."})
        for i in range(5)
    ]
    data.write_text("\n".join([*rows, rows[0], "{oops"]) + "\n")
    result = runner.invoke(app, ["prep", str(data), "--filters", "minimal"])
    assert result.exit_code == 0, result.output
    assert "dropped: exact_duplicate" in result.output and "malformed_json" in result.output
    assert "saved dataset-" in result.output
    bad = runner.invoke(app, ["prep", str(data), "--set", "dedup.bands=99"])
    assert bad.exit_code == 2 and "bands x rows" in bad.stderr


def test_serve_refuses_an_unknown_guard_policy_before_it_starts(lmfast_home: Path) -> None:
    out = CliRunner().invoke(app, ["serve", "--guard", "strictt", "--port", "1"])
    assert out.exit_code != 0
    assert "strictt" in out.output and "guard" in out.output.lower()
