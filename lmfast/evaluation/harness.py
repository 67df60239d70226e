"""lm-evaluation-harness on any LMFast model: a model class registered as `lmfast`.

    import lmfast.evaluation.harness  # registers the class
    lm_eval.simple_evaluate(model="lmfast", model_args="model=smollm2-135m-instruct", ...)

Requests go through the same scorers as LMFast's own tasks (llama.cpp for GGUF files,
transformers otherwise), so both routes give the same numbers on the same prompts.
`local_task_yaml` turns an LMFast multiple-choice task into a harness task (YAML + JSONL,
offline), which is how the routes are compared.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from lmfast.errors import LMFastError
from lmfast.evaluation.scorers import Scorer, ScorerBackend, encode_pair, load_scorer
from lmfast.evaluation.tasks import MC_CONTEXT_TEMPLATE, MC_TEMPLATE, Task

log = logging.getLogger(__name__)


@register_model("lmfast")
class LMFastLM(LM):
    """An LMFast model reference (alias, GGUF, HF folder, adapter, artifact id) as a harness LM."""

    def __init__(
        self,
        model: str | None = None,
        backend: ScorerBackend = "auto",
        batch_size: int | str | None = 8,
        max_gen_toks: int = 256,
        scorer: Scorer | None = None,
        **_ignored: Any,  # the harness passes device / max_batch_size to every class
    ) -> None:
        super().__init__()
        size = int(batch_size) if str(batch_size or "").isdigit() else 8
        self.scorer = scorer or load_scorer(model, backend=backend, batch_size=size)
        self.model_reference = model or "default"
        self.max_gen_toks = int(max_gen_toks)

    # -- the three request types -------------------------------------------------------
    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        pairs = [encode_pair(self.scorer, *r.args) for r in requests]
        return self.scorer.score(pairs)

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        pairs, owners = [], []
        for k, request in enumerate(requests):
            windows = get_rolling_token_windows(
                token_list=self.scorer.encode(request.args[0]),
                prefix_token=self.scorer.prefix_token,
                max_seq_len=self.scorer.context_length,
                context_len=1,
            )
            for window in map(make_disjoint_window, windows):
                pairs.append(window)
                owners.append(k)
        totals = [0.0] * len(requests)
        for k, (ll, _) in zip(owners, self.scorer.score(pairs), strict=True):
            totals[k] += ll
        return totals

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        out: list[str] = [""] * len(requests)
        groups: dict[tuple[tuple[str, ...], int], list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            kwargs = request.args[1]
            kwargs = dict(kwargs or {})
            if kwargs.get("do_sample") or kwargs.get("temperature", 0) not in (0, 0.0, None):
                log.warning("LMFast's harness model decodes greedily; sampling settings ignored")
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            groups[(tuple(until), int(kwargs.get("max_gen_toks", self.max_gen_toks)))].append(i)
        for (until, max_toks), idx in groups.items():
            prompts = [requests[i].args[0] for i in idx]
            for i, g in zip(idx, self.scorer.generate(prompts, max_toks, list(until)), strict=True):
                out[i] = g.text
        return out

    # -- chat templates (--apply_chat_template) ------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.model_reference.replace("/", "__")

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        return self.scorer.render_chat(chat_history)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return "lmfast" if self.scorer.has_chat_template else None


def local_task_yaml(task: Task, folder: Path) -> str:
    """Write `task` as a harness task (YAML + its JSONL, offline) in `folder`; return its name.

    Multiple choice keeps LMFast's prompt (template, " " before each choice), so scores match.
    Generation tasks in the prompt / answer shape become `generate_until` tasks with the same
    stop strings and token limit; `last_number` and `regex` extraction become harness filters.
    Run them with the harness's `apply_chat_template` to match LMFast's chat rendering."""
    if task.spec.few_shot:
        raise LMFastError("harness export of few-shot LMFast tasks is not supported")
    name = f"lmfast_{task.name}".replace("-", "_")
    config: dict[str, Any] = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(task.source)}},
        "test_split": "test",
    }
    if task.kind == "multiple_choice":
        has_context = any(e.context for e in task.examples)
        template = task.spec.prompt or (MC_CONTEXT_TEMPLATE if has_context else MC_TEMPLATE)
        config |= {
            "output_type": "multiple_choice",
            "doc_to_text": _jinja(template),
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{answer}}",
            "target_delimiter": " ",
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
            ],
        }
    elif task.kind == "generation" and all(e.messages is None for e in task.examples):
        config |= {
            "output_type": "generate_until",
            "doc_to_text": _jinja(task.spec.prompt or "{prompt}"),
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {
                "until": task.spec.stop or [],
                "max_gen_toks": task.spec.max_tokens,
                "do_sample": False,
            },
            "metric_list": [
                {
                    "metric": "exact_match",
                    "aggregation": "mean",
                    "higher_is_better": True,
                    "ignore_case": True,
                    "ignore_punctuation": True,
                }
            ],
        }
        pattern = {"last_number": r"(-?\d[\d,]*(?:\.\d+)?)", "regex": task.spec.pattern}
        if task.spec.extraction in pattern:
            config["filter_list"] = [
                {
                    "name": task.spec.extraction,
                    "filter": [
                        {
                            "function": "regex",
                            "regex_pattern": pattern[task.spec.extraction],
                            "group_select": -1,
                        },
                        {"function": "take_first"},
                    ],
                }
            ]
    else:
        raise LMFastError(
            f"task {task.name!r} ({task.kind}) cannot be written as a harness task: only "
            "multiple-choice and prompt / answer generation tasks can"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return name


def _jinja(template: str) -> str:
    return re.sub(r"\{(\w+)\}", r"{{\1}}", template)


def harness_task_manager(tasks: list[str], include_path: str | Path | None = None) -> Any:
    """The harness's task index (built-in tasks plus `include_path`), refusing unknown names."""
    from lm_eval.tasks import TaskManager

    if include_path:  # local tasks only: skip indexing the ~15,000 built-in ones (9 s)
        local = TaskManager(include_defaults=False, include_path=str(include_path))
        if all(t in local.all_tasks for t in tasks):
            return local
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        local = sorted(t for t in manager.all_tasks if t.startswith("lmfast_"))
        found = f" (found there: {', '.join(local)})" if local else ""
        raise LMFastError(
            f"unknown lm-evaluation-harness task(s) {unknown}; harness tasks are its built-in "
            f"names (e.g. arc_easy, hellaswag; their data comes from the Hugging Face Hub) or "
            f"YAML tasks in the harness include folder{found}"
        )
    return manager


def run_harness(
    lm: LM,
    tasks: list[str],
    *,
    include_path: str | Path | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    seed: int = 1234,
    apply_chat_template: bool = False,
    system_instruction: str | None = None,
) -> dict[str, dict[str, float]]:
    """Run harness tasks (hub names when online; YAML tasks under `include_path` offline) and
    return task -> metric -> value."""
    import lm_eval

    manager = harness_task_manager(tasks, include_path)
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=manager,
        limit=limit,
        num_fewshot=num_fewshot,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        log_samples=False,
        bootstrap_iters=0,
        apply_chat_template=apply_chat_template,
        system_instruction=system_instruction,
    )
    if results is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    for task, values in results["results"].items():
        clean = {}
        for key, value in values.items():
            metric, _, _filter = key.partition(",")
            if (
                isinstance(value, (int, float))
                and not metric.endswith("_stderr")
                and metric != "sample_len"
            ):
                clean[metric] = float(value)
        out[task] = clean
    return out
