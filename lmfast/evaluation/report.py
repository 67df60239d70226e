"""The human side of an evaluation: a Markdown report, comparison table, disagreements and
PNG plots (per-task bars, multiple-choice calibration)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lmfast.evaluation.metrics import calibration_bins

# The number a task is compared on, first one present.
HEADLINE = ("accuracy", "exact_match", "f1", "rougeL", "bleu", "perplexity")
LOWER_IS_BETTER = {"perplexity", "bits_per_byte", "calibration_error"}


def headline(metrics: dict[str, float]) -> tuple[str, float] | None:
    for name in HEADLINE:
        if name in metrics:
            return name, metrics[name]
    return None


def fmt(name: str, value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if name in ("accuracy", "accuracy_norm", "exact_match", "f1", "rouge1", "rouge2", "rougeL"):
        return f"{value:.1%}"
    if name in ("perplexity", "bleu"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def markdown(models: list[dict[str, Any]], disagreements: dict[str, int]) -> str:
    """The report: one row per task and metric, one column per model."""
    names = [m["label"] for m in models]
    tasks: dict[str, list[str]] = {}
    for mr in models:
        for t in mr["tasks"]:
            keys = tasks.setdefault(t["task"], [])
            keys += [k for k in t["metrics"] if k not in keys and k != "tokens"]
    lines = ["# Evaluation report", ""]
    for i, mr in enumerate(models):
        lines.append(f"- **{names[i]}**: `{mr['model']}` ({mr['backend']})")
    lines += ["", "| task | metric | " + " | ".join(names) + " |"]
    lines.append("|---|---|" + "---|" * len(names))
    for task, keys in tasks.items():
        for key in keys:
            cells = []
            values = []
            for mr in models:
                found = next((t for t in mr["tasks"] if t["task"] == task), None)
                v = found["metrics"].get(key) if found else None
                values.append(v)
                cell = fmt(key, v) if v is not None else "-"
                if found and key in found.get("stderr", {}):
                    cell += f" ± {fmt(key, found['stderr'][key])}"
                cells.append(cell)
            best = _best(key, values)
            if best is not None and len(models) > 1:
                cells[best] = f"**{cells[best]}**"
            lines.append(f"| {task} | {key} | " + " | ".join(cells) + " |")
    harness = [mr for mr in models if mr.get("harness")]
    if harness:
        lines += ["", "## lm-evaluation-harness", ""]
        lines.append("| task | metric | " + " | ".join(names) + " |")
        lines.append("|---|---|" + "---|" * len(names))
        keys = sorted({(t, k) for mr in models for t, d in mr["harness"].items() for k in d})
        for task, key in keys:
            cells = [
                fmt(key, mr["harness"][task][key])
                if key in mr.get("harness", {}).get(task, {})
                else "-"
                for mr in models
            ]
            lines.append(f"| {task} | {key} | " + " | ".join(cells) + " |")
    if any(mr.get("efficiency") for mr in models):
        lines += ["", "## Efficiency", ""]
        lines.append("| measure | " + " | ".join(names) + " |")
        lines.append("|---|" + "---|" * len(names))
        keys = [k for k in models[0].get("efficiency", {})]
        for key in keys:
            cells = [f"{mr.get('efficiency', {}).get(key, math.nan):.3g}" for mr in models]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    if disagreements:
        lines += ["", "## Disagreements", ""]
        lines.append("Examples where the models' correctness differs (`disagreements.jsonl`):")
        lines.append("")
        for task, n in disagreements.items():
            lines.append(f"- {task}: {n}")
    return "\n".join(lines) + "\n"


def _best(metric: str, values: list[float | None]) -> int | None:
    present = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if len(present) < 2 or len({v for _, v in present}) == 1:
        return None
    pick = min if metric in LOWER_IS_BETTER else max
    return pick(present, key=lambda p: p[1])[0]


def disagreements(
    labels: list[str], records: list[dict[str, list[dict[str, Any]]]]
) -> list[dict[str, Any]]:
    """Per example, where models (2 or more) differ on correctness: task, index, each model's
    output and whether it was right."""
    if len(labels) < 2:
        return []
    out = []
    for task in records[0]:
        rows = [r.get(task, []) for r in records]
        for group in zip(*rows, strict=False):
            if "correct" not in group[0]:
                continue
            if len({g["correct"] for g in group}) > 1:
                entry: dict[str, Any] = {"task": task, "index": group[0]["index"]}
                entry["line"] = group[0]["line"]
                for label, g in zip(labels, group, strict=True):
                    entry[label] = {
                        "correct": g["correct"],
                        "output": g.get("output", g.get("prediction")),
                    }
                out.append(entry)
    return out


def plot_tasks(models: list[dict[str, Any]], path: Path) -> Path | None:
    """Grouped bars: each task's headline metric, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = []
    for mr in models:
        for t in mr["tasks"]:
            if t["task"] not in [x[0] for x in tasks] and headline(t["metrics"]):
                tasks.append((t["task"], headline(t["metrics"])[0]))  # type: ignore[index]
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.2 + 2.6 * len(tasks), 3.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (task, metric) in zip(axes[0], tasks, strict=True):
        values = []
        for mr in models:
            found = next((t for t in mr["tasks"] if t["task"] == task), None)
            values.append(found["metrics"].get(metric, math.nan) if found else math.nan)
        xs = range(len(models))
        ax.bar(xs, values, color=[colors[i % len(colors)] for i in xs])
        ax.set_xticks(list(xs), [m["label"] for m in models], rotation=20, fontsize=8)
        arrow = "lower is better" if metric in LOWER_IS_BETTER else "higher is better"
        ax.set_title(f"{task}\n{metric} ({arrow})", fontsize=9)
        for x, v in zip(xs, values, strict=True):
            if not math.isnan(v):
                ax.annotate(fmt(metric, v), (x, v), ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_calibration(
    labels: list[str], records: list[dict[str, list[dict[str, Any]]]], path: Path
) -> Path | None:
    """Reliability diagram of multiple-choice confidence (all MC tasks pooled), per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = []
    for label, per_task in zip(labels, records, strict=True):
        conf = [r["confidence"] for rs in per_task.values() for r in rs if "confidence" in r]
        ok = [r["correct"] for rs in per_task.values() for r in rs if "confidence" in r]
        if conf:
            series.append((label, *calibration_bins(conf, ok, bins=5)))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    for label, rows, ece in series:
        ax.plot(
            [r[0] for r in rows], [r[1] for r in rows], marker="o", label=f"{label} (ECE {ece:.2f})"
        )
    ax.set_xlabel("confidence of the chosen answer")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Multiple-choice calibration", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
