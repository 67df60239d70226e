"""Pictures people expect from a run: the loss curve and the training dashboard (loss,
learning rate, gradient norm, throughput, memory over the steps) as PNGs."""

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
    ylabel = "loss (nats/token)" if parts else "cross-entropy (nats/token)"
    return _finish(fig, ax, path, ylabel, title)


# Panels of the training dashboard: (logged keys, y label); a panel with no data is left out.
_PANELS: list[tuple[tuple[str, ...], str]] = [
    (("loss", "eval_loss"), "loss (nats/token)"),
    (("learning_rate",), "learning rate"),
    (("grad_norm",), "gradient norm (before clipping)"),
    (("tokens_per_second",), "real tokens/s (since start)"),
    (("peak_memory_gb",), "peak memory (GB)"),
]


def training_metrics(history: list[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Loss, learning rate, gradient norm, throughput and memory against the step, one panel
    each (what a run's log records over time); None when nothing was logged."""
    panels = [
        (keys, label) for keys, label in _PANELS if any(k in h for h in history for k in keys)
    ]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.1 * len(panels)), dpi=100,
                             sharex=True, squeeze=False)  # fmt: skip
    for ax, (keys, label) in zip(axes[:, 0], panels, strict=True):
        for key in keys:
            points = [(h["step"], h[key]) for h in history if key in h]
            if points:
                style = "o-" if key.startswith("eval_") else "-"
                ax.plot(*zip(*points, strict=True), style, label=key.replace("_", " "))
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("optimizer step")
    if title:
        axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def reward_curve(history: list[dict[str, float]], path: Path) -> Path | None:
    """Mean reward per logged step with its spread across completions, as a PNG."""
    points = [(h["step"], h["reward"], h.get("reward_std", 0.0)) for h in history if "reward" in h]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, mean, std = (list(x) for x in zip(*points, strict=True))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, mean, label="mean reward", color="#2ca02c")
    ax.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)],
                    [m + s for m, s in zip(mean, std, strict=True)], alpha=0.2,
                    color="#2ca02c", label="spread (std)")  # fmt: skip
    return _finish(fig, ax, path, "reward", "GRPO reward")


def _finish(fig: Any, ax: Any, path: Path, ylabel: str, title: str) -> Path:
    """Label a per-step plot, save it and free the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
