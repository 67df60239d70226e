"""Long work as jobs: a SQLite store under LMFAST_HOME, detached worker processes, progress,
cancel, and results recorded for any client (CLI, MCP, Python) to read."""

from lmfast.jobs.runner import cancel, submit, wait
from lmfast.jobs.store import JobEvent, JobInfo, JobNotFoundError, JobStore

__all__ = ["JobEvent", "JobInfo", "JobNotFoundError", "JobStore", "cancel", "submit", "wait"]
