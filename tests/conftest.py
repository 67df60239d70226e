"""Every test gets its own LMFAST_HOME, and the Hub is treated as unreachable (as it is here)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def lmfast_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("lmfast_home")
    monkeypatch.setenv("LMFAST_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home
