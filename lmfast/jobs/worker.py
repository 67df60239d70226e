"""`python -m lmfast.jobs.worker JOB_ID`: run one job to its end and record the outcome."""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from typing import Any

from lmfast.errors import LMFastError
from lmfast.jobs.kinds import resolve_kind
from lmfast.jobs.store import JobStore
from lmfast.progress import is_note

# Progress messages kept in the job's event history even without metrics.
KEPT_MESSAGES = ("samples: ",)


class JobCancelled(BaseException):
    """Raised in the worker by SIGTERM; a BaseException so `except Exception` can't eat it."""


class _Reporter:
    """Progress into the store, at most every 0.25 s (and always the final step)."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store, self.job_id, self.last, self.last_message = store, job_id, 0.0, ""

    def __call__(
        self, step: float, total: float | None = None, message: str = "", **metrics: float
    ) -> None:
        if is_note(message):
            self.store.add_note(self.job_id, message)
        now = time.monotonic()
        final = total is not None and step >= total
        if now - self.last < 0.25 and message == self.last_message and not final:
            return
        self.last, self.last_message = now, message
        fields: dict[str, Any] = {"step": step, "message": message}
        if total is not None:
            fields["total"] = total
        if metrics:
            fields["metrics"] = metrics
        self.store.update(self.job_id, **fields)
        if metrics or message.startswith(KEPT_MESSAGES):  # the history a live page redraws
            self.store.add_event(self.job_id, step, total, message, dict(metrics))


def run(job_id: str) -> int:
    store = JobStore()
    info = store.get(job_id)
    if info.status != "queued":
        return 0  # cancelled before we started, or run already
    kind, raw = store.request(job_id)

    def on_term(signum: int, frame: Any) -> None:
        raise JobCancelled()

    signal.signal(signal.SIGTERM, on_term)
    store.update(job_id, status="running", pid=os.getpid(), started_at=time.time())
    try:
        model, fn = resolve_kind(kind)
        result = fn(model.model_validate(raw), progress=_Reporter(store, job_id))
        store.finish(job_id, "succeeded", result=result.model_dump(mode="json"))
    except JobCancelled:
        store.finish(job_id, "cancelled", error="cancelled")
    except (LMFastError, ValueError) as e:
        print(f"failed: {e}", file=sys.stderr, flush=True)  # the log says why, too
        store.finish(job_id, "failed", error=str(e))
    except Exception as e:
        traceback.print_exc()
        store.finish(job_id, "failed", error=f"{type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1]))
