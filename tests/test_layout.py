"""The installed layout: lmfast.agents etc. import; bare agents / guardrails do not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A clean interpreter in a folder other than the repo, so the repo root is not on sys.path.
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_subpackages_import_under_lmfast(tmp_path: Path) -> None:
    code = (
        "import lmfast.agents, lmfast.guardrails, lmfast.mcp_server, lmfast_native;"
        "print(lmfast.agents.__file__); print(lmfast.guardrails.__file__);"
        "print(lmfast.mcp_server.__file__)"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    files = [Path(line) for line in out.stdout.split()]
    assert files == [
        REPO / "agents" / "__init__.py",
        REPO / "guardrails" / "__init__.py",
        REPO / "mcp_server" / "__init__.py",
    ]


def test_bare_agents_and_guardrails_do_not_import(tmp_path: Path) -> None:
    for name in ("agents", "guardrails", "mcp_server"):
        out = _run(f"import {name}", tmp_path)
        assert out.returncode != 0, f"import {name} unexpectedly worked"
        assert "ModuleNotFoundError" in out.stderr


def test_import_lmfast_is_light(tmp_path: Path) -> None:
    code = "import sys, lmfast, lmfast.config; print('torch' in sys.modules)"
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
