"""Experiment tracking: MLflow with a local SQLite store by default, W&B or TensorBoard when
configured.

transformers' own callbacks log the losses, learning rate, gradient norm and the training
arguments; LMFast opens the MLflow run itself so it can tag it with what makes a run
reproducible (recipe hash, dataset version, code version, hardware, backend), resume the
same MLflow run when the LMFast run resumes, and attach the final metrics and the loss
curve. `mlflow ui --backend-store-uri sqlite:///$LMFAST_HOME/mlflow.db` shows the runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfast.home import lmfast_home

EXPERIMENT = "lmfast"


def report_to(choice: str) -> list[str]:
    """transformers' `report_to` for the recipe's `training.tracker`."""
    if choice == "none":
        return []
    if choice != "auto":
        if choice == "mlflow":
            from lmfast.extras import require

            require("mlflow", "training.tracker='mlflow'")
        return [choice]
    return ["mlflow"] if importlib.util.find_spec("mlflow") is not None else []


def code_version() -> str:
    """LMFast's version, plus the git commit when running from a checkout."""
    from lmfast import __version__

    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / ".git").exists():  # installed: not some enclosing repository's commit
        return __version__
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=checkout,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if out.returncode == 0 and out.stdout.strip():
            return f"{__version__}+{out.stdout.strip()}"
    return __version__


@dataclass
class TrackedRun:
    """The open tracker run (MLflow) or nothing (other trackers log through transformers)."""

    report_to: list[str]
    run_id: str | None = None
    tracking_uri: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def finish(self, metrics: dict[str, float], files: list[Path]) -> None:
        if self.run_id is None:
            return
        import mlflow

        mlflow.log_metrics({f"final_{k}": v for k, v in metrics.items()})
        for f in files:
            if f.is_file():
                mlflow.log_artifact(str(f))


def _mlflow_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{lmfast_home() / 'mlflow.db'}"


@contextlib.contextmanager
def tracked_run(choice: str, run_dir: Path, tags: dict[str, str]) -> Iterator[TrackedRun]:
    """Open (or resume) the tracker run for a training run; close it as finished or failed."""
    targets = report_to(choice)
    if "mlflow" not in targets:
        yield TrackedRun(targets)
        return
    import logging

    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)  # first use migrates the store
    uri = _mlflow_uri()
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        # Artifacts beside the store, not in whatever folder the process started in.
        mlflow.create_experiment(
            EXPERIMENT, artifact_location=(lmfast_home() / "mlartifacts").as_uri()
        )
    mlflow.set_experiment(EXPERIMENT)
    id_file = run_dir / "mlflow_run_id"
    previous = id_file.read_text().strip() if id_file.is_file() else None
    try:
        active = mlflow.start_run(run_id=previous, run_name=run_dir.name, tags=tags)
    except mlflow.exceptions.MlflowException:  # the store was reset: start a new run
        active = mlflow.start_run(run_name=run_dir.name, tags=tags)
    id_file.write_text(active.info.run_id)
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")}
    os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_EXPERIMENT_NAME"] = uri, EXPERIMENT
    status = "FAILED"
    try:
        yield TrackedRun(targets, active.info.run_id, uri, tags)
        status = "FINISHED"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        mlflow.end_run(status=status)


def run_tags(
    *,
    config_hash: str,
    dataset_artifact: str,
    dataset_version: str | None,
    hardware: str,
    backend: str,
    method: str,
    base_model: str,
    run_id: str,
    plan: Any,
) -> dict[str, str]:
    return {
        "lmfast.config_hash": config_hash,
        "lmfast.dataset_artifact": dataset_artifact,
        "lmfast.dataset_version": dataset_version or "",
        "lmfast.code_version": code_version(),
        "lmfast.hardware": hardware,
        "lmfast.backend": backend,
        "lmfast.method": method,
        "lmfast.base_model": base_model,
        "lmfast.run_id": run_id,
        "lmfast.dtype": plan.dtype,
        "lmfast.quantization": plan.quantization,
    }
