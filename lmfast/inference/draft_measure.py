"""Measure a draft model against the model it drafts for (`lmfast speculate`): greedy replies
with and without it, alternating prompt by prompt, for acceptance, speed-up and sameness."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import BaseModel, Field

from lmfast.progress import ProgressFn, no_progress

# Questions of several kinds, for measuring a draft when the caller has no prompts of its own.
SAMPLE_PROMPTS = [
    "Explain how a refrigerator keeps food cold.",
    "Write a short poem about the sea.",
    "What are three tips for learning a new language?",
    "Summarise the water cycle in a few sentences.",
    "How do I reverse a list in Python?",
    "Describe the difference between weather and climate.",
    "Give me a recipe for a simple tomato soup.",
    "Why is the sky blue?",
]


def read_prompts(path: Path) -> list[str]:
    """Prompts from a text file (one per line) or JSONL (a prompt, text or messages field:
    the last user message)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if not line.startswith("{"):
            out.append(line)
            continue
        row = json.loads(line)
        text = row.get("prompt") or row.get("text")
        if text is None and isinstance(row.get("messages"), list):
            users = [m.get("content") for m in row["messages"] if m.get("role") == "user"]
            text = users[-1] if users else None
        if not isinstance(text, str) or not text:
            raise ValueError(f"{path}:{n}: no prompt, text or messages field with a user turn")
        out.append(text)
    if not out:
        raise ValueError(f"{path}: no prompts in it")
    return out


class DraftReport(BaseModel):
    """A draft measured against the model it drafts for, greedy, one stream at a time."""

    model: str
    draft: str
    prompts: int
    max_tokens: int
    draft_max: int
    draft_min: int
    tokens: int = Field(description="Tokens generated, with the draft and without (equal).")
    drafted: int
    accepted: int
    acceptance: float = Field(description="Accepted / drafted tokens.")
    tokens_per_s_alone: float
    tokens_per_s_with_draft: float
    speedup: float
    identical: bool = Field(description="Every reply with the draft equals the reply without.")


def measure_draft(
    model: str | Path,
    draft: str | Path,
    prompts: list[str],
    *,
    max_tokens: int = 128,
    draft_max: int = 8,
    draft_min: int = 0,
    progress: ProgressFn = no_progress,
) -> DraftReport:
    """Generate every prompt's greedy reply with and without the draft, alternating prompt by
    prompt so both see the same machine state; report acceptance and speed-up."""
    from lmfast.inference.base import ChatMessage, Delta, EngineRequest, Finished, SamplingParams
    from lmfast.inference.llamacpp import LlamaCppEngine

    if not prompts:
        raise ValueError("prompts: give at least one prompt to measure the draft on")
    ctx = max(1024, max_tokens + 512)
    alone = LlamaCppEngine(model, n_ctx=ctx)
    drafted = None
    try:
        drafted = LlamaCppEngine(
            model, n_ctx=ctx, draft=draft, draft_max=draft_max, draft_min=draft_min
        )
        seconds = {"alone": 0.0, "draft": 0.0}
        tokens, identical = 0, True
        for i, text in enumerate(prompts):
            progress(i, len(prompts), f"prompt {i + 1} of {len(prompts)}")
            replies = {}
            for label, engine in (("alone", alone), ("draft", drafted)):
                prompt = engine.render_chat([ChatMessage(role="user", content=text)])
                params = SamplingParams(max_tokens=max_tokens, temperature=0)
                request = EngineRequest(prompt, params)
                start = time.perf_counter()
                parts, done = [], 0
                for event in engine.submit(request):
                    if isinstance(event, Delta):
                        parts.append(event.text)
                    elif isinstance(event, Finished):
                        done = event.completion_tokens
                seconds[label] += time.perf_counter() - start
                replies[label] = ("".join(parts), done)
            identical &= replies["alone"] == replies["draft"]
            tokens += replies["alone"][1]
        progress(len(prompts), len(prompts), "measured")
        stats = drafted.stats()
    finally:
        alone.close()
        if drafted is not None:
            drafted.close()
    rate_alone, rate_draft = tokens / seconds["alone"], tokens / seconds["draft"]
    return DraftReport(
        model=str(model),
        draft=str(draft),
        prompts=len(prompts),
        max_tokens=max_tokens,
        draft_max=draft_max,
        draft_min=draft_min,
        tokens=tokens,
        drafted=stats["draft_tokens"],
        accepted=stats["draft_accepted"],
        acceptance=round(stats["draft_accepted"] / max(1, stats["draft_tokens"]), 4),
        tokens_per_s_alone=round(rate_alone, 2),
        tokens_per_s_with_draft=round(rate_draft, 2),
        speedup=round(rate_draft / rate_alone, 3),
        identical=identical,
    )
