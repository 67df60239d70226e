"""The `guard_check` capability: run a text through a policy on demand (a prompt before
sending it, a document before it goes into training data) and say what the policy would do.
One function behind the CLI (`lmfast guard`), MCP (`guard_check`) and Python."""

from __future__ import annotations

from typing import Any, Literal

from lmfast.guardrails.guard import Guard, GuardrailBlocked
from lmfast.guardrails.policy import GuardConfigError
from pydantic import BaseModel, Field

Stage = Literal["input", "tool", "output", "tool_call"]
STAGE_HELP = (
    "Check it as a user's request (input), a tool result, retrieved document or file content "
    "(tool: indirect injection), a model reply (output), or a tool call's arguments (tool_call)."
)


class GuardCheckRequest(BaseModel):
    text: str = Field(max_length=1_000_000, description="The text to check.")
    policy: str = Field(
        "balanced", description="strict, balanced, permissive, or a policy YAML file."
    )
    stage: Stage = Field("input", description=STAGE_HELP)


class GuardCheckResult(BaseModel):
    policy: str
    stage: str
    blocked: bool = Field(description="Whether the policy refuses this text.")
    code: str | None = Field(None, description="Why, when blocked: prompt_injection, pii_*.")
    reason: str | None = None
    text: str | None = Field(
        None,
        description="The text as the policy passes it on (redacted; for a withheld tool "
        "result, the notice the model sees instead).",
    )
    decisions: list[dict[str, Any]] = Field(
        default_factory=list, description="Each check's finding: entities, risk, reasons."
    )


def guard_check(request: GuardCheckRequest) -> GuardCheckResult:
    found: list[dict[str, Any]] = []
    guard = Guard.from_ref(request.policy, on_decision=lambda d: found.append(d.as_dict()))
    if guard is None:
        raise GuardConfigError(
            "policy: 'off' checks nothing; give strict, balanced, permissive or a YAML file"
        )
    base = {"policy": guard.policy.name, "stage": request.stage}
    try:
        text, _ = guard.check_text(request.text, request.stage)
    except GuardrailBlocked as e:
        return GuardCheckResult(**base, blocked=True, code=e.code, reason=e.reason,
                                decisions=found)  # fmt: skip
    withheld = [d for d in found if d.get("action") == "withhold"]
    if withheld:  # a tool result the model would see only as a notice
        reason = "; ".join(withheld[0].get("reasons", [])[:3])
        return GuardCheckResult(**base, blocked=True, code="prompt_injection", reason=reason,
                                text=text, decisions=found)  # fmt: skip
    return GuardCheckResult(**base, blocked=False, text=text, decisions=found)
