"""Pictures people expect from a run: the loss curve as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def loss_curve(
    history: list[dict[str, Any]],
    path: Path,
    title: str = "loss",
    parts: dict[str, str] | None = None,
) -> Path | None:
    """Training (and evaluation) loss against the step, plus the loss's `parts` (logged key
    -> label, e.g. a distillation's KL) as dashed lines; None when nothing was logged."""
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="#1f77b4")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss", color="#d62728")
    for key, label in (parts or {}).items():
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), "--", label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)" if parts else "cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
