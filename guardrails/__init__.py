"""lmfast.guardrails: input and output guards (PII, prompt injection) for the generation pipeline.

Installed under `lmfast.` (not as a bare `guardrails` package) so it never shadows guardrails-ai.
Heavy libraries (Presidio, spaCy) load only when a guard is built.
"""

from lmfast.guardrails.guard import (
    Decision,
    Guard,
    GuardrailBlocked,
    StreamRedactor,
    guard_hooks,
    guard_ref,
)
from lmfast.guardrails.injection import InjectionDetector, Risk
from lmfast.guardrails.policy import PRESETS, GuardConfigError, Policy, load_policy

__all__ = [
    "PRESETS",
    "Decision",
    "Guard",
    "GuardConfigError",
    "GuardrailBlocked",
    "InjectionDetector",
    "Policy",
    "Risk",
    "StreamRedactor",
    "guard_hooks",
    "guard_ref",
    "load_policy",
]
