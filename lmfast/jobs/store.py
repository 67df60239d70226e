"""Job state in SQLite under LMFAST_HOME: shared by the CLI, the MCP server and workers.

WAL mode lets a worker write progress while servers read it; every write is one short
transaction, so a crash never leaves a half-updated job.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from lmfast.errors import LMFastError
from lmfast.home import lmfast_home

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL: tuple[str, ...] = ("succeeded", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT,
    error TEXT,
    step REAL NOT NULL DEFAULT 0,
    total REAL,
    message TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}',
    notes TEXT NOT NULL DEFAULT '[]',
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs(updated_at);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    t REAL NOT NULL,
    step REAL NOT NULL,
    total REAL,
    message TEXT NOT NULL,
    metrics TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);
"""


class JobNotFoundError(LMFastError, LookupError):
    """No job with that id."""


class JobInfo(BaseModel):
    """A job's state as clients see it."""

    id: str = Field(description="Job id.")
    kind: str = Field(description="Capability the job runs, e.g. convert_model.")
    status: JobStatus = Field(description="queued, running, succeeded, failed or cancelled.")
    step: float = Field(description="Progress so far.")
    total: float | None = Field(description="Progress at completion, when known.")
    message: str = Field(description="Latest progress message.")
    metrics: dict[str, float] = Field(description="Latest metrics (loss, tokens/s, ...).")
    notes: list[str] = Field(
        default_factory=list,
        description="Messages kept for the whole job: the plan's derived settings ('plan: ') "
        "and warnings ('warning: '), in order.",
    )
    error: str | None = Field(description="Why it failed, when it did.")
    created_at: float = Field(description="Unix time of submission.")
    started_at: float | None = Field(description="Unix time the worker started.")
    finished_at: float | None = Field(description="Unix time it ended.")
    updated_at: float = Field(description="Unix time of the latest change (progress included).")
    pid: int | None = Field(None, description="Worker process id while running.")

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


class JobEvent(BaseModel):
    """One progress report kept for the job's history (loss curves, sample answers)."""

    seq: int = Field(description="Order across all jobs; ask for events after one.")
    t: float = Field(description="Unix time it was reported.")
    step: float
    total: float | None
    message: str
    metrics: dict[str, float]


class JobStore:
    """CRUD over the jobs table. Cheap to construct; each call opens its own connection."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home or lmfast_home()
        self.path = self.home / "jobs.db"
        self.logs = self.home / "jobs"
        self.logs.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
            columns = {r["name"] for r in db.execute("PRAGMA table_info(jobs)")}
            if "notes" not in columns:  # a jobs.db from before notes were kept
                db.execute("ALTER TABLE jobs ADD COLUMN notes TEXT NOT NULL DEFAULT '[]'")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    def create(self, kind: str, request: dict[str, Any]) -> str:
        job_id = f"job-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, status, request, created_at, updated_at) "
                "VALUES (?, ?, 'queued', ?, ?, ?)",
                (job_id, kind, json.dumps(request), now, now),
            )
        return job_id

    def _row(self, job_id: str) -> sqlite3.Row:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(
                f"no job with id {job_id!r}; `lmfast jobs list` (MCP: list_jobs) shows the "
                "known ones"
            )
        return row

    def get(self, job_id: str) -> JobInfo:
        return self._info(self._reconcile(self._row(job_id)))

    def request(self, job_id: str) -> tuple[str, dict[str, Any]]:
        row = self._row(job_id)
        return row["kind"], json.loads(row["request"])

    def result(self, job_id: str) -> dict[str, Any] | None:
        row = self._row(job_id)
        return json.loads(row["result"]) if row["result"] else None

    def list(self, status: str | None = None, limit: int = 50) -> list[JobInfo]:
        query, args = "SELECT * FROM jobs", []
        if status:
            query += " WHERE status = ?"
            args.append(status)
        query += " ORDER BY created_at DESC LIMIT ?"
        args.append(limit)
        with self._connect() as db:
            rows = db.execute(query, args).fetchall()
        return [self._info(self._reconcile(r)) for r in rows]

    def changed_since(self, since: float) -> tuple[list[str], float]:
        """Jobs written after `since` (Unix time), and the time to ask from next."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, updated_at FROM jobs WHERE updated_at > ? ORDER BY updated_at",
                (since,),
            ).fetchall()
        return [r["id"] for r in rows], max([since, *(r["updated_at"] for r in rows)])

    def update(self, job_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        for key in ("metrics", "result"):
            if key in fields and not isinstance(fields[key], str) and fields[key] is not None:
                fields[key] = json.dumps(fields[key])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {cols} WHERE id = ?", [*fields.values(), job_id])

    def add_note(self, job_id: str, note: str) -> None:
        """Keep `note` with the job (the latest message is overwritten by the next one)."""
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET notes = json_insert(notes, '$[#]', ?), updated_at = ? "
                "WHERE id = ?",
                (note[:2000], time.time(), job_id),
            )

    def add_event(
        self, job_id: str, step: float, total: float | None, message: str, metrics: dict[str, float]
    ) -> None:
        """Keep a progress report: the latest one in the job row is overwritten by the next."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (job_id, t, step, total, message, metrics) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, time.time(), step, total, message[:2000], json.dumps(metrics)),
            )

    def events(self, job_id: str, after: int = 0, limit: int = 10_000) -> list[JobEvent]:
        """The job's kept progress reports after sequence number `after`, oldest first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after, limit),
            ).fetchall()
        return [
            JobEvent(
                seq=r["seq"],
                t=r["t"],
                step=r["step"],
                total=r["total"],
                message=r["message"],
                metrics=json.loads(r["metrics"]),
            )
            for r in rows
        ]

    def finish(
        self, job_id: str, status: JobStatus, *, result: Any = None, error: str | None = None
    ) -> None:
        """Move to a terminal state once: a job already finished keeps its first ending."""
        now = time.time()
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET status = ?, result = ?, error = ?, finished_at = ?, "
                "updated_at = ?, pid = NULL WHERE id = ? AND status NOT IN "
                "('succeeded', 'failed', 'cancelled')",
                (
                    status,
                    json.dumps(result) if result is not None else None,
                    error,
                    now,
                    now,
                    job_id,
                ),
            )

    def _reconcile(self, row: sqlite3.Row) -> sqlite3.Row:
        """A running job whose worker is gone failed (or was cancelled), whatever it wrote."""
        if row["status"] != "running" or not row["pid"] or _alive(row["pid"]):
            return row
        if row["cancel_requested"]:
            self.finish(row["id"], "cancelled", error="cancelled")
        else:
            log = self.logs / f"{row['id']}.log"
            self.finish(
                row["id"], "failed", error=f"the worker process exited unexpectedly; see {log}"
            )
        return self._row(row["id"])

    @staticmethod
    def _info(row: sqlite3.Row) -> JobInfo:
        return JobInfo(
            id=row["id"],
            kind=row["kind"],
            status=row["status"],
            step=row["step"],
            total=row["total"],
            message=row["message"],
            metrics=json.loads(row["metrics"]),
            notes=json.loads(row["notes"]),
            error=row["error"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"],
            pid=row["pid"],
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
