"""evaluate: metrics, task files, perplexity against transformers, the three harness routes,
comparison reports, the CLI and the MCP tool."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from lmfast.evaluation import metrics as m
from lmfast.evaluation.tasks import TaskError, load_task
from tests.tiny_models import make_tiny_llama


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval_models")
    return make_tiny_llama(root / "a", seed=0), make_tiny_llama(root / "b", seed=1)


@pytest.fixture(scope="module")
def task_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_tasks")
    mc = root / "mc.jsonl"
    mc.write_text(
        "".join(
            json.dumps({"question": f"Which is {w}?", "choices": [w, "x", "y z"], "answer": i % 3})
            + "\n"
            for i, w in enumerate(["red", "blue", "green", "gold", "grey", "pink"])
        )
    )
    gen = root / "gen.jsonl"
    gen.write_text(
        "".join(json.dumps({"prompt": f"Say {n}.", "answer": str(n)}) + "\n" for n in range(5))
    )
    text = root / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 30)
    return {"mc": mc, "gen": gen, "text": text}


# -- metrics ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "rule", "pattern", "expected"),
    [
        ("  Paris \n", "strip", None, "Paris"),
        ("\n\nParis is the capital.\nMore text", "first_line", None, "Paris is the capital."),
        ("So 3 + 4 = 7, and then 12 apples", "last_number", None, "12"),
        ("Natalia sold 48 + 24 = 72 clips.\n#### 72", "last_number", None, "72"),
        ("The total is 1,234.", "last_number", None, "1234"),
        ("It fell to -5 degrees", "last_number", None, "-5"),
        ("It is 2.50 dollars", "last_number", None, "2.50"),
        ("no digits here", "last_number", None, ""),
        ("The answer is (B) because", "regex", r"\(([A-D])\)", "B"),
        ("Final: yes", "regex", r"yes|no", "yes"),
        ("nothing", "regex", r"\(([A-D])\)", ""),
    ],
)
def test_extraction_rules(text: str, rule: str, pattern: str | None, expected: str) -> None:
    assert m.extract(text, rule, pattern) == expected


def test_exact_match_and_f1_use_squad_normalisation() -> None:
    assert m.exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert m.exact_match("Eiffel", "Eiffel Tower") == 0.0
    assert m.f1("the big red dog", "a red dog") == pytest.approx(2 * (2 / 3 * 1) / (2 / 3 + 1))
    assert m.f1("", "") == 1.0 and m.f1("cat", "") == 0.0
    assert m.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert m.rouge(["a b c"], ["a b c"], "rougeL") == [pytest.approx(1.0)]
    rows, ece = m.calibration_bins([0.95, 0.95, 0.55, 0.55], [True, True, True, False])
    assert ece == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert [r[2] for r in rows] == [2, 2]


# -- task files ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "q", "choices": ["a", "b"], "answer": 2}'], "line 1: field 'answer' is 2"),
        (['{"question": "q", "choices": ["a"], "answer": 0}'], "line 1: field 'choices'"),
        (["", '{"prompt": "p"}'], "line 2: field 'answer' must be a non-empty string"),
        (['{"prompt": "p", "answer": "a"}', "{oops"], "line 2: not valid JSON"),
        (['{"messages": [{"role": "user", "content": "hi"}]}'], "field 'messages' must be"),
        (
            [
                json.dumps(
                    {
                        "messages": [
                            {"role": "assistant", "content": "a"},
                            {"role": "user", "content": "q"},
                        ]
                    }
                )
            ],
            "the last message must be the assistant's reference answer",
        ),
        (
            ['{"prompt": "p", "answer": "a"}', '{"text": "t"}'],
            "line 2: a perplexity record in a generation task",
        ),
        (['{"foo": 1}'], "line 1: no task fields"),
        ([], "has no examples"),
    ],
)
def test_bad_task_files_name_the_file_line_and_field(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = tmp_path / "task.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_unknown_task_lists_the_samples_and_yaml_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"unknown task 'nope'.*arithmetic, capitals"):
        load_task("nope")
    (tmp_path / "d.jsonl").write_text('{"prompt": "p", "answer": "a"}\n')
    bad = tmp_path / "t.yaml"
    bad.write_text("path: d.jsonl\nmetrics: [accuracy]\nkind: generation\n")
    with pytest.raises(TaskError, match=r"t.yaml: metrics: .*allowed: exact_match, f1"):
        load_task(bad)
    bad.write_text("path: d.jsonl\nshots: 2\n")
    with pytest.raises(TaskError, match="shots: Extra inputs are not permitted"):
        load_task(bad)
    bad.write_text("path: d.jsonl\nextraction: regex\n")
    with pytest.raises(TaskError, match="extraction=regex needs `pattern`"):
        load_task(bad)
    for template in ("'Q: {prompt.__class__}'", "'{0}'", "'{foo}'"):
        bad.write_text(f"path: d.jsonl\nprompt: {template}\n")
        with pytest.raises(TaskError, match=r"prompt: field \{.*\} is not allowed"):
            load_task(bad)


def test_sample_tasks_load_and_prompts_are_deterministic() -> None:
    from lmfast.evaluation.tasks import sample_tasks

    assert set(sample_tasks()) == {"arithmetic", "capitals", "definitions", "prose", "reading"}
    kinds = {name: load_task(name).kind for name in sample_tasks()}
    assert kinds["capitals"] == "multiple_choice" and kinds["prose"] == "perplexity"
    task = load_task("capitals")
    task.spec.few_shot = 2
    ex = task.examples[5]
    assert task.mc_prompt(ex) == task.mc_prompt(ex)
    assert task.mc_prompt(ex).count("Question:") == 3
    assert task.mc_prompt(ex).endswith(f"Question: {ex.question}\nAnswer:")


# -- perplexity ---------------------------------------------------------------------------
def _direct_perplexity(folder: Path, text: str, window: int, stride: int) -> float:
    """transformers' perplexity guide, token-exact: sum of NLL over every scored token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ids = tok(text, return_tensors="pt").input_ids
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, ids.size(1), stride):
        end = min(begin + window, ids.size(1))
        target_len = end - prev_end
        inputs = ids[:, begin:end]
        targets = inputs.clone()
        targets[:, :-target_len] = -100
        with torch.no_grad():
            logits = model(inputs).logits[:, :-1]
        labels = targets[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100,
            reduction="sum",
        )  # fmt: skip
        nll += float(loss)
        count += int((labels != -100).sum())
        prev_end = end
        if end == ids.size(1):
            break
    return math.exp(nll / count)


