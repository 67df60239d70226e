"""The progress callback every long capability accepts (jobs, CLI bars, MCP notifications)."""

from __future__ import annotations

from typing import Protocol


class ProgressFn(Protocol):
    def __call__(
        self, step: float, total: float | None = None, message: str = "", **metrics: float
    ) -> None: ...


def no_progress(
    step: float, total: float | None = None, message: str = "", **metrics: float
) -> None:
    """The default: report nothing."""


# Progress messages that start with one of these are kept for the whole job (JobInfo.notes)
# and printed by the CLI, rather than replaced by the next message.
NOTE_PREFIXES = ("plan: ", "warning: ")


def is_note(message: str) -> bool:
    return message.startswith(NOTE_PREFIXES)
