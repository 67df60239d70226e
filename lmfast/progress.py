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