def test_perplexity_matches_a_direct_transformers_computation(
    tiny_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    from lmfast.evaluation.runner import run_task
    from lmfast.evaluation.scorers import load_scorer

    text = (Path(__file__).parents[1] / "lmfast/evaluation/samples/prose.txt").read_text()
    (tmp_path / "prose.txt").write_text(text)
    (tmp_path / "ppl.yaml").write_text("path: prose.txt\nwindow: 96\nstride: 40\n")
    scorer = load_scorer(str(tiny_pair[0]), batch_size=4)
    score, records = run_task(scorer, load_task(tmp_path / "ppl.yaml"))
    expected = _direct_perplexity(tiny_pair[0], text, 96, 40)
    assert score.metrics["perplexity"] == pytest.approx(expected, rel=0.005)
    assert score.metrics["tokens"] == len(scorer.encode(text)) - 1  # all but the first token
    assert records[0]["perplexity"] == pytest.approx(score.metrics["perplexity"])


@pytest.mark.slow
def test_gguf_perplexity_through_llama_cpp_matches_transformers() -> None:
    """The embedded GGUF scored with llama.cpp's own logits vs the same file dequantized into
    transformers: the same numbers up to llama.cpp's quantized matmuls (well under 1 %)."""
    from lmfast.evaluation.runner import run_task
    from lmfast.evaluation.scorers import load_scorer

    task = load_task("prose")
    values = {}
    for backend in ("llamacpp", "transformers"):
        scorer = load_scorer(None, backend=backend)  # type: ignore[arg-type]
        values[backend] = run_task(scorer, task)[0].metrics
        scorer.close()
    assert values["llamacpp"]["tokens"] == values["transformers"]["tokens"]
    assert values["llamacpp"]["perplexity"] == pytest.approx(
        values["transformers"]["perplexity"], rel=0.01
    )


# -- three routes to the same accuracy ----------------------------------------------------
@pytest.mark.slow
def test_native_harness_class_and_local_completions_agree(tmp_path: Path) -> None:
    """One multiple-choice task scored by LMFast, by lm_eval through LMFast's model class,
    and by lm_eval's own local-completions model against `lmfast serve`; a generation task
    by LMFast and by lm_eval's local-chat-completions against the server."""
    from lm_eval.models.openai_completions import LocalChatCompletion, LocalCompletionsAPI

    from lmfast.config import ServeConfig
    from lmfast.evaluation.harness import LMFastLM, local_task_yaml, run_harness
    from lmfast.evaluation.runner import run_task
    from lmfast.evaluation.scorers import load_scorer
    from lmfast.serving import build_app
    from tests.server_utils import running

    task = load_task("capitals")
    scorer = load_scorer(None, batch_size=4)
    # The first 12 questions on every route: the routes agree question by question, and the
    # served route costs a request per choice.
    native, records = run_task(scorer, task, limit=12)
    name = local_task_yaml(task, tmp_path)
    through_class = run_harness(LMFastLM(scorer=scorer), [name], include_path=tmp_path, limit=12)[
        name
    ]
    arithmetic = load_task("arithmetic")
    native_gen, _ = run_task(scorer, arithmetic, limit=8)
    gen_name = local_task_yaml(arithmetic, tmp_path)
    scorer.close()
    with running(build_app(None, ServeConfig(max_concurrency=4, context_length=2048))) as url:
        api = LocalCompletionsAPI(
            base_url=f"{url}/v1/completions", model="smollm2-135m-instruct", max_retries=1
        )
        assert api.tokenizer_backend == "remote"  # our /tokenize: no separate tokenizer copy
        served = run_harness(api, [name], include_path=tmp_path, limit=12)[name]
        # Generation through the harness's chat model against /v1/chat/completions.
        chat_api = LocalChatCompletion(
            base_url=f"{url}/v1/chat/completions", model="smollm2-135m-instruct", max_retries=1
        )
        served_gen = run_harness(
            chat_api, [gen_name], include_path=tmp_path, limit=8, apply_chat_template=True
        )[gen_name]
    assert served_gen["exact_match"] == pytest.approx(native_gen.metrics["exact_match"])
    assert 0.3 < native.metrics["accuracy"] < 1.0  # a real signal, not all or nothing
    for ours, theirs in (("accuracy", "acc"), ("accuracy_norm", "acc_norm")):
        assert through_class[theirs] == pytest.approx(native.metrics[ours])
        assert served[theirs] == pytest.approx(native.metrics[ours])
    assert len(records) == 12


@pytest.mark.slow
def test_tokenizer_routes_and_eos_logprob_for_harness_clients() -> None:
    import httpx

    from lmfast.config import ServeConfig
    from lmfast.serving import build_app
    from tests.server_utils import running

    with running(build_app(None, ServeConfig(max_concurrency=2, context_length=1024))) as url:
        info = httpx.get(f"{url}/tokenizer_info").json()
        assert info["eos_token"] == "<|im_end|>" and "{% for message" in info["chat_template"]
        ids = httpx.post(f"{url}/tokenize", json={"prompt": "Hello world"}).json()["tokens"]
        text = httpx.post(f"{url}/detokenize", json={"tokens": ids}).json()["prompt"]
        assert text == "Hello world"
        bad = httpx.post(f"{url}/detokenize", json={"tokens": [10**9]})
        assert bad.status_code == 400 and "tokens" in bad.text
        # A prompt whose greedy continuation is the end token: the completion still reports
        # one generated token's logprob, as OpenAI and vLLM do (lm-eval slices [ctx:-1]).
        chat = "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\nHi!"
        body = {
            "model": "smollm2-135m-instruct",
            "prompt": chat,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": 1,
            "echo": True,
        }
        out = httpx.post(f"{url}/v1/completions", json=body).json()["choices"][0]
        n_prompt = len(httpx.post(f"{url}/tokenize", json={"prompt": chat}).json()["tokens"])
        assert len(out["logprobs"]["token_logprobs"]) == n_prompt + 1


# -- reports, determinism, faces ----------------------------------------------------------
def _request(models: list[str], tasks: list[str], **kw: Any) -> Any:
    from lmfast.evaluation import EvaluateRequest

    return EvaluateRequest(models=models, tasks=tasks, tracker="none", **kw)


def test_comparison_report_with_plots_and_disagreements(
    tiny_pair: tuple[Path, Path], task_files: dict[str, Path]
) -> None:
    from lmfast.artifacts import ArtifactStore
    from lmfast.evaluation import evaluate

    tasks = [str(task_files[k]) for k in ("mc", "gen", "text")]
    result = evaluate(_request([str(p) for p in tiny_pair], tasks, efficiency=True))
    assert [r.label for r in result.models] == ["a", "b"]
    art = ArtifactStore().get(result.artifact_id)
    assert art.manifest.kind == "report"
    assert set(art.manifest.parents) >= {str(tiny_pair[0]), str(task_files["mc"])}
    folder = Path(result.path)
    report = (folder / "report.md").read_text()
    assert "| mc | accuracy |" in report and "| text | perplexity |" in report
    for plot in ("tasks.png", "calibration.png"):
        assert (folder / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a = [json.loads(x) for x in (folder / "examples/a.mc.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (folder / "examples/b.mc.jsonl").read_text().splitlines()]
    differing = sum(x["correct"] != y["correct"] for x, y in zip(a, b, strict=True))
    listed = []
    if (folder / "disagreements.jsonl").exists():
        listed = [json.loads(x) for x in (folder / "disagreements.jsonl").read_text().splitlines()]
    assert len([d for d in listed if d["task"] == "mc"]) == differing
    assert result.disagreements == len(listed)
    eff = result.models[0].efficiency
    assert eff["peak_memory_gb"] > 0 and eff["time_to_first_token_s"] > 0
    scores = {t.task: t for t in result.models[0].tasks}
    assert scores["mc"].examples == 6 and 0 <= scores["mc"].metrics["accuracy"] <= 1
    assert scores["text"].metrics["perplexity"] > 1

    again = evaluate(_request([str(tiny_pair[0])], tasks, efficiency=False))
    assert [t.metrics for t in again.models[0].tasks] == [t.metrics for t in result.models[0].tasks]


def test_evaluate_refuses_bad_requests_before_loading_models(task_files: dict[str, Path]) -> None:
    from pydantic import ValidationError

    from lmfast.evaluation import evaluate

    with pytest.raises(ValidationError, match="give at least one task"):
        _request(["smollm2-135m-instruct"], [])
    with pytest.raises(TaskError, match="unknown task"):
        evaluate(_request(["no-such-model-anywhere"], ["missing.jsonl"]))


def test_mlflow_gets_the_results(
    tiny_pair: tuple[Path, Path], task_files: dict[str, Path], lmfast_home: Path
) -> None:
    import mlflow

    from lmfast.evaluation import EvaluateRequest, evaluate

    evaluate(
        EvaluateRequest(
            models=[str(tiny_pair[0])],
            tasks=[str(task_files["mc"])],
            efficiency=False,
            tracker="mlflow",
        )
    )
    mlflow.set_tracking_uri(f"sqlite:///{lmfast_home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["lmfast"], output_format="list")
    assert runs and "final_a.mc.accuracy" in runs[0].data.metrics
    assert runs[0].data.tags["lmfast.kind"] == "evaluate"


def test_cli_eval_json(tiny_pair: tuple[Path, Path], task_files: dict[str, Path]) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "lmfast", "eval", str(tiny_pair[0]), "--tasks",
         f"{task_files['mc']},{task_files['gen']}", "--limit", "3", "--tracker", "none",
         "--no-efficiency", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [t["examples"] for t in result["models"][0]["tasks"]] == [3, 3]
    bad = subprocess.run(
        [sys.executable, "-m", "lmfast", "eval", str(tiny_pair[0]), "--tasks", "nope", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        bad.returncode == 2 and "unknown task 'nope'" in json.loads(bad.stdout)["error"]["message"]
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_evaluate_runs_as_a_job(
    tiny_pair: tuple[Path, Path], task_files: dict[str, Path], anyio_backend: str, monkeypatch: Any
) -> None:
    from lmfast.mcp_server import build_server
    from mcp import Client

    monkeypatch.setenv(
        "LMFAST_MCP_ROOTS", str(task_files["mc"].parent) + ":" + str(tiny_pair[0].parent)
    )
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, total, message))

    async with Client(build_server()) as client:
        result = await client.call_tool(
            "evaluate",
            {"models": [str(tiny_pair[0])], "tasks": [str(task_files["mc"]), "prose"],
             "efficiency": False, "wait": True},
            progress_callback=on_progress,
        )  # fmt: skip
        assert not result.is_error, result.content
        out = result.structured_content
        assert out["status"] == "succeeded"
        assert out["result"]["artifact_id"].startswith("report-")
        assert [t["task"] for t in out["result"]["models"][0]["tasks"]] == ["mc", "prose"]
        bad = await client.call_tool(
            "evaluate", {"models": [str(tiny_pair[0])], "tasks": ["/etc/passwd"]}
        )
        assert bad.is_error and "allowed root" in " ".join(c.text for c in bad.content)
        # A task YAML inside a root naming data outside it is refused before the data is read.
        sneaky = task_files["mc"].parent / "sneaky.yaml"
        sneaky.write_text("path: /etc/hostname\nkind: perplexity\n")
        bad = await client.call_tool(
            "evaluate", {"models": [str(tiny_pair[0])], "tasks": [str(sneaky)]}
        )
        text = " ".join(c.text for c in bad.content)
        assert bad.is_error and "(its data file)" in text and "outside the allowed roots" in text
    # Progress is polled from the job store: a tiny model may finish between two polls, so
    # only the shape is asserted here (per-example steps are covered by the CLI bar).
    values = [v for v, _, _ in progress]
    assert values == sorted(values) and progress[-1][0] == progress[-1][1] == 8  # 6 + 1 + 1
    assert any(m == "loading a" for _, _, m in progress)


def test_harness_tasks_through_evaluate_match_the_native_score(
    tiny_pair: tuple[Path, Path], task_files: dict[str, Path], tmp_path: Path
) -> None:
    from lmfast.evaluation import evaluate
    from lmfast.evaluation.harness import local_task_yaml

    name = local_task_yaml(load_task(task_files["mc"]), tmp_path)
    result = evaluate(
        _request(
            [str(tiny_pair[0])],
            [str(task_files["mc"])],
            harness_tasks=[name],
            harness_include=str(tmp_path),
            efficiency=False,
        )
    )
    model = result.models[0]
    assert model.harness[name]["acc"] == pytest.approx(model.tasks[0].metrics["accuracy"])
    assert model.harness[name]["acc_norm"] == pytest.approx(model.tasks[0].metrics["accuracy_norm"])
    assert "## lm-evaluation-harness" in result.report
    from lmfast.errors import LMFastError

    with pytest.raises(LMFastError, match="unknown lm-evaluation-harness task"):  # before loading
        evaluate(_request(["no-such-model-anywhere"], [], harness_tasks=["no_such_task_here"]))
