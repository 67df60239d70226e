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


def test_public_names_stay_functions_after_their_modules_load(tmp_path: Path) -> None:
    # A public name equal to a submodule's (lmfast.generate was lmfast/generate.py) turned
    # into the module the moment that module was first imported.
    code = (
        "import importlib, pkgutil, types, lmfast\n"
        "names = [n for n in lmfast.__all__ if n != '__version__']\n"
        "first = {n: getattr(lmfast, n) for n in names}\n"
        "for m in ('lmfast.generation', 'lmfast.export', 'lmfast.training', 'lmfast.data'):\n"
        "    importlib.import_module(m)\n"
        "bad = [n for n in names if isinstance(getattr(lmfast, n), types.ModuleType)"
        " or getattr(lmfast, n) is not first[n]]\n"
        "print(bad)"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
