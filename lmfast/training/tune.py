"""tune: hyper-parameter search over recipe fields with Optuna.

Each trial is an ordinary fine_tune run (its own run folder, tracker run and artifact) of the
base recipe with the trial's values applied as overrides. Single-objective searches use
CMA-ES by default and prune trials whose held-out loss falls behind the median of earlier
trials at the same step; several objectives (evaluation loss vs. training time) use NSGA-II
and give a Pareto front. The study lives in SQLite under LMFAST_HOME/tune, so running the same
search again continues it. The result is the best recipe as YAML plus a plot of the trials.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from lmfast.artifacts import ArtifactStore
from lmfast.config import LMFastConfig, merge_dicts, nest_values
from lmfast.errors import ConfigError, LMFastError
from lmfast.hashing import config_hash
from lmfast.home import lmfast_home
from lmfast.progress import ProgressFn, no_progress

# Objectives read from a trial's metrics; larger is better only for these.
HIGHER_IS_BETTER = ("tokens_per_second",)


class Range(BaseModel):
    """A numeric search range (integers when low, high and step are all integers)."""

    low: float
    high: float
    log: bool = Field(False, description="Sample on a log scale (learning rates).")
    step: float | None = Field(None, gt=0, description="Grid step (not with log).")
    integer: bool = Field(False, description="Sample integers (ranks, layers, widths).")

    @model_validator(mode="after")
    def _order(self) -> Range:
        if self.low >= self.high:
            raise ValueError(f"low={self.low} must be below high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log=true needs low > 0 (got {self.low})")
        if self.log and self.step:
            raise ValueError("step and log cannot be combined")
        return self


class Choice(BaseModel):
    choices: list[int | float | str | bool] = Field(min_length=1)


def _dimension_kind(value: Any) -> str:
    has_choices = isinstance(value, Choice) or (isinstance(value, dict) and "choices" in value)
    return "choices" if has_choices else "range"


# One kind per dimension, chosen by its keys, so an error names only what that kind needs.
Dimension = Annotated[
    Annotated[Range, Tag("range")] | Annotated[Choice, Tag("choices")],
    Discriminator(_dimension_kind),
]


class TuneRequest(BaseModel):
    """Search recipe fields for the best held-out loss (or several objectives)."""

    config: LMFastConfig = Field(default_factory=LMFastConfig, description="The base recipe.")
    space: dict[str, Dimension] = Field(
        min_length=1,
        description="Recipe field (dotted, e.g. training.learning_rate, training.lora.rank, "
        "model.template_overrides.hidden_size) -> {low, high, log, integer} or {choices}.",
    )
    trials: int = Field(10, ge=1, le=10_000, description="Trials in the study, in total.")
    objectives: list[str] = Field(
        default_factory=lambda: ["eval_loss"],
        min_length=1,
        max_length=3,
        description="Metrics of a trial to optimise: eval_loss, train_loss, seconds, "
        "tokens_per_second, eval_<task>_<metric>. Two or more: a Pareto front.",
    )
    sampler: Literal["auto", "cmaes", "nsga2", "tpe", "random"] = Field(
        "auto", description="'auto': CMA-ES for one objective, NSGA-II for several."
    )
    prune: bool = Field(
        True,
        description="Stop trials whose eval loss trails the median at the same step (one "
        "objective, periodic evaluation: training.eval_steps).",
    )
    seed: int = Field(0, ge=0, description="Sampler seed.")
    study: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$",
        description="Study name (default: derived from the recipe and the space); the same "
        "name continues the study.",
    )
    name: str | None = Field(None, max_length=200, description="Name for the report artifact.")

    @model_validator(mode="after")
    def _valid(self) -> TuneRequest:
        base = self.config.model_dump(mode="json")
        for key, dim in self.space.items():
            sample = dim.choices[0] if isinstance(dim, Choice) else dim.low
            if isinstance(dim, Range) and dim.integer:
                sample = int(sample)
            try:  # the field must exist and accept the range's values
                LMFastConfig.model_validate(merge_dicts(base, nest_values({key: sample})))
            except Exception as e:
                raise ValueError(f"space.{key}: {str(e).splitlines()[-1].strip()}") from None
        uses_eval = any(o.startswith("eval_") for o in self.objectives)
        if uses_eval and not self.config.data.validation_split:
            raise ValueError(
                f"objectives {self.objectives} need held-out data: set "
                "data.validation_split in the recipe (for example 0.1)"
            )
        if self.sampler == "cmaes" and len(self.objectives) > 1:
            raise ValueError("sampler 'cmaes' optimises one objective; use 'nsga2' for several")
        return self

    def directions(self) -> list[str]:
        return [
            "maximize"
            if o in HIGHER_IS_BETTER or (o.startswith("eval_") and _task_metric_higher(o))
            else "minimize"
            for o in self.objectives
        ]


def _task_metric_higher(objective: str) -> bool:
    if objective == "eval_loss":
        return False
    from lmfast.evaluation.report import LOWER_IS_BETTER

    return objective.rsplit("_", 1)[-1] not in LOWER_IS_BETTER


class TrialRecord(BaseModel):
    number: int
    state: str
    params: dict[str, Any]
    values: list[float] | None
    run_id: str | None = None
    artifact_id: str | None = None


class TuneResult(BaseModel):
    study: str
    artifact_id: str = Field(description="Report artifact: best recipe, trials, plot.")
    best_recipe: str = Field(description="Path of the best recipe (YAML).")
    best_params: dict[str, Any]
    best_values: list[float]
    best_trial: int
    pareto_trials: list[int] = Field(default_factory=list, description="Several objectives.")
    trials: list[TrialRecord]
    plot: str
    seconds: float


def _sampler(request: TuneRequest) -> Any:
    import optuna

    kind = request.sampler
    if kind == "auto":
        kind = "cmaes" if len(request.objectives) == 1 else "nsga2"
    if kind == "cmaes":
        # Categorical fields fall back to independent sampling (CMA-ES is continuous).
        return optuna.samplers.CmaEsSampler(seed=request.seed, warn_independent_sampling=False)
    if kind == "nsga2":
        size = max(4, min(50, request.trials // 3))
        return optuna.samplers.NSGAIISampler(population_size=size, seed=request.seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=request.seed)
    return optuna.samplers.RandomSampler(seed=request.seed)


def _suggest(trial: Any, key: str, dim: Range | Choice) -> Any:
    if isinstance(dim, Choice):
        return trial.suggest_categorical(key, dim.choices)
    if dim.integer:
        step = int(dim.step or 1)
        return trial.suggest_int(key, int(dim.low), int(dim.high), step=step, log=dim.log)
    return trial.suggest_float(key, dim.low, dim.high, log=dim.log, step=dim.step)


def _pruning_callback(trial: Any) -> Any:
    from transformers import TrainerCallback

    class Prune(TrainerCallback):
        pruned = False
        reported: set[int] = set()  # noqa: RUF012 (one callback per trial)

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any):
            # fine_tune evaluates once more after the last step: report each step once.
            if metrics and "eval_loss" in metrics and state.global_step not in self.reported:
                self.reported.add(state.global_step)
                trial.report(float(metrics["eval_loss"]), state.global_step)
                if trial.should_prune():
                    self.pruned = True
                    control.should_training_stop = True

    return Prune()


def tune(
    request: TuneRequest, progress: ProgressFn = no_progress, *, store: ArtifactStore | None = None
) -> TuneResult:
    """Run (or continue) the study; write the best recipe and the trials' plot."""
    import optuna

    from lmfast.training.finetune import FineTuneRequest, fine_tune

    store = store or ArtifactStore()
    started = time.perf_counter()
    base = request.config.model_dump(mode="json")
    study_name = request.study or "tune-" + config_hash(
        {"config": base, "space": {k: v.model_dump() for k, v in request.space.items()},
         "objectives": request.objectives, "sampler": request.sampler, "seed": request.seed}
    )[:12]  # fmt: skip
    folder = lmfast_home() / "tune" / study_name
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    single = len(request.objectives) == 1
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
        if single and request.prune and request.config.training.eval_steps
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=f"sqlite:///{folder / 'study.db'}",
        directions=request.directions(),
        sampler=_sampler(request),
        pruner=pruner,
        load_if_exists=True,
    )
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = sum(t.state in finished for t in study.trials)
    remaining = max(0, request.trials - done)
    if done:
        progress(done, request.trials, f"continuing study {study_name}: {done} trials done")

    def objective(trial: Any) -> Any:
        params = {k: _suggest(trial, k, dim) for k, dim in request.space.items()}
        config = LMFastConfig.model_validate(merge_dicts(base, nest_values(params)))
        run_id = f"{study_name}-trial-{trial.number}"
        shown = ", ".join(f"{k.rsplit('.', 1)[-1]}={_fmt(v)}" for k, v in params.items())
        progress(trial.number, request.trials, f"trial {trial.number}: {shown}")
        prune = _pruning_callback(trial) if single else None
        try:
            result = fine_tune(
                FineTuneRequest(config=config, run_id=run_id, fresh=True, name=run_id),
                store=store,
                callbacks=[prune] if prune else None,
            )
        except LMFastError as e:  # a combination that cannot train (memory, shapes) fails
            trial.set_user_attr("error", str(e)[:500])
            raise optuna.TrialPruned(str(e)) from None
        trial.set_user_attr("run_id", run_id)
        trial.set_user_attr("artifact_id", result.artifact_id)
        missing = [o for o in request.objectives if o not in result.metrics]
        if missing:
            raise ConfigError(
                [("objectives", f"{missing} are not metrics of a run; it has "
                  f"{', '.join(sorted(result.metrics))}")]
            )  # fmt: skip
        values = [float(result.metrics[o]) for o in request.objectives]
        progress(
            trial.number + 1,
            request.trials,
            f"trial {trial.number}: "
            + ", ".join(f"{o} {v:.4g}" for o, v in zip(request.objectives, values, strict=True))
            + (" (pruned)" if prune and prune.pruned else ""),
        )
        if prune and prune.pruned:
            raise optuna.TrialPruned()
        return values[0] if single else values

    study.optimize(objective, n_trials=remaining, catch=())
    return _report(request, study, study_name, store, started)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _report(
    request: TuneRequest, study: Any, name: str, store: ArtifactStore, started: float
) -> TuneResult:
    import optuna

    records = [
        TrialRecord(
            number=t.number,
            state=t.state.name.lower(),
            params=t.params,
            values=list(t.values) if t.values else None,
            run_id=t.user_attrs.get("run_id"),
            artifact_id=t.user_attrs.get("artifact_id"),
        )
        for t in study.trials
    ]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        errors = {t.user_attrs.get("error") for t in study.trials} - {None}
        raise LMFastError(
            f"study {name}: no trial completed"
            + (f"; errors: {'; '.join(sorted(errors))[:800]}" if errors else "")
        )
    if len(request.objectives) == 1:
        best, pareto = study.best_trial, []
    else:  # the Pareto front; the recipe shown is its best on the first objective
        front = study.best_trials
        sign = 1 if request.directions()[0] == "minimize" else -1
        best = min(front, key=lambda t: sign * t.values[0])
        pareto = sorted(t.number for t in front)
    recipe = LMFastConfig.model_validate(
        merge_dicts(request.config.model_dump(mode="json"), nest_values(best.params))
    )
    with store.create(
        "report",
        name=request.name or name,
        parents=[r.artifact_id for r in records if r.artifact_id and r.number == best.number],
        config=request.model_dump(mode="json"),
    ) as draft:
        best_path = draft.path / "best_recipe.yaml"
        header = (
            f"# Best of study {name}: trial {best.number}, "
            + ", ".join(
                f"{o}={v:.4g}" for o, v in zip(request.objectives, best.values, strict=True)
            )
            + "\n"
        )
        best_path.write_text(
            header + yaml.safe_dump(recipe.model_dump(mode="json", exclude_defaults=True))
        )
        (draft.path / "trials.json").write_text(
            json.dumps([r.model_dump() for r in records], indent=2)
        )
        plot = _plot(study, request, draft.path / "trials.png")
        draft.metrics = {
            **{f"best_{o}": float(v) for o, v in zip(request.objectives, best.values, strict=True)},
            "trials": float(len(records)),
            "complete": float(len(complete)),
        }
        draft.extra = {"study": name, "best_trial": best.number, "best_params": best.params}
    assert draft.artifact is not None
    art = draft.artifact
    return TuneResult(
        study=name,
        artifact_id=art.id,
        best_recipe=str(art.path / best_path.name),
        best_params=best.params,
        best_values=list(best.values),
        best_trial=best.number,
        pareto_trials=pareto,
        trials=records,
        plot=str(art.path / plot.name),
        seconds=round(time.perf_counter() - started, 1),
    )


def _plot(study: Any, request: TuneRequest, out: Path) -> Path:
    """Optuna's own plots: the optimisation history, or the Pareto front."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        if len(request.objectives) == 1:
            ax = vis.plot_optimization_history(study, target_name=request.objectives[0])
        else:
            ax = vis.plot_pareto_front(study, target_names=request.objectives)
    fig = ax.figure
    fig.set_size_inches(8, 5)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
