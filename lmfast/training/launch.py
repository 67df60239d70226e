"""Several training processes through `accelerate launch` (torchrun underneath), data
parallel (DDP: NCCL on GPUs, gloo on CPUs), across machines with the usual number-of-machines
/ rank / main address / port settings.

The launching process (the job worker, or the Python caller) runs fine_tune's front half once:
plan, tokenizer, data preparation, run folder. It then starts the processes on the prepared
dataset artifact with the same run id, relays rank 0's progress, and returns rank 0's result.
Because the run folder is the one a single process would use, a run started on N processes
resumes from its checkpoints on one, and the other way round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, model_validator

from lmfast.artifacts import write_atomic
from lmfast.errors import LMFastError
from lmfast.progress import ProgressFn

Result = TypeVar("Result", bound=BaseModel)


class LaunchSettings(BaseModel):
    """How many processes train, and where (accelerate launch's own flags)."""

    num_processes: int = Field(
        1, ge=1, le=4096, description="Training processes in total, across all machines."
    )
    num_machines: int = Field(1, ge=1, le=1024, description="Machines taking part.")
    machine_rank: int = Field(0, ge=0, description="This machine's rank (0: the main one).")
    main_process_ip: str = Field(
        "127.0.0.1", min_length=1, description="Address of machine rank 0, reachable by all."
    )
    main_process_port: int = Field(29500, ge=1024, le=65535, description="Its port.")

    @model_validator(mode="after")
    def _consistent(self) -> LaunchSettings:
        if self.num_processes % self.num_machines:
            raise ValueError(
                f"num_processes={self.num_processes} is not a multiple of num_machines="
                f"{self.num_machines}: every machine runs the same number of processes"
            )
        if self.machine_rank >= self.num_machines:
            raise ValueError(
                f"machine_rank={self.machine_rank} must be below num_machines={self.num_machines}"
            )
        return self

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1 or self.num_machines > 1


def world() -> tuple[int, int, int]:
    """(global rank, processes on this machine, processes in total) of this process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
    return int(os.environ.get("RANK", "0")), local, size


def launched() -> bool:
    """True inside a process that `launch` (or any torchrun) started."""
    return world()[2] > 1


def _command(settings: LaunchSettings, request_file: Path, cpu: bool) -> list[str]:
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        # The torchrun launcher; on CPU-only machines the processes use gloo (the recipe's
        # dtype is set by the Trainer, not by accelerate's flags).
        "--multi_gpu",
        "--num_processes", str(settings.num_processes),
        "--num_machines", str(settings.num_machines),
        "--machine_rank", str(settings.machine_rank),
        "--main_process_ip", settings.main_process_ip,
        "--main_process_port", str(settings.main_process_port),
        "--mixed_precision", "no",
        "--dynamo_backend", "no",
        "-m", "lmfast.training.launch_worker", str(request_file),
    ]  # fmt: skip
    if cpu:
        cmd.insert(cmd.index("--mixed_precision"), "--num_cpu_threads_per_process")
        cmd.insert(cmd.index("--mixed_precision"), "1")
    return cmd


def launch(
    request: Any, result_type: type[Result], run_dir: Path, dataset_artifact: str, device: str,
    progress: ProgressFn,
) -> Result:  # fmt: skip
    """Start the processes on `request` (a FineTuneRequest), relay rank 0's progress, return
    rank 0's result."""
    folder = run_dir / "launch"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("progress.jsonl", "result.json"):
        (folder / stale).unlink(missing_ok=True)
    config = request.config.model_copy(deep=True)
    config.data.path = dataset_artifact  # prepared once, here; the processes only read it
    child = request.model_copy(update={"config": config, "run_id": run_dir.name, "fresh": False})
    write_atomic(folder / "request.json", child.model_dump_json(indent=2))
    settings = request.launch
    cmd = _command(settings, folder / "request.json", cpu=not device.startswith("cuda"))
    progress(
        0, None,
        f"launching {settings.num_processes} processes on {settings.num_machines} machine(s)"
        " (DDP) through accelerate",
    )  # fmt: skip
    log_path = folder / f"log-{settings.machine_rank}.txt"
    env = {**os.environ, "LMFAST_LAUNCH_DIR": str(folder), "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        seen = 0
        try:
            while True:
                done = proc.poll() is not None
                seen = _relay(folder / "progress.jsonl", seen, progress)
                if done:
                    break
                time.sleep(0.5)
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise LMFastError(
            f"training processes failed (exit code {proc.returncode}); log: {log_path}\n"
            + "\n".join(tail)
        )
    result_file = folder / "result.json"
    if not result_file.is_file():  # a machine of rank > 0 takes part but saves nothing
        raise LMFastError(
            f"this machine (rank {settings.machine_rank}) finished its part; the result is "
            "saved by machine rank 0"
        )
    return result_type.model_validate_json(result_file.read_text())


def _relay(path: Path, seen: int, progress: ProgressFn) -> int:
    if not path.is_file():
        return seen
    with open(path, encoding="utf-8") as f:
        f.seek(seen)
        for line in f:
            if not line.endswith("\n"):  # half-written: read again next time
                break
            event = json.loads(line)
            progress(event["step"], event["total"], event["message"], **event["metrics"])
            seen += len(line.encode("utf-8"))
    return seen
