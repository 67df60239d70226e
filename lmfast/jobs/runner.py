"""Start, follow and cancel jobs. Each job runs in its own detached worker process, so it
outlives the server or client that started it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from lmfast.jobs.kinds import KINDS, resolve_kind
from lmfast.jobs.store import JobInfo, JobStore

_children: list[subprocess.Popen[bytes]] = []


def _reap() -> None:
    """Collect exited workers we started (they would linger as zombies otherwise)."""
    _children[:] = [p for p in _children if p.poll() is None]


def submit(kind: str, request: BaseModel | dict[str, Any], store: JobStore | None = None) -> str:
    """Validate the request, record the job and start its worker. Returns the job id."""
    store = store or JobStore()
    model, _ = resolve_kind(kind)
    req = model.model_validate(request if isinstance(request, dict) else request.model_dump())
    job_id = store.create(kind, req.model_dump(mode="json"))
    _reap()
    with open(store.logs / f"{job_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmfast.jobs.worker", job_id],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: survives our exit, killable whole
            env={**os.environ, "LMFAST_HOME": str(store.home)},
        )
    _children.append(proc)
    return job_id


def cancel(job_id: str, store: JobStore | None = None, grace_s: float = 10.0) -> JobInfo:
    """Stop a job: SIGTERM its worker (which cleans up), SIGKILL after `grace_s`."""
    store = store or JobStore()
    info = store.get(job_id)
    if info.done:
        return info
    store.update(job_id, cancel_requested=1)
    if info.status == "queued" and info.pid is None:
        store.finish(job_id, "cancelled", error="cancelled before it started")
    pid = store.get(job_id).pid or info.pid
    if pid:
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not store.get(job_id).done:
            _reap()
            time.sleep(0.05)
        if not store.get(job_id).done:
            _signal(pid, signal.SIGKILL)
            store.finish(job_id, "cancelled", error="cancelled (worker killed)")
    _reap()
    return store.get(job_id)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def wait(
    job_id: str,
    store: JobStore | None = None,
    on_progress: Callable[[JobInfo], None] | None = None,
    poll_s: float = 0.2,
    timeout_s: float | None = None,
) -> JobInfo:
    """Block until the job ends, calling `on_progress` whenever its progress changes."""
    store = store or JobStore()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last: tuple[float, str] | None = None
    while True:
        _reap()
        info = store.get(job_id)
        if on_progress and (info.step, info.message) != last:
            last = (info.step, info.message)
            on_progress(info)
        if info.done or (deadline is not None and time.monotonic() > deadline):
            return info
        time.sleep(poll_s)


def kinds() -> list[str]:
    return list(KINDS)
