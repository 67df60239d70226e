"""`evaluate`: score one or more models on tasks and write a report artifact.

Tasks are checked before any model loads, models are evaluated one at a time (only one is
in memory), and the report (JSON, Markdown, plots, per-example records, disagreements) is
an artifact whose parents are the models and task files.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmfast.artifacts import ArtifactStore, write_atomic
from lmfast.errors import LMFastError
from lmfast.evaluation import report as rp
from lmfast.evaluation.runner import TaskScore, run_task
from lmfast.evaluation.scorers import Scorer, ScorerBackend, load_scorer
from lmfast.evaluation.tasks import Task, load_task
from lmfast.hardware import peak_memory_gb, reset_peak_memory
from lmfast.progress import ProgressFn, no_progress

EFFICIENCY_PROMPT = "Write a short paragraph about why the sky is blue."


class EvaluateRequest(BaseModel):
    """What to evaluate, on what."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(
        min_length=1,
        max_length=8,
        description="Model references (alias, .gguf, HF folder, adapter, artifact id); several "
        "give a comparison.",
    )
    tasks: list[str] = Field(
        default_factory=list,
        description="LMFast tasks: sample names, .jsonl / .txt / .yaml task files.",
    )
    harness_tasks: list[str] = Field(
        default_factory=list,
        description="lm-evaluation-harness task names (hub data needs network; local YAML "
        "tasks live in harness_include).",
    )
    harness_include: str | None = Field(
        None, description="Folder of extra lm-evaluation-harness YAML tasks (offline)."
    )
    limit: int | None = Field(
        None, ge=1, le=100_000, description="At most this many examples per task."
    )
    backend: ScorerBackend = Field(
        "auto", description="auto (llama.cpp for GGUF, transformers otherwise), or one of them."
    )
    batch_size: int = Field(8, ge=1, le=256, description="Requests decoded together.")
    seed: int = Field(1234, ge=0, description="Few-shot selection seed.")
    efficiency: bool = Field(
        True, description="Also measure time to first token, decode tokens/s and peak memory."
    )
    tracker: Literal["auto", "mlflow", "none"] = Field(
        "auto", description="Log results to MLflow (auto: when installed) or not."
    )
    name: str | None = Field(None, max_length=200, description="Report artifact name.")

    @model_validator(mode="after")
    def _absolute_paths(self) -> EvaluateRequest:
        """Local files become absolute, so the detached job worker reads the same ones."""

        def fix(ref: str) -> str:
            path = Path(ref).expanduser()
            return str(path.resolve()) if not path.is_absolute() and path.exists() else ref

        self.models = [fix(m) for m in self.models]
        self.tasks = [fix(t) for t in self.tasks]
        if self.harness_include:
            self.harness_include = fix(self.harness_include)
        return self

    @model_validator(mode="after")
    def _something_to_run(self) -> EvaluateRequest:
        if not self.tasks and not self.harness_tasks:
            raise ValueError(
                "give at least one task (tasks: a sample name or a task file; or harness_tasks)"
            )
        return self


class ModelReport(BaseModel):
    label: str = Field(description="Short name in tables and plots.")
    model: str = Field(description="The reference as given.")
    resolved: str = Field(description="What it resolved to.")
    backend: str = Field(description="Scorer backend.")
    tasks: list[TaskScore] = Field(default_factory=list)
    harness: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="lm-evaluation-harness task -> metric -> value."
    )
    efficiency: dict[str, float] = Field(default_factory=dict)


class EvaluateResult(BaseModel):
    artifact_id: str = Field(description="The report artifact.")
    path: str = Field(description="Its folder (report.md, results.json, plots).")
    models: list[ModelReport]
    report: str = Field(description="The Markdown report.")
    plots: list[str] = Field(default_factory=list, description="PNG files.")
    disagreements: int = Field(0, description="Examples where the models' correctness differs.")
    seconds: float


def _label(reference: str, index: int, taken: set[str]) -> str:
    """A short name safe in file names and tracker metric names."""
    base = Path(reference).name.removesuffix(".gguf") or reference
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", base)[:28] or "model"
    label = base if base not in taken else f"{base}-{index + 1}"
    taken.add(label)
    return label


def evaluate(request: EvaluateRequest, progress: ProgressFn = no_progress) -> EvaluateResult:
    """Run every task on every model; write and return the report artifact."""
    from lmfast.registry import resolve_model

    started = time.perf_counter()
    tasks = [load_task(t) for t in request.tasks]  # bad task files fail before models load
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise LMFastError(f"tasks: two tasks share a name ({names}); rename one in its YAML")
    if request.harness_tasks:
        from lmfast.extras import require

        require("eval", "harness_tasks")  # before any model loads
        from lmfast.evaluation.harness import harness_task_manager

        progress(0, None, "indexing lm-evaluation-harness tasks")
        harness_task_manager(request.harness_tasks, request.harness_include)
    resolved = [resolve_model(m) for m in request.models]
    work = len(request.models) * (sum(len(t.limited(request.limit)) for t in tasks) + 1)
    done_before = 0
    taken: set[str] = set()
    reports: list[ModelReport] = []
    records: list[dict[str, list[dict[str, Any]]]] = []
    for i, (ref, res) in enumerate(zip(request.models, resolved, strict=True)):
        label = _label(ref, i, taken)
        progress(done_before, work, f"loading {label}")
        scorer = load_scorer(res, backend=request.backend, batch_size=request.batch_size)
        try:
            reset_peak_memory(scorer.device)
            model_report = ModelReport(
                label=label, model=ref, resolved=str(res.path or res.name), backend=scorer.backend
            )
            per_task: dict[str, list[dict[str, Any]]] = {}
            for task in tasks:
                n = len(task.limited(request.limit))
                base = done_before

                def relay(
                    done: int, total: int, what: str, base: int = base, n: int = n, lb: str = label
                ) -> None:
                    # Pairs / windows -> examples, so the bar moves per example.
                    progress(base + round(n * done / max(total, 1)), work, f"{lb}: {what}")

                score, recs = run_task(
                    scorer, task, limit=request.limit, seed=request.seed, progress=relay
                )
                model_report.tasks.append(score)
                per_task[task.name] = recs
                done_before += n
            if request.harness_tasks:
                progress(done_before, work, f"{label}: lm-evaluation-harness")
                model_report.harness = _harness(scorer, ref, request)
            if request.efficiency:
                model_report.efficiency = measure_efficiency(scorer, model_report.tasks)
            done_before += 1
            progress(done_before, work, f"{label}: done")
        finally:
            scorer.close()
        reports.append(model_report)
        records.append(per_task)
    return _write_report(request, reports, records, tasks, resolved, started)


