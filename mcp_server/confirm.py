"""Ask before expensive or destructive work: a job the hardware plan estimates past a
threshold (an hour by default), one whose estimated peak memory is past the machine's
budget, or one that would delete a run's checkpoints (`fresh` on an existing run) starts
only after the person says yes.

Modern connections (2026-07-28) get an `input_required` result and call again with the
answer (multi round-trip requests); legacy ones get an `elicitation/create` request.
`LMFAST_MCP_CONFIRM=off` (or `lmfast mcp --no-confirm`) turns it off for scripts.
"""

from __future__ import annotations

import hashlib
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import (
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
)
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, Field

from lmfast.config import LMFastConfig

CONFIRM_ENV = "LMFAST_MCP_CONFIRM"
MINUTES_ENV = "LMFAST_MCP_CONFIRM_MINUTES"
DEFAULT_MINUTES = 60.0
# A specialization conversation (tool listing, request, calls, observations, answer).
_TOKENS_PER_AGENT_TASK = 300
# A GRPO step of specialization: 16 sampled turns of about 450 tokens trained on, plus the
# sampling (measured: 80 s a step on 2 cores, where SFT trains about 140 tokens/s).
_TOKENS_PER_GRPO_STEP = 11_000
# JSONL / text corpora: about four bytes a token for English with BPE vocabularies.
_BYTES_PER_TOKEN = 4

# A question a tool call is waiting on (modern connections): the tasks interceptor
# returns it in place of the tool's result.
pending_question: ContextVar[list[InputRequiredResult] | None] = ContextVar(
    "lmfast_pending_question", default=None
)


class Confirm(BaseModel):
    """The form the person answers."""

    proceed: bool = Field(description="Start it anyway.")


def enabled() -> bool:
    return os.environ.get(CONFIRM_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def threshold_minutes() -> float:
    raw = os.environ.get(MINUTES_ENV)
    try:
        return float(raw) if raw else DEFAULT_MINUTES
    except ValueError:
        return DEFAULT_MINUTES


def _data_tokens(config: LMFastConfig) -> int | None:
    """Tokens per epoch, roughly, from the files' size (the plan's step count needs one)."""
    from lmfast.artifacts import ArtifactStore

    path = config.data.path
    if not path:
        return None
    store = ArtifactStore()
    folder = store.get(path).path if store.exists(path) else Path(path).expanduser()
    if folder.is_file():
        size = folder.stat().st_size
    elif folder.is_dir():
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    else:
        return None  # a hub dataset: its size is unknown until downloaded
    return max(1, size // _BYTES_PER_TOKEN)


def reasons(request: BaseModel) -> list[str]:
    """Why this request needs a yes before it starts (empty: it does not)."""
    from lmfast.hardware import detect_hardware
    from lmfast.plan import plan_training
    from lmfast.training.pretrain import recipe_spec
    from lmfast.training.run import run_folder

    found: list[str] = []
    run_id = getattr(request, "run_id", None)
    if getattr(request, "fresh", False) and run_id:
        checkpoints = run_folder("run", {}, run_id) / "checkpoints"
        if checkpoints.is_dir() and any(checkpoints.iterdir()):
            found.append(f"fresh=true deletes the checkpoints of run {run_id!r} ({checkpoints})")
    config = getattr(request, "config", None)
    if not isinstance(config, LMFastConfig):
        return found
    model = getattr(request, "model", None)
    if isinstance(model, str) and model:  # specialize names its model beside the recipe
        config = config.model_copy(deep=True)
        config.model.reference = model
    tokens = _data_tokens(config)
    if tokens is None and hasattr(request, "train_tasks"):
        tokens = request.train_tasks * _TOKENS_PER_AGENT_TASK  # type: ignore[attr-defined]
        tokens += getattr(request, "grpo_steps", 0) * _TOKENS_PER_GRPO_STEP
    try:
        plan = plan_training(config, detect_hardware(), recipe_spec(config), dataset_tokens=tokens)
    except Exception:  # a bad recipe is the job's error to report, not ours
        return found
    runs = getattr(request, "trials", 1)
    minutes = (plan.estimated_training_time_minutes or 0) * runs
    if minutes > threshold_minutes():
        hours = f"{minutes / 60:.1f} hours" if minutes >= 90 else f"{minutes:.0f} minutes"
        trials = f" over {runs} trials" if runs > 1 else ""
        found.append(
            f"the plan estimates about {hours} of training{trials} on {plan.hardware} "
            f"({plan.total_steps} steps at about {plan.estimated_tokens_per_second:,.0f} "
            "tokens/s)"
        )
    if not plan.fits:
        found.append(
            f"the estimated peak memory, {plan.estimated_peak_memory_gb:.1f} GB, is past this "
            f"machine's {plan.memory_budget_gb:.1f} GB budget"
        )
    return found


def _question(kind: str, request: BaseModel, why: list[str]) -> tuple[str, str]:
    """The input key (bound to this exact request, so a yes to one run is not a yes to
    another) and the message."""
    digest = hashlib.sha256(request.model_dump_json().encode()).hexdigest()[:12]
    message = f"Start {kind}? " + "; ".join(why) + "."
    return f"lmfast-confirm-{digest}", message


def _accepted(answer: Any) -> bool | None:
    """True (yes), False (no, declined or cancelled), None (not an elicitation answer)."""
    if not isinstance(answer, ElicitResult):
        return None
    return answer.action == "accept" and bool((answer.content or {}).get("proceed"))


async def confirm(kind: str, request: BaseModel, ctx: Context | None) -> None:
    """Return when the job may start; raise ToolError when the person says no, or leave
    a question in `pending_question` (and raise) when the client must answer first."""
    if ctx is None or not enabled():
        return
    why = await anyio.to_thread.run_sync(reasons, request)
    if not why:
        return
    key, message = _question(kind, request, why)
    declined = ToolError(f"{kind} was not started: the confirmation was declined ({message})")
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, "2026-07-28"):
        answer = (ctx.input_responses or {}).get(key)
        verdict = _accepted(answer)
        if verdict is True:
            return
        if verdict is False:
            raise declined
        from mcp.server.elicitation import render_elicitation_schema

        question = InputRequiredResult(
            input_requests={
                key: ElicitRequest(
                    params=ElicitRequestFormParams(
                        message=message, requested_schema=render_elicitation_schema(Confirm)
                    )
                )
            }
        )
        holder = pending_question.get()
        if holder is None:
            raise ToolError(f"{message} This client cannot answer; set {CONFIRM_ENV}=off.")
        holder.append(question)
        raise ToolError("waiting for confirmation")  # replaced by the question on the wire
    cannot_ask = ToolError(
        f"{message} The client cannot ask the person (no elicitation support): start "
        f"the server with --no-confirm (or {CONFIRM_ENV}=off) to run such jobs unasked, "
        "or make the run smaller."
    )
    capabilities = ctx.client_capabilities
    if capabilities is None or capabilities.elicitation is None:
        raise cannot_ask
    try:
        result = await ctx.elicit(message, Confirm)
    except MCPError:  # it declared elicitation but has no way to answer
        raise cannot_ask from None
    if result.action != "accept" or not result.data.proceed:
        raise declined
