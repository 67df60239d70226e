"""Pretraining from scratch: tokenizer training, model templates, method=pretrain (Llama and
T5), 2 processes on gloo against 1, hyper-parameter search, bad input, and the CLI and MCP
faces."""

from __future__ import annotations

import json
import os
import random
import re
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from lmfast.config import load_config
from lmfast.data.readers import DataError
from lmfast.errors import ConfigError, PlanError

WORDS = re.findall(
    r"\w+",
    "the model reads text and learns which token comes next while the loss falls slowly "
    "over many steps on two small cores with a fresh tokenizer",
)
VARIED = [
    "Ünïcödé façade, naïve café — «quotes» and 日本語のテキスト",
    "emoji 🙂🚀 and 👩‍💻 joined",
    "whitespace   runs\t\ttabs\n\n\nnewlines    end  ",
    "numbers 3.14159 and 1,000,000 and 2026-11-22",
    "def f(x):\n    return {'k': [x ** 2 for _ in range(3)]}  # code",
]


def _corpus(path: Path, n: int = 600, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 70)))
            f.write(json.dumps({"id": i, "text": f"{words}. {VARIED[i % len(VARIED)]}"}) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _corpus(tmp_path_factory.mktemp("corpus") / "docs.jsonl")


@pytest.fixture(scope="module")
def tokenizer_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokenizer_home")


@pytest.fixture
def bpe(corpus: Path, tokenizer_home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A 400-token byte-level BPE trained once; its artifact is copied into each test's home."""
    import shutil

    from lmfast.artifacts import ArtifactStore
    from lmfast.training.tokenizer import TokenizerTrainRequest, train_tokenizer

    cached = list((tokenizer_home / "artifacts").glob("tokenizer-*"))
    if not cached:
        with monkeypatch.context() as m:
            m.setenv("LMFAST_HOME", str(tokenizer_home))
            train_tokenizer(TokenizerTrainRequest(corpus=[str(corpus)], vocab_size=400))
        cached = list((tokenizer_home / "artifacts").glob("tokenizer-*"))
    home = Path(os.environ["LMFAST_HOME"]) / "artifacts"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(cached[0], home / cached[0].name, dirs_exist_ok=True)
    assert ArtifactStore().exists(cached[0].name)
    return cached[0].name


def _pretrain(data: Path | str, tokenizer: str, *extra: str) -> Any:
    return load_config(
        None,
        [
            "training.method=pretrain",
            "model.template=tiny",
            "model.template_overrides={hidden_size: 64, intermediate_size: 128, "
            "num_hidden_layers: 2}",
            f"model.tokenizer={tokenizer}",
            f"data.path={data}",
            "training.max_seq_length=64",
            "training.micro_batch_size=4",
            "training.effective_batch_size=8",
            "training.learning_rate=3e-3",
            "training.tracker=none",
            "training.logging_steps=1",
            *extra,
        ],
    )


def _losses(result: Any) -> list[float]:
    history = json.loads((Path(result.path) / "log_history.json").read_text())
    return [h["loss"] for h in history if "loss" in h]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- tokenizer ---------------------------------------------------------------------------


def test_trained_bpe_round_trips_any_text_and_loads_in_transformers(bpe: str, corpus: Path) -> None:
    from transformers import AutoTokenizer

    from lmfast.artifacts import ArtifactStore
    from lmfast.data import PrepRequest, prep_dataset
    from lmfast.data.tokenize import open_tokens

    art = ArtifactStore().get(bpe)
    assert art.manifest.kind == "tokenizer"
    tok = AutoTokenizer.from_pretrained(art.path)
    assert 300 < len(tok) <= 400
    for text in [
        *VARIED,
        "never seen: Ωμέγα ₿ \U0001d518\U0001d52b \u200b zero-width",
        "the model learns",
    ]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert tok.decode(tok("the model learns")["input_ids"]) == "the model learns"
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert len(tok("<|im_start|>", add_special_tokens=False)["input_ids"]) == 1
    # Compression was measured on held-out documents, beside the embedded tokenizer.
    metrics = art.manifest.metrics
    assert metrics["bytes_per_token"] > 1.5 and metrics["reference_bytes_per_token"] > 1.5
    # prep_dataset tokenizes with it like with any model's tokenizer.
    prepped = prep_dataset(PrepRequest(inputs=[str(corpus)], tokenizer=bpe, seq_len=64))
    arrays = open_tokens(ArtifactStore().get(prepped.artifact_id).path / "tokens")
    assert int(arrays.input_ids.max()) < len(tok) and arrays.index["tokenizer"] == bpe


def test_unigram_tokenizer_trains_on_the_corpus(corpus: Path) -> None:
    from transformers import AutoTokenizer

    from lmfast.training.tokenizer import TokenizerTrainRequest, train_tokenizer

    result = train_tokenizer(
        TokenizerTrainRequest(corpus=[str(corpus)], vocab_size=300, model="unigram")
    )
    tok = AutoTokenizer.from_pretrained(result.path)
    text = "the model reads text and learns"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and len(ids) < len(text) / 2  # whole words, not letters
    assert result.bytes_per_token and result.held_out_documents > 0


def test_bad_tokenizer_input_is_named(tmp_path: Path) -> None:
    from lmfast.training.tokenizer import TokenizerTrainRequest, train_tokenizer

    with pytest.raises(ValidationError, match="byte alphabet"):
        TokenizerTrainRequest(corpus=["x.jsonl"], vocab_size=200)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n".join(json.dumps({"text": "   "}) for _ in range(5)) + "\n")
    with pytest.raises(DataError, match="no text"):
        train_tokenizer(TokenizerTrainRequest(corpus=[str(empty)], vocab_size=300))
    with pytest.raises(DataError, match="does not exist"):
        train_tokenizer(TokenizerTrainRequest(corpus=[str(tmp_path / "missing.jsonl")]))


# -- templates ---------------------------------------------------------------------------


def test_each_template_has_its_stated_parameter_count_and_runs() -> None:
    import torch
    from transformers import LlamaForCausalLM, T5ForConditionalGeneration

    from lmfast.training.templates import builtin_templates

    templates = builtin_templates()
    assert {"tiny", "small", "base", "t5-small"} <= set(templates)
    for template in templates.values():
        assert template.count_parameters() == template.parameters, template.name
    assert 4e6 < templates["tiny"].parameters < 6e6  # type: ignore[operator]
    assert 25e6 < templates["small"].parameters < 35e6  # type: ignore[operator]
    assert 110e6 < templates["base"].parameters < 140e6  # type: ignore[operator]
    tiny = templates["tiny"].build()
    assert isinstance(tiny, LlamaForCausalLM)
    cfg = tiny.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # grouped-query attention
    assert cfg.hidden_act == "silu" and "rope_theta" in str(cfg.to_dict())  # SwiGLU, RoPE
    out = tiny(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True)
    assert out.past_key_values is not None  # KV cache
    t5 = templates["t5-small"].build(overrides={"d_model": 32, "d_ff": 64, "num_layers": 1})
    assert isinstance(t5, T5ForConditionalGeneration)


def test_templates_list_shows_counts_and_plan_estimates() -> None:
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    listed = CliRunner().invoke(app, ["templates", "list", "--profile", "t4", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["small"]["parameters"] == rows["small"]["stated_parameters"]
    assert rows["base"]["peak_memory_gb"] > rows["tiny"]["peak_memory_gb"] > 0
    assert rows["base"]["tokens_per_second"] < rows["tiny"]["tokens_per_second"]
    assert "T4" in rows["tiny"]["hardware"]


# -- pretraining -------------------------------------------------------------------------


def test_pretraining_loss_falls_and_the_model_generates(bpe: str, corpus: Path) -> None:
    from typer.testing import CliRunner

    from lmfast.artifacts import ArtifactStore
    from lmfast.cli.app import app
    from lmfast.training.finetune import FineTuneRequest, fine_tune

    config = _pretrain(corpus, bpe, "training.max_steps=40", "data.validation_split=0.1")
    result = fine_tune(FineTuneRequest(config=config))
    losses = _losses(result)
    assert losses[0] > 5.0 and losses[-1] < losses[0] - 1.5, losses
    assert result.kind == "model" and result.metrics["trainable_ratio"] == 1.0
    assert result.metrics["eval_loss"] < losses[0]
    manifest = ArtifactStore().get(result.artifact_id).manifest
    assert manifest.parents[0] == bpe and manifest.extra["template"] == "tiny"
    assert manifest.extra["base_model"] is None
    assert Path(result.loss_curve or "").read_bytes()[:4] == b"\x89PNG"
    # The run's metrics over time, and their dashboard beside the loss curve.
    logged = [h for h in json.loads((Path(result.path) / "log_history.json").read_text())
              if "loss" in h]  # fmt: skip
    for key in ("learning_rate", "grad_norm", "tokens_per_second", "peak_memory_gb"):
        assert all(h[key] > 0 for h in logged[1:]), key
    assert (Path(result.path) / "training_metrics.png").read_bytes()[:4] == b"\x89PNG"

    out = CliRunner().invoke(
        app,
        ["generate", "the model", "-m", result.artifact_id, "--backend", "transformers",
         "--max-tokens", "8", "--temperature", "0", "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    reply = json.loads(out.stdout)
    assert reply["completion_tokens"] > 0 and reply["backend"] == "transformers"


def test_t5_template_pretrains_with_span_corruption(bpe: str, corpus: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM

    from lmfast.data.tokenize import load_tokenizer
    from lmfast.training.finetune import FineTuneRequest, fine_tune
    from lmfast.training.pretrain import SpanCorruption, noise_spans

    rng = np.random.default_rng(0)
    mask = noise_spans(200, rng, 0.15, 3.0)
    assert mask.sum() == 30 and not mask[0]
    ids = np.arange(10, 110)
    source, target = SpanCorruption(vocab=1000, eos=1, pad=0, seed=3).corrupt(ids, row=7)
    assert source[-1] == target[-1] == 1 and len(source) < len(ids)
    # Putting each sentinel's span back into the source gives the original sequence.
    spans: dict[int, list[int]] = {}
    for token in target[:-1]:
        if token >= 1000:
            current = spans.setdefault(token, [])
        else:
            current.append(token)
    rebuilt = [t for s in source[:-1] for t in (spans[s] if s >= 1000 else [s])]
    assert rebuilt == ids.tolist()

    config = _pretrain(
        corpus, bpe, "training.max_steps=12", "data.validation_split=0.1",
        "model.template=t5-small",
        "model.template_overrides={d_model: 32, d_ff: 64, d_kv: 8, num_layers: 1, "
        "num_decoder_layers: 1, num_heads: 2}",
    )  # fmt: skip
    result = fine_tune(FineTuneRequest(config=config))
    losses = _losses(result)
    assert losses[-1] < losses[0] and np.isfinite(result.metrics["eval_loss"])
    model = AutoModelForSeq2SeqLM.from_pretrained(result.path)
    assert model.config.vocab_size == len(load_tokenizer(bpe)) + 100  # + T5's sentinels


def test_two_processes_match_one_and_their_checkpoints_resume_in_one(
    bpe: str, corpus: Path
) -> None:
    from lmfast.training.finetune import FineTuneRequest, fine_tune
    from lmfast.training.launch import LaunchSettings

    config = _pretrain(corpus, bpe, "training.max_steps=4", "training.save_steps=2")
    two = fine_tune(
        FineTuneRequest(
            config=config,
            run_id="two",
            launch=LaunchSettings(num_processes=2, main_process_port=_free_port()),
        )
    )
    one = fine_tune(FineTuneRequest(config=config, run_id="one"))
    assert two.metrics["processes"] == 2 and two.plan.gradient_accumulation_steps == 1
    assert one.plan.gradient_accumulation_steps == 2  # the same effective batch of 8
    assert np.allclose(_losses(two), _losses(one), atol=1e-4), (_losses(two), _losses(one))
    assert (Path(two.run_dir) / "checkpoints" / "checkpoint-4" / "rng_state_1.pth").is_file()

    longer = config.model_copy(deep=True)
    longer.training.max_steps = 6
    resumed = fine_tune(FineTuneRequest(config=longer, run_id="two"))
    assert resumed.resumed_from_step == 4 and resumed.metrics["steps"] == 6


def test_bad_pretraining_input_is_named(bpe: str, corpus: Path, tmp_path: Path) -> None:
    from lmfast.training.finetune import FineTuneRequest, fine_tune
    from lmfast.training.launch import LaunchSettings

    with pytest.raises(ConfigError, match=r"needs model\.template"):
        load_config(None, ["training.method=pretrain"])
    with pytest.raises(ConfigError, match="adapters need trained"):
        load_config(
            None, ["training.method=pretrain", "model.template=tiny", "training.lora.enabled=true"]
        )
    with pytest.raises(ConfigError, match="only apply to"):
        load_config(None, ["model.template=tiny"])
    wide = _pretrain(
        corpus, bpe, "model.template_overrides={hidden_size: 16384, num_hidden_layers: 64, "
        "intermediate_size: 65536, num_attention_heads: 64, num_key_value_heads: 8}",
    )  # fmt: skip
    with pytest.raises(PlanError, match=r"parameters and needs about .* GB"):
        fine_tune(FineTuneRequest(config=wide, profile="cpu"))
    with pytest.raises(ValueError, match=r"model\.template"):  # ConfigError or ValidationError
        fine_tune(FineTuneRequest(config=_pretrain(corpus, bpe, "model.template=nope.yaml")))
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        fine_tune(
            FineTuneRequest(
                config=_pretrain(corpus, bpe, "model.template_overrides={num_key_value_heads: 3}")
            )
        )
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n".join(json.dumps({"text": ""}) for _ in range(4)) + "\n")
    with pytest.raises(DataError):
        fine_tune(FineTuneRequest(config=_pretrain(blank, bpe, "training.max_steps=2")))
    with pytest.raises(ValidationError, match="multiple of num_machines"):
        LaunchSettings(num_processes=3, num_machines=2)


# -- search ------------------------------------------------------------------------------


def test_tune_runs_three_trials_writes_the_best_recipe_and_continues(
    bpe: str, corpus: Path
) -> None:
    from lmfast.training.tune import TuneRequest, tune

    base = _pretrain(
        corpus, bpe, "training.max_steps=6", "data.validation_split=0.2", "training.eval_steps=3"
    )
    request = TuneRequest(
        config=base,
        space={
            "training.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
            "model.template_overrides.num_hidden_layers": {"low": 1, "high": 2, "integer": True},
        },
        trials=3,
    )
    result = tune(request)
    assert len(result.trials) == 3
    done = [t for t in result.trials if t.state == "complete"]
    assert result.best_values[0] == min(t.values[0] for t in done if t.values)
    best = load_config(result.best_recipe)  # the best recipe is a valid recipe
    assert best.training.learning_rate == pytest.approx(
        result.best_params["training.learning_rate"]
    )
    assert best.model.template_overrides["num_hidden_layers"] in (1, 2)
    assert Path(result.plot).read_bytes()[:4] == b"\x89PNG"
    assert all(t.run_id and t.artifact_id for t in result.trials if t.state == "complete")
    more = tune(request.model_copy(update={"trials": 4}))  # the same study continues
    assert more.study == result.study and len(more.trials) == 4


def test_tune_with_two_objectives_gives_a_pareto_front(bpe: str, corpus: Path) -> None:
    from lmfast.training.tune import TuneRequest, tune

    base = _pretrain(corpus, bpe, "training.max_steps=3", "data.validation_split=0.2")
    result = tune(
        TuneRequest(
            config=base,
            space={"training.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}},
            trials=3,
            objectives=["eval_loss", "seconds"],
        )
    )
    assert result.pareto_trials and result.best_trial in result.pareto_trials
    with pytest.raises(ValidationError, match=r"space\.training\.nope"):
        TuneRequest(config=base, space={"training.nope": {"low": 1, "high": 2}})
    with pytest.raises(ValidationError, match="held-out"):
        TuneRequest(
            config=_pretrain(corpus, bpe),
            space={"training.learning_rate": {"low": 1e-4, "high": 1e-2}},
        )


# -- faces -------------------------------------------------------------------------------


def test_cli_trains_a_tokenizer_pretrains_and_tunes(corpus: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    runner = CliRunner()
    trained = runner.invoke(
        app, ["tokenizer", "train", str(corpus), "--vocab-size", "350", "--json"]
    )
    assert trained.exit_code == 0, trained.output
    tok = json.loads(trained.stdout)["artifact_id"]
    args = ["train", "--template", "tiny", "--tokenizer", tok, "-d", str(corpus),
            "--max-steps", "3", "--seq-len", "64", "training.tracker=none", "--json"]  # fmt: skip
    pretrained = runner.invoke(app, args)
    assert pretrained.exit_code == 0, pretrained.output
    assert json.loads(pretrained.stdout)["kind"] == "model"
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"training.learning_rate": {"choices": [1e-3, 3e-3]}}))
    tuned = runner.invoke(
        app,
        ["tune", "--space", str(space), "--trials", "2", "--sampler", "random",
         "training.method=pretrain", "model.template=tiny", f"model.tokenizer={tok}",
         f"data.path={corpus}", "data.validation_split=0.2", "training.max_steps=2",
         "training.max_seq_length=64", "training.tracker=none", "--json"],
    )  # fmt: skip
    assert tuned.exit_code == 0, tuned.output
    assert len(json.loads(tuned.stdout)["trials"]) == 2
    bad = runner.invoke(app, ["tokenizer", "train", str(corpus), "--vocab-size", "10"])
    assert bad.exit_code == 2 and "byte alphabet" in bad.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_trains_a_tokenizer_and_pretrains(
    corpus: Path, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmfast.mcp_server import build_server
    from mcp import Client

    monkeypatch.setenv("LMFAST_MCP_ROOTS", str(corpus.parent))
    async with Client(build_server()) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"train_tokenizer", "tune", "fine_tune"} <= names
        trained = await client.call_tool(
            "train_tokenizer", {"corpus": [str(corpus)], "vocab_size": 350, "wait": True}
        )
        assert not trained.is_error, trained.content
        tok = trained.structured_content["result"]["artifact_id"]
        run = await client.call_tool(
            "fine_tune",
            {"data": str(corpus), "method": "pretrain", "template": "tiny", "tokenizer": tok,
             "max_steps": 2, "max_seq_length": 64, "wait": True,
             "overrides": {"training.tracker": "none"}},
        )  # fmt: skip
        assert not run.is_error, run.content
        assert run.structured_content["result"]["kind"] == "model"
        bad = await client.call_tool(
            "fine_tune", {"data": str(corpus), "method": "pretrain", "template": "../x.yaml"}
        )
        assert bad.is_error and "template" in " ".join(c.text for c in bad.content)
        outside = await client.call_tool("train_tokenizer", {"corpus": ["/etc/passwd"]})
        assert outside.is_error


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_tune_searches_lora_settings_of_a_model(
    corpus: Path, tmp_path: Path, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmfast.mcp_server import build_server
    from mcp import Client

    from lmfast.training.tune import TuneRequest
    from tests.tiny_models import make_tiny_llama

    tiny = make_tiny_llama(tmp_path / "tiny")
    space = yaml.safe_load(
        (Path(__file__).parents[1] / "examples/search/lora_space.yaml").read_text()
    )
    assert TuneRequest(config=load_config(None, ["data.validation_split=0.1"]), space=space)
    monkeypatch.setenv("LMFAST_MCP_ROOTS", f"{corpus.parent}{os.pathsep}{tmp_path}")
    async with Client(build_server()) as client:
        tuned = await client.call_tool(
            "tune",
            {"data": str(corpus), "model": str(tiny), "trials": 2, "sampler": "random",
             "space": {"training.lora.rank": {"choices": [2, 4]},
                       "training.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}},
             "overrides": {"training.max_steps": 2, "training.max_seq_length": 64,
                           "training.tracker": "none"},
             "wait": True},
        )  # fmt: skip
        assert not tuned.is_error, tuned.content
        result = tuned.structured_content["result"]
        assert len(result["trials"]) == 2 and result["best_params"]["training.lora.rank"] in (2, 4)
        assert all(t["artifact_id"].startswith("adapter-") for t in result["trials"])
        blocked = await client.call_tool(
            "tune",
            {"data": str(corpus), "space": {"data.path": {"choices": ["/etc/passwd"]}}},
        )
        assert blocked.is_error and "data.path" in " ".join(c.text for c in blocked.content)
