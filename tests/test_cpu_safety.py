"""llama.cpp on the users' CPUs: variant choice, the first-run check, crashes that never take
a face down. Crashes are injected (SIGSEGV in the check's child or the engine's child), the
way the Sapphire Rapids AMX bug kills a decode, so these run on any machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from lmfast.inference import cpu_backend, selfcheck
from lmfast.inference.cpu_backend import AMX_VARIANTS, CpuSettings
from lmfast.registry import resolve_model

REPO = Path(__file__).resolve().parents[1]
PROMPT = "What is the capital of France?"


def _lmfast(
    *args: str, env: dict[str, str] | None = None, cwd: str = "/"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lmfast", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_the_build_has_cpu_variants_and_never_picks_amx() -> None:
    found = {v.name: v.score for v in cpu_backend.variants()}
    # make install builds every variant of the platform, none native.
    if cpu_backend.cpu_identity().machine == "x86_64":
        assert {"x64", "haswell", "skylakex", "zen4", "sapphirerapids"} <= set(found), found
    assert any(score > 0 for score in found.values()), found
    ladder = cpu_backend.settings_ladder()
    assert ladder[0].extra_bufts and not ladder[-1].extra_bufts
    assert all(s.variant not in AMX_VARIANTS for s in ladder)
    assert found[ladder[0].variant] == max(s for n, s in found.items() if n not in AMX_VARIANTS)


def test_amx_flags_make_the_amx_class(monkeypatch: pytest.MonkeyPatch) -> None:
    ident = cpu_backend.CpuIdentity(
        machine="x86_64",
        model="Intel Xeon Platinum 8480+",
        flags=frozenset({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_int8"}),
    )
    assert ident.cpu_class == "x86-64 AVX-512 + AMX"
    assert cpu_backend.CpuIdentity("aarch64", "Neoverse-V1", frozenset()).cpu_class == "arm64"


def test_a_forced_variant_this_cpu_cannot_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    unrunnable = [v.name for v in cpu_backend.variants() if v.score == 0]
    monkeypatch.setenv(cpu_backend.FORCE_ENV, unrunnable[0] if unrunnable else "pentium")
    with pytest.raises(Exception, match="LMFAST_LLAMA_CPU") as e:
        cpu_backend.settings_ladder()
    assert "allowed here" in str(e.value)


@pytest.mark.slow
def test_check_steps_down_when_the_first_decode_crashes(monkeypatch: pytest.MonkeyPatch) -> None:
    path = resolve_model(None).path
    monkeypatch.setenv(selfcheck.CRASH_ENV, "repack")
    settings = selfcheck.checked_settings(path, announce=False)
    record = selfcheck.load_record()
    assert record is not None and record.fell_back
    assert [a.outcome for a in record.attempts] == ["signal SIGSEGV", "ok"]
    assert settings == record.settings and not settings.extra_bufts
    assert settings.variant == cpu_backend.settings_ladder()[0].variant
    # Recorded: the next caller loads the safe settings without another check.
    monkeypatch.setenv(selfcheck.CRASH_ENV, "all")
    assert selfcheck.checked_settings(path) == settings


@pytest.mark.slow
def test_nothing_decodes_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(selfcheck.CRASH_ENV, "all")
    with pytest.raises(Exception, match="could not decode on this CPU") as e:
        selfcheck.checked_settings(resolve_model(None).path)
    assert "signal SIGSEGV" in str(e.value) and "--backend transformers" in str(e.value)


@pytest.mark.slow
def test_generate_answers_and_doctor_reports_after_a_crashing_check(lmfast_home: Path) -> None:
    crash = {selfcheck.CRASH_ENV: "repack"}
    out = _lmfast("generate", PROMPT, "--temperature", "0", "--max-tokens", "24", env=crash)
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    assert "signal SIGSEGV" in out.stderr and "weight repack off" in out.stderr  # said once
    again = _lmfast("generate", PROMPT, "--temperature", "0", "--max-tokens", "24", env=crash)
    assert again.returncode == 0 and "Paris" in again.stdout
    assert "SIGSEGV" not in again.stderr
    doctor = _lmfast("doctor", "--json")
    report = json.loads(doctor.stdout)["llama_cpu"]
    assert report["check"] == "passed after falling back"
    assert report["settings"].endswith("weight repack off")
    assert any("signal SIGSEGV" in a for a in report["attempts"])
    assert "AVX" in report["features"] or "NEON" in report["features"]
    table = _lmfast("doctor")
    assert "llama.cpp on this CPU" in table.stdout and "passed after falling back" in table.stdout


@pytest.mark.slow
def test_engine_crash_ends_the_request_and_the_engine_restarts_safer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmfast.errors import EngineCrashedError, GenerationError
    from lmfast.inference import load_engine
    from lmfast.inference.engine_process import CRASH_FILE_ENV
    from lmfast.pipeline import Pipeline

    trigger = tmp_path / "crash-now"
    monkeypatch.setenv(CRASH_FILE_ENV, str(trigger))
    engine = load_engine(None)
    try:
        first = engine.cpu_settings
        assert first is not None and first.extra_bufts
        pipeline = Pipeline(engine, [])
        from lmfast.inference.base import ChatMessage, SamplingParams

        ask = [ChatMessage(role="user", content=PROMPT)]
        params = SamplingParams(temperature=0, max_tokens=16)
        trigger.touch()
        with pytest.raises(EngineCrashedError, match="signal SIGSEGV"):
            pipeline.chat(ask, params)
        assert isinstance(EngineCrashedError("x"), GenerationError)
        # The next request starts a new child with the next rung of the ladder.
        assert "Paris" in (pipeline.chat(ask, params).text or "")
        assert engine.restarts == 1
        assert engine.cpu_settings == CpuSettings(variant=first.variant, extra_bufts=False)
        assert engine.stats()["restarts"] == 1
    finally:
        engine.close()
    record = selfcheck.load_record()
    assert record is not None and record.attempts[-1].outcome == "signal SIGSEGV"


@pytest.mark.slow
def test_chat_survives_an_engine_crash(tmp_path: Path) -> None:
    trigger = tmp_path / "crash-now"
    trigger.touch()
    proc = subprocess.run(
        [sys.executable, "-m", "lmfast", "chat", "--temperature", "0", "--max-tokens", "24"],
        input=f"{PROMPT}\n{PROMPT}\n",
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "LMFAST_ENGINE_CRASH_FILE": str(trigger)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "died (signal SIGSEGV)" in proc.stderr and "send it again" in proc.stderr
    assert "Paris" in proc.stdout  # the second message, on the restarted engine


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.slow
@pytest.mark.anyio
async def test_mcp_generate_whose_engine_dies_is_an_error_and_the_server_stays_up(
    lmfast_home: Path, tmp_path: Path
) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    trigger = tmp_path / "crash-now"
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lmfast", "mcp"],
        env={
            **os.environ,
            "LMFAST_HOME": str(lmfast_home),
            "LMFAST_ENGINE_CRASH_FILE": str(trigger),
        },
        cwd="/",
    )
    args: dict[str, Any] = {"prompt": PROMPT, "temperature": 0, "max_tokens": 24}
    async with Client(server) as client:
        ok = await client.call_tool("generate", args)
        assert not ok.is_error and "Paris" in ok.structured_content["text"]
        trigger.touch()
        dead = await client.call_tool("generate", args)
        assert dead.is_error
        text = " ".join(getattr(c, "text", "") for c in dead.content)
        assert "signal SIGSEGV" in text and "starts it again" in text
        again = await client.call_tool("generate", args)
        assert not again.is_error and "Paris" in again.structured_content["text"]


@pytest.mark.slow
def test_server_answers_crashes_and_stops_when_no_safer_settings_are_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from lmfast.config import ServeConfig
    from lmfast.inference import load_engine
    from lmfast.inference.engine_process import CRASH_FILE_ENV
    from lmfast.serving.app import create_app

    trigger = tmp_path / "crash-now"
    monkeypatch.setenv(CRASH_FILE_ENV, str(trigger))
    stopped: list[str] = []
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0,
        "max_tokens": 16,
    }
    app = create_app(
        ServeConfig(), model_id="m", load=lambda: load_engine(None), on_load_error=stopped.append
    )
    with TestClient(app) as client:
        for _ in range(600):
            if client.get("/health").status_code == 200:
                break
            threading.Event().wait(0.1)
        rungs = len(cpu_backend.settings_ladder())
        for _ in range(rungs - 1):  # each crash moves the engine one rung down the ladder
            trigger.touch()
            r = client.post("/v1/chat/completions", json=body)
            assert r.status_code == 500, r.json()
            assert "signal SIGSEGV" in r.json()["error"]["message"]
            assert not stopped
        trigger.touch()  # a crash on the last rung leaves nothing to restart with
        last = client.post("/v1/chat/completions", json=body)
        assert last.status_code == 503 and last.json()["error"]["code"] == "engine_crashed"
        assert "no safer llama.cpp settings" in last.json()["error"]["message"]
        assert stopped and "no safer llama.cpp settings" in stopped[0]  # `lmfast serve` exits
        after = client.post("/v1/chat/completions", json=body)
        assert after.status_code == 503 and after.json()["error"]["code"] == "engine_crashed"