def _harness(scorer: Scorer, reference: str, request: EvaluateRequest) -> dict[str, Any]:
    from lmfast.evaluation.harness import LMFastLM, run_harness

    lm = LMFastLM(model=reference, scorer=scorer)
    return run_harness(
        lm,
        request.harness_tasks,
        include_path=request.harness_include,
        limit=request.limit,
        seed=request.seed,
    )


def measure_efficiency(scorer: Scorer, tasks: list[TaskScore]) -> dict[str, float]:
    """Single-request latency and decode speed, batched generation throughput, peak memory."""
    prompt = EFFICIENCY_PROMPT
    if scorer.has_chat_template:
        prompt = scorer.render_chat([{"role": "user", "content": EFFICIENCY_PROMPT}])
    ttft = scorer.first_token_seconds(prompt)
    t0 = time.perf_counter()
    (gen,) = scorer.generate([prompt], 64, [])
    seconds = time.perf_counter() - t0
    out = {
        "time_to_first_token_s": round(ttft, 4),
        "decode_tokens_per_s": round(gen.completion_tokens / seconds, 2) if seconds else 0.0,
    }
    generated = sum(t.generated_tokens for t in tasks if t.kind == "generation")
    gen_seconds = sum(t.seconds for t in tasks if t.kind == "generation")
    if generated and gen_seconds:
        out["batched_tokens_per_s"] = round(generated / gen_seconds, 2)
    out["peak_memory_gb"] = round(peak_memory_gb(scorer.device), 3)
    return out


def _parents(resolved: list[Any], tasks: list[Task]) -> list[str]:
    store = ArtifactStore()
    parents: list[str] = []
    for res in resolved:
        art = getattr(res, "artifact_id", None)
        parents.append(art if art and store.exists(art) else str(res.path or res.name))
    parents += [str(t.source) for t in tasks]
    return list(dict.fromkeys(parents))


def _write_report(
    request: EvaluateRequest,
    reports: list[ModelReport],
    records: list[dict[str, list[dict[str, Any]]]],
    tasks: list[Task],
    resolved: list[Any],
    started: float,
) -> EvaluateResult:
    labels = [r.label for r in reports]
    dumped = [r.model_dump() for r in reports]
    diffs = rp.disagreements(labels, records)
    per_task_diffs: dict[str, int] = {}
    for d in diffs:
        per_task_diffs[d["task"]] = per_task_diffs.get(d["task"], 0) + 1
    text = rp.markdown(dumped, per_task_diffs)
    store = ArtifactStore()
    config = request.model_dump(exclude={"name", "tracker"})
    with store.create(
        "report", name=request.name, parents=_parents(resolved, tasks), config=config
    ) as draft:
        folder = draft.path
        write_atomic(folder / "report.md", text)
        write_atomic(folder / "results.json", json.dumps({"models": dumped}, indent=2))
        (folder / "examples").mkdir()
        for label, per_task in zip(labels, records, strict=True):
            for task, recs in per_task.items():
                lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
                write_atomic(folder / "examples" / f"{label}.{task}.jsonl", lines)
        if diffs:
            lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in diffs)
            write_atomic(folder / "disagreements.jsonl", lines)
        plots = [
            p
            for p in (
                rp.plot_tasks(dumped, folder / "tasks.png"),
                rp.plot_calibration(labels, records, folder / "calibration.png"),
            )
            if p is not None
        ]
        for r in reports:
            for t in r.tasks:
                for k, v in t.metrics.items():
                    draft.metrics[f"{r.label}.{t.task}.{k}"] = v
        draft.extra = {"models": labels, "tasks": [t.name for t in tasks]}
        _track(request, reports, folder)
    art = draft.artifact
    assert art is not None
    return EvaluateResult(
        artifact_id=art.id,
        path=str(art.path),
        models=reports,
        report=text,
        plots=[str(art.path / p.name) for p in plots],
        disagreements=len(diffs),
        seconds=round(time.perf_counter() - started, 2),
    )


def _track(request: EvaluateRequest, reports: list[ModelReport], folder: Path) -> None:
    """One MLflow run per evaluation, metrics named model.task.metric, the report attached."""
    from lmfast.observability.tracking import code_version, tracked_run

    with (
        tempfile.TemporaryDirectory() as run_dir,
        tracked_run(
            request.tracker,
            Path(run_dir),
            {"lmfast.kind": "evaluate", "lmfast.code_version": code_version()},
        ) as run,
    ):
        if run.run_id is None:
            return
        metrics = {
            f"{r.label}.{t.task}.{k}": v
            for r in reports
            for t in r.tasks
            for k, v in t.metrics.items()
        }
        metrics.update({f"{r.label}.{k}": v for r in reports for k, v in r.efficiency.items()})
        run.finish(metrics, [folder / "report.md", folder / "tasks.png"])
