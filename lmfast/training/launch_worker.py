"""One launched training process (started by `accelerate launch` from launch.py): run
fine_tune on the prepared request; rank 0 relays progress and writes the result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from lmfast.artifacts import write_atomic
from lmfast.progress import ProgressFn
from lmfast.training.launch import world


def _progress_writer(folder: Path) -> ProgressFn:
    out = open(folder / "progress.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (process-long)

    def write(step: int, total: int | None, message: str, **metrics: Any) -> None:
        line = {"step": step, "total": total, "message": message, "metrics": metrics}
        out.write(json.dumps(line) + "\n")
        out.flush()

    return write


def main() -> None:
    """Each launched process: run fine_tune; rank 0 reports progress and writes the result."""
    from lmfast.progress import no_progress
    from lmfast.training.finetune import FineTuneRequest, fine_tune

    request = FineTuneRequest.model_validate_json(Path(sys.argv[1]).read_text())
    folder = Path(os.environ.get("LMFAST_LAUNCH_DIR", Path(sys.argv[1]).parent))
    rank = world()[0]
    result = fine_tune(request, _progress_writer(folder) if rank == 0 else no_progress)
    if result is not None:
        write_atomic(folder / "result.json", result.model_dump_json(indent=2))


if __name__ == "__main__":
    main()
