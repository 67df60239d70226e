"""Errors meant for people: each names what was wrong, the value, and what is allowed."""

from __future__ import annotations


class LMFastError(Exception):
    """Base class for every error LMFast raises on purpose."""


class ConfigError(LMFastError, ValueError):
    """A configuration value is invalid. `problems` holds (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{path}: {message}" for path, message in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


class ModelNotFoundError(LMFastError, LookupError):
    """A model reference resolves to nothing."""


class HubUnavailableError(ModelNotFoundError):
    """The model must come from the Hugging Face Hub, which cannot be reached."""


class ArtifactError(LMFastError):
    """An artifact is missing or its manifest is unreadable."""


class PlanError(LMFastError, ValueError):
    """The configuration cannot run on this hardware (for example 4-bit on a CPU)."""


class BackendError(LMFastError, ValueError):
    """The chosen inference or training backend cannot run this model on this machine."""


class GenerationError(LMFastError):
    """The engine could not finish a generation; the message says why."""


class EngineCrashedError(GenerationError):
    """A native inference engine died (a signal such as SIGSEGV, or an exit) mid-request.
    `restartable`: the next request starts it again (False: no safer settings are left)."""

    def __init__(self, message: str, restartable: bool = True) -> None:
        super().__init__(message)
        self.restartable = restartable

    def __reduce__(self) -> tuple[type, tuple[str, bool]]:
        return (type(self), (str(self), self.restartable))
