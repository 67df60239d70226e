"""What quantization cost: held-out perplexity of the result next to its reference's, and
decode speed, measured with LMFast's own evaluation scorers."""

from __future__ import annotations

from pathlib import Path

from lmfast.evaluation.scorers import ScorerBackend


def measure_quality(
    model: Path,
    reference: Path,
    eval_text: str | None,
    backend: ScorerBackend,
    reference_label: str,
    decode_speed: bool = True,
) -> dict[str, float]:
    """perplexity, `{reference_label}_perplexity`, perplexity_change and (optionally) the
    result's decode tokens/s, on `eval_text` (default: the `prose` sample)."""
    from lmfast.evaluation.evaluate import measure_efficiency
    from lmfast.evaluation.runner import run_task
    from lmfast.evaluation.scorers import load_scorer
    from lmfast.evaluation.tasks import load_task

    task = load_task(eval_text or "prose")
    out: dict[str, float] = {}
    for label, path in ((f"{reference_label}_", reference), ("", model)):
        scorer = load_scorer(str(path), backend=backend)
        try:
            score, _ = run_task(scorer, task)
            out[f"{label}perplexity"] = round(score.metrics["perplexity"], 4)
            if not label and decode_speed:
                out["decode_tokens_per_s"] = measure_efficiency(scorer, [])["decode_tokens_per_s"]
        finally:
            scorer.close()
    out["perplexity_change"] = round(
        out["perplexity"] / out[f"{reference_label}_perplexity"] - 1, 4
    )
    return out
