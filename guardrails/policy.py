"""Guard policies: which checks run on input and output, their thresholds and actions.

A policy is a preset name (strict, balanced, permissive: YAML files beside this module, to
copy and edit) or the path of a YAML file of the same shape. `off` means no guards.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from lmfast.guardrails.pii import ACTIONS, DEFAULT_NER, Action
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from lmfast.errors import LMFastError

PRESETS_DIR = Path(__file__).with_name("policies")
PRESETS = ("strict", "balanced", "permissive")


class GuardConfigError(LMFastError, ValueError):
    """A policy cannot be loaded or used."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PIIPolicy(_Section):
    ner: str = Field(
        DEFAULT_NER,
        description="spaCy pipeline for person/location/... ('off': pattern recognizers only).",
    )
    min_score: float = Field(0.4, ge=0, le=1, description="Presidio confidence to act on.")
    salt: SecretStr | None = Field(None, description="Salt for the 'hash' action (16+ bytes).")
    salt_env: str | None = Field(None, description="Environment variable holding the salt.")
    input: dict[str, Action] = Field(
        default_factory=dict, description="Entity -> action, in user messages."
    )
    output: dict[str, Action] = Field(
        default_factory=dict, description="Entity -> action, in the model's replies."
    )
    tool: dict[str, Action] = Field(
        default_factory=dict,
        description="Entity -> action, in tool results, retrieved documents and files: the "
        "application's own data, so usually redacted rather than refused (empty: passed on).",
    )
    tool_call: dict[str, Action] = Field(
        default_factory=dict,
        description="Entity -> action, in the arguments of the model's tool calls (what the "
        "model passes on to a tool; empty: passed on).",
    )

    def salt_value(self) -> str | None:
        if self.salt is not None:
            return self.salt.get_secret_value()
        if self.salt_env:
            value = os.environ.get(self.salt_env)
            if not value:
                raise GuardConfigError(
                    f"pii.salt_env={self.salt_env!r}: that environment variable is not set"
                )
            return value
        return None


class InjectionPolicy(_Section):
    enabled: bool = Field(True, description="Score user and tool messages for injection.")
    learned: bool = Field(
        True,
        description="Add LMFast's learned classifier to the rules (trained once on first use "
        "under LMFAST_HOME, or by `lmfast guard train`; about 1 ms a message).",
    )
    block_at: float | None = Field(
        0.7, ge=0, le=1, description="Refuse inputs at or above this risk (null: only record)."
    )
    tool_action: Literal["withhold", "block"] = Field(
        "withhold",
        description="A tool result at or above block_at: 'withhold' replaces it with a notice "
        "and the conversation (an agent's loop) goes on; 'block' refuses the whole request.",
    )
    fuzzy_threshold: float = Field(88, ge=50, le=100, description="Phrase similarity, 0-100.")
    classifier: str | None = Field(
        None, description="Optional 'module:function' taking text, returning a probability."
    )

    @field_validator("classifier")
    @classmethod
    def _importable(cls, value: str | None) -> str | None:
        if value is not None:
            resolve_classifier(value)
        return value


class Policy(_Section):
    name: str = "custom"
    description: str = ""
    pii: PIIPolicy = Field(default_factory=PIIPolicy)
    injection: InjectionPolicy = Field(default_factory=InjectionPolicy)
    lookahead: int = Field(
        48, ge=8, le=4096, description="Characters of streamed output held back for redaction."
    )


def resolve_classifier(ref: str) -> Any:
    module, _, name = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"cannot import {ref!r} ({e}); give 'module:function'") from None
    if not callable(fn):
        raise ValueError(f"{ref!r} is not callable")
    return fn


def load_policy(ref: str | Path | Policy | None) -> Policy | None:
    """A preset name, a YAML path or a Policy; None or 'off' gives None (no guards)."""
    if ref is None or isinstance(ref, Policy):
        return ref
    text = str(ref)
    if text in ("", "off", "none"):
        return None
    path = PRESETS_DIR / f"{text}.yaml" if text in PRESETS else Path(text).expanduser()
    if not path.is_file():
        raise GuardConfigError(
            f"guard policy {text!r}: not a preset ({', '.join(PRESETS)}, off) nor a YAML file"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise GuardConfigError(f"guard policy {path}: invalid YAML ({e})") from None
    if isinstance(data, dict) and text not in PRESETS:
        data.setdefault("name", str(path))  # errors later name the file
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "literal_error":
                msg = f"{err.get('input')!r} is not an action; allowed: {', '.join(ACTIONS)}"
            problems.append(f"{loc}: {msg}" if loc else f"the file must be a mapping ({msg})")
        raise GuardConfigError(f"guard policy {path}: " + "; ".join(problems)) from None
