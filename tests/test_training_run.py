"""The shape every training run shares (training/run.py): the run folder, fresh starts, the
recorded request, where training resumes, and the run's id from its recipe."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from lmfast.training.callbacks import COMPLETE
from lmfast.training.run import open_run, run_folder


class _Request(BaseModel):
    lr: float = 1e-3


def _checkpoint(folder: Path, step: int, complete: bool) -> Path:
    path = folder / "checkpoints" / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / COMPLETE).write_text(str(step))
    return path


def test_a_run_resumes_from_its_last_complete_checkpoint(lmfast_home: Path) -> None:
    folder = run_folder("align", {"config": {"a": 1}}, None)
    assert folder.parent == lmfast_home / "runs" and folder.name.startswith("align-")
    assert folder == run_folder("align", {"config": {"a": 1}}, None)  # same recipe, same run
    assert folder != run_folder("align", {"config": {"a": 2}}, None)
    assert run_folder("run", {}, "mine").name == "mine"

    run = open_run(folder, _Request(lr=0.5), fresh=False)
    assert json.loads((folder / "request.json").read_text()) == {"lr": 0.5}
    assert run.resume is None and run.resumed_from_step is None
    _checkpoint(folder, 10, complete=True)
    half = _checkpoint(folder, 20, complete=False)  # a crash while saving
    again = open_run(folder, _Request(), fresh=False)
    assert again.resume == folder / "checkpoints" / "checkpoint-10"
    assert again.resumed_from_step == 10
    assert not half.exists()  # half-written checkpoints are cleared
    assert again.files("/x/art")[-1] == folder / "request.json"


def test_fresh_starts_over_and_launched_processes_leave_the_folder_alone(
    lmfast_home: Path,
) -> None:
    folder = run_folder("run", {"k": 1}, None)
    open_run(folder, _Request(lr=0.1), fresh=False)
    _checkpoint(folder, 5, complete=True)
    inside = open_run(folder, _Request(lr=0.9), fresh=True, setup=False)
    assert inside.resume is not None  # setup=False: the launcher prepared the folder
    assert json.loads((folder / "request.json").read_text()) == {"lr": 0.1}
    fresh = open_run(folder, _Request(lr=0.9), fresh=True)
    assert fresh.resume is None and not (folder / "checkpoints").exists()
    assert json.loads((folder / "request.json").read_text()) == {"lr": 0.9}
