"""Every test gets its own LMFAST_HOME (sharing one guard classifier), and the Hub is treated
as unreachable (as it is here)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def guard_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One learned injection classifier for the whole run (built on first use, ~10 s),
    instead of one per test home."""
    return tmp_path_factory.mktemp("guard_classifier")


@pytest.fixture(autouse=True)
def lmfast_home(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    guard_classifier_dir: Path,
) -> Path:
    home = tmp_path_factory.mktemp("lmfast_home")
    monkeypatch.setenv("LMFAST_HOME", str(home))
    monkeypatch.setenv("LMFAST_GUARD_CLASSIFIER", str(guard_classifier_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests run only where CUDA works; elsewhere they skip and say why."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)
