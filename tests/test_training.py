"""fine_tune on tiny models the tests build: learning, masking, resume after SIGKILL, merge,
the planner's T4 choices, bad input, and the MCP tool as a job."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmfast.config import load_config
from lmfast.data.readers import DataError
from lmfast.errors import ConfigError, LMFastError, PlanError
from tests.tiny_models import make_tiny_llama

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama (hidden 32) with the embedded model's tokenizer and chat template."""
    return make_tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "chats.jsonl"
    with open(path, "w") as f:
        for _ in range(120):
            a, b = rng.randint(1, 50), rng.randint(1, 50)
            turns = [
                {"role": "user", "content": f"Add {a} and {b}."},
                {"role": "assistant", "content": f"{a + b}"},
            ]
            f.write(json.dumps({"messages": turns}) + "\n")
    return path


def _request(model: Path, data: Path | str, *extra: str, **kw: Any) -> Any:
    from lmfast.training import FineTuneRequest

    cfg = load_config(
        None,
        [
            f"model.reference={model}",
            f"data.path={data}",
            "training.max_seq_length=128",
            "training.learning_rate=0.01",
            "training.logging_steps=1",
            "training.micro_batch_size=4",
            "training.gradient_accumulation_steps=1",
            "training.warmup_ratio=0",
            "training.tracker=none",  # the MLflow test below turns it on
            *extra,
        ],
    )
    return FineTuneRequest(config=cfg, **kw)


def test_lora_loss_falls_and_every_trainable_parameter_changes(tiny: Path, chats: Path) -> None:
    import torch
    from transformers import set_seed

    from lmfast.hardware import detect_hardware
    from lmfast.plan import plan_training
    from lmfast.registry import model_spec, resolve_model
    from lmfast.training import fine_tune
    from lmfast.training.model import build

    request = _request(tiny, chats, "training.max_steps=30")
    result = fine_tune(request)
    history = json.loads(Path(result.path, "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) >= 10 and np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    assert Path(result.loss_curve or "").is_file() and result.kind == "adapter"

    cfg = request.config
    set_seed(cfg.training.seed)
    plan = plan_training(cfg, detect_hardware(), model_spec(str(tiny)))
    initial = build(resolve_model(str(tiny)), cfg, plan).model
    before = {n: p.detach().clone() for n, p in initial.named_parameters() if p.requires_grad}
    from safetensors.torch import load_file

    after = load_file(str(Path(result.path, "adapter_model.safetensors")))
    assert len(after) == len(before) > 0
    for name, value in after.items():
        key = next(k for k in before if k.startswith(name.removesuffix(".weight")))
        assert not torch.allclose(before[key], value), f"{name} did not change"
    manifest = json.loads(Path(result.path, "manifest.json").read_text())
    assert manifest["parents"] == [str(tiny.resolve()), result.dataset_artifact]
    assert 0 < result.metrics["trainable_ratio"] < 0.1


def test_sft_masks_prompts_and_cpt_trains_every_token(tiny: Path, chats: Path) -> None:
    from lmfast.data.tokenize import IGNORE, load_tokenizer
    from lmfast.training.data import RowDataset, prepare

    tok = load_tokenizer(str(tiny))
    sft = prepare(_request(tiny, chats).config, tok, 512)
    row = RowDataset(sft, sft.train_rows)[0]
    n = row["length"]
    trained = row["labels"][:n] != IGNORE
    assert 0 < trained.sum() < n / 3  # answers only: the prompt and template are masked
    text = tok.decode(row["input_ids"][:n][trained])
    assert "Add" not in text and "<|im_end|>" in text
    cpt = prepare(_request(tiny, chats, "training.method=cpt").config, tok, 512)
    row = RowDataset(cpt, cpt.train_rows)[0]
    n = row["length"]
    assert (row["labels"][:n] == row["input_ids"][:n]).all() and (row["labels"][n:] == IGNORE).all()


_RUN = """
import sys, json
from lmfast.training import fine_tune, FineTuneRequest
req = FineTuneRequest.model_validate_json(sys.argv[1])
print(json.dumps(fine_tune(req).metrics))
"""


@pytest.mark.slow
def test_sigkill_mid_run_resumes_to_the_same_final_loss(
    tiny: Path, chats: Path, lmfast_home: Path
) -> None:
    args = ("training.max_steps=16", "training.save_steps=4", "training.lora.dropout=0.1")
    killed = _request(tiny, chats, *args, run_id="killed")
    env = {**os.environ, "LMFAST_HOME": str(lmfast_home)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN, killed.model_dump_json()], env=env, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    marker = lmfast_home / "runs" / "killed" / "checkpoints" / "checkpoint-8" / ".complete"
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from lmfast.training import fine_tune

    resumed = fine_tune(killed)
    assert resumed.resumed_from_step is not None and resumed.resumed_from_step >= 8
    straight = fine_tune(_request(tiny, chats, *args, run_id="straight"))
    assert straight.resumed_from_step is None
    assert abs(resumed.metrics["last_logged_loss"] - straight.metrics["last_logged_loss"]) < 1e-4


@pytest.mark.parametrize("lora", [True, False])
def test_out_of_memory_halves_the_micro_batch_and_trains_the_same_run(
    tiny: Path, chats: Path, monkeypatch: pytest.MonkeyPatch, lora: bool
) -> None:
    """A micro-batch of 4 that does not fit runs as 2 x 2 from the same step on; the run ends
    where the one that fitted ends (same effective batch, same updates)."""
    import torch

    from lmfast.training import fine_tune
    from lmfast.training import trainer as trainer_module

    steps = ["training.max_steps=4", "model.dtype=float32", f"training.lora.enabled={lora}"]
    reference = fine_tune(_request(tiny, chats, *steps, run_id=f"fits-{lora}"))
    real = trainer_module.masked_lm_loss
    calls: list[int] = []

    def small_memory(model: Any, inputs: dict[str, Any], num_items: Any = None) -> Any:
        rows = inputs["input_ids"].shape[0]
        calls.append(rows)
        if rows > 2 and len(calls) > 2:  # the first steps fit, then memory runs short
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, inputs, num_items)

    monkeypatch.setattr(trainer_module, "masked_lm_loss", small_memory)
    messages: list[str] = []
    result = fine_tune(
        _request(tiny, chats, *steps, run_id=f"oom-{lora}"),
        progress=lambda done, total, message, **kw: messages.append(message or ""),
    )
    assert result.metrics["oom_splits"] == 2 and result.metrics["steps"] == 4
    assert 2 in calls and max(calls) == 4
    assert any("out of memory at step 3: micro-batch 4 -> 2 rows" in m for m in messages)
    assert result.metrics["train_loss"] == pytest.approx(reference.metrics["train_loss"], rel=1e-4)


def test_merged_model_equals_base_plus_adapter(tiny: Path, chats: Path) -> None:
    import torch

    from lmfast.loading import load_transformers
    from lmfast.training import MergeRequest, fine_tune, merge_adapter

    adapter = fine_tune(_request(tiny, chats, "training.max_steps=6"))
    merged = merge_adapter(MergeRequest(adapter=adapter.artifact_id))
    peft_model, tok = load_transformers(adapter.artifact_id)
    full, _ = load_transformers(merged.artifact_id)
    ids = tok("Add 3 and 4.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a, b = peft_model(ids).logits, full(ids).logits
    scale = a.abs().max().item()
    assert (a - b).abs().max().item() <= 1e-5 * scale  # float32 rounding, nothing more
    base, _ = load_transformers(str(tiny))
    with torch.no_grad():  # the adapter did something
        assert (base(ids).logits - b).abs().max().item() > 1e-3 * scale
    assert merged.base_model == str(tiny.resolve())


def test_t4_plan_reaches_the_trainer_arguments(tmp_path: Path) -> None:
    from lmfast.defaults import derive
    from lmfast.hardware import PROFILES
    from lmfast.plan import plan_training
    from lmfast.registry import model_spec
    from lmfast.training.finetune import _training_args

    cfg = load_config(REPO / "examples" / "smollm2_lora_t4.yaml")
    spec = model_spec(cfg.model.reference)
    cfg = derive(cfg, None, "sft", spec.parameters).config  # the rate the recipe leaves open
    plan = plan_training(cfg, PROFILES["t4"], spec)
    args = _training_args(cfg, plan, tmp_path, [])
    assert plan.quantization == "nf4" and plan.gradient_checkpointing
    assert args.fp16 and not args.bf16 and args.optim == "paged_adamw_8bit"
    assert args.per_device_train_batch_size == plan.micro_batch_size
    assert args.gradient_accumulation_steps == plan.gradient_accumulation_steps
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 32
    assert args.max_steps == 500 and args.lr_scheduler_type == "cosine"


@pytest.mark.parametrize(("cpu_bf16", "dtype"), [(True, "bfloat16"), (False, "float32")])
def test_cpu_mixed_precision_follows_the_cpu(tmp_path: Path, cpu_bf16: bool, dtype: str) -> None:
    """AVX512-BF16 CPUs train with bfloat16 autocast (about 2x); others stay in float32."""
    from lmfast.hardware import PROFILES
    from lmfast.plan import plan_training
    from lmfast.registry import model_spec
    from lmfast.training.finetune import _training_args

    cfg = load_config(REPO / "examples" / "chat_sft_cpu.yaml")
    cpu = PROFILES["cpu"].model_copy(update={"cpu_bf16": cpu_bf16})
    plan = plan_training(cfg, cpu, model_spec(cfg.model.reference))
    args = _training_args(cfg, plan, tmp_path, [])
    assert plan.dtype == dtype and args.bf16 == cpu_bf16 and not args.fp16 and args.use_cpu


@pytest.mark.parametrize(
    ("extra", "profile", "error", "match"),
    [
        (["model.quantization=nf4"], None, PlanError, "needs a CUDA GPU"),
        (["model.dtype=bfloat16"], "t4", PlanError, "compute capability 8.0"),
        (["training.lora.rank=0"], None, ConfigError, "training.lora.rank"),
        (["training.max_seq_length=1024"], None, LMFastError, "context of 512"),
        (["training.lora.target_modules=[q_proj, nope]"], None, ConfigError, "k_proj"),
    ],
)
def test_bad_settings_are_named(
    tiny: Path, chats: Path, extra: list[str], profile: str | None, error: type, match: str
) -> None:
    from lmfast.training import fine_tune

    with pytest.raises(error, match=match):
        fine_tune(_request(tiny, chats, *extra, profile=profile))


def test_bad_data_is_named(tiny: Path, tmp_path: Path, chats: Path) -> None:

    from lmfast.data.tokenize import load_tokenizer
    from lmfast.training import fine_tune

    only_users = tmp_path / "users.jsonl"
    only_users.write_text(
        "\n".join(
            json.dumps({"messages": [{"role": "user", "content": f"Question {i} here?"}]})
            for i in range(5)
        )
    )
    with pytest.raises(DataError, match="every label"):
        fine_tune(_request(tiny, only_users))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="no records"):
        fine_tune(_request(tiny, empty))
    # A dataset tokenized with another vocabulary.
    other = tmp_path / "other"
    tok = load_tokenizer(str(tiny))
    tok.add_tokens(["<brand-new-token>"])
    tok.save_pretrained(other)
    (other / "config.json").write_text((tiny / "config.json").read_text())
    (other / "model.safetensors").symlink_to(tiny / "model.safetensors")
    from lmfast.data import PrepRequest, prep_dataset

    ds = prep_dataset(PrepRequest(inputs=[str(chats)], tokenizer=str(other), seq_len=128))
    with pytest.raises(DataError, match="vocabulary differs"):
        fine_tune(_request(tiny, ds.artifact_id))


def test_full_disk_keeps_the_previous_checkpoint(
    tiny: Path, chats: Path, lmfast_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Trainer

    from lmfast.training import fine_tune

    calls = {"n": 0}
    original = Trainer._save_optimizer_and_scheduler

    def flaky(self: Any, output_dir: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", flaky)
    request = _request(tiny, chats, "training.max_steps=8", "training.save_steps=3", run_id="full")
    with pytest.raises(LMFastError, match=r"disk full .* MB are needed"):
        fine_tune(request)
    checkpoints = lmfast_home / "runs" / "full" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-3"]
    assert (checkpoints / "checkpoint-3" / ".complete").is_file()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_fine_tune_job_with_progress_and_cancel(
    tiny: Path, chats: Path, lmfast_home: Path, anyio_backend: str, monkeypatch: Any
) -> None:
    import anyio
    from lmfast.mcp_server import build_server
    from mcp import Client

    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, total, message))

    monkeypatch.setenv("LMFAST_MCP_ROOTS", f"{tiny.parent}{os.pathsep}{chats.parent}")
    args = {"data": str(chats), "model": str(tiny), "max_seq_length": 128}
    async with Client(build_server()) as client:
        done = await client.call_tool(
            "fine_tune",
            {**args, "max_steps": 30, "overrides": {"training.logging_steps": 1}, "wait": True},
            progress_callback=on_progress,
        )
        out = done.structured_content
        assert not done.is_error, done.content
        assert out["status"] == "succeeded", out
        assert out["result"]["artifact_id"].startswith("adapter-")
        steps = [v for v, total, m in seen if total == 30 and m and "loss" in m]
        assert len(steps) >= 1 and steps == sorted(steps) and steps[-1] <= 30
        assert out["result"]["metrics"]["steps"] == 30
        assert any(m and "ETA" in m for _, _, m in seen)
        # too short to learn: said in the progress stream and in the result, with the fix
        (warning,) = out["result"]["warnings"]
        assert "only 30 optimizer steps" in warning and "training.max_steps" in warning
        assert any(m == f"warning: {warning}" for _, _, m in seen)
        assert any(m and m.startswith("plan: ") for _, _, m in seen)  # the derived rate

        started = await client.call_tool("fine_tune", {**args, "max_steps": 5000})
        job_id = started.structured_content["job_id"]
        for _ in range(600):
            status = (await client.call_tool("job_status", {"job_id": job_id})).structured_content
            if status["status"] == "running" and status["step"] >= 2:
                break
            await anyio.sleep(0.1)
        assert status["metrics"].get("loss") is not None
        assert any(n.startswith("plan: ") for n in status["notes"]), status  # kept, not replaced
        cancelled = await client.call_tool("cancel_job", {"job_id": job_id})
        assert cancelled.structured_content["status"] == "cancelled"
        bad = await client.call_tool("fine_tune", {**args, "lora_rank": 0})
        assert bad.is_error and "lora_rank" in " ".join(c.text for c in bad.content)
    adapters = list((lmfast_home / "artifacts").glob("adapter-*"))
    assert len(adapters) == 1  # the cancelled run left no artifact


def test_bare_defaults_derive_the_run_from_the_data(tiny: Path, chats: Path) -> None:
    """Nothing but a model and data: the sequence length, batch, epochs and rate come from
    the 120 short chats, with enough steps to learn and the reasons in the plan."""
    from typer.testing import CliRunner

    from lmfast.cli.app import app
    from lmfast.defaults import MIN_STEPS
    from lmfast.training import FineTuneRequest, fine_tune

    # `lmfast plan --data` shows what the run will choose, without training
    shown = CliRunner().invoke(app, ["plan", "-m", str(tiny), "-d", str(chats), "--json"])
    assert shown.exit_code == 0, shown.output
    preview = json.loads(shown.stdout)
    cfg = load_config(None, [f"model.reference={tiny}", f"data.path={chats}",
                             "training.tracker=none"])  # fmt: skip
    result = fine_tune(FineTuneRequest(config=cfg))
    plan = result.plan
    chosen = {c.setting: c.value for c in plan.choices}
    assert {c["setting"]: c["value"] for c in preview["choices"]} == chosen
    assert preview["total_steps"] == plan.total_steps and preview["summary"] == plan.summary
    assert chosen["training.max_seq_length"] == plan.max_seq_length == 128  # not 1,024
    assert chosen["training.learning_rate"] == 1e-3
    assert chosen["training.epochs"] > 1  # 120 chats are too few for one pass
    assert result.metrics["steps"] == plan.total_steps >= MIN_STEPS
    assert result.warnings == [] and plan.summary and " conversations of " in plan.summary
    history = json.loads(Path(result.path, "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_what_prep_skipped_is_a_plan_warning(tiny: Path, chats: Path, tmp_path: Path) -> None:
    """Lines prep could not read are skipped, and the person training hears it before the
    run (the plan's warnings reach the CLI, the job's progress and the result)."""
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    data = tmp_path / "chats.jsonl"
    data.write_text(chats.read_text() + '{"messages": [\n' + "not json at all\n")
    shown = CliRunner().invoke(app, ["plan", "-m", str(tiny), "-d", str(data), "--json"])
    assert shown.exit_code == 0, shown.output
    warnings = json.loads(shown.stdout)["warnings"]
    skipped = [w for w in warnings if w.startswith("data: skipped")]
    assert len(skipped) == 1 and "2 malformed_json" in skipped[0], warnings
    assert "chats.jsonl:121" in skipped[0]


def test_masked_loss_equals_the_models_own_loss(tiny: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lmfast.training.loss import masked_lm_loss

    model = AutoModelForCausalLM.from_pretrained(tiny)
    ids = torch.randint(0, 1000, (3, 20))
    labels = ids.clone()
    labels[:, :8] = -100
    labels[1, 15:] = -100
    positions = torch.cat([torch.arange(12), torch.arange(8)]).repeat(3, 1)
    inputs = {"input_ids": ids, "labels": labels, "position_ids": positions}
    # As DataCollatorWithFlattening does: a document's first token is no target.
    boundary = labels.clone()
    boundary[:, 12] = -100
    for m in (model, get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))):
        # use_cache=False: with a cache transformers ignores packed position ids.
        expected = m(**{**inputs, "labels": boundary}, use_cache=False).loss
        assert torch.allclose(masked_lm_loss(m, inputs), expected, atol=1e-5)
        total = (boundary[:, 1:] != -100).sum()
        assert torch.allclose(masked_lm_loss(m, inputs, total * 2), expected / 2, atol=1e-5)


def test_train_and_merge_commands_print_json(tiny: Path, chats: Path) -> None:
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    runner = CliRunner()
    args = ["train", "-m", str(tiny), "-d", str(chats), "--max-steps", "2", "--seq-len", "128"]
    trained = runner.invoke(app, [*args, "--json"])
    assert trained.exit_code == 0, trained.output
    result = json.loads(trained.stdout)
    assert result["kind"] == "adapter" and result["metrics"]["steps"] == 2
    assert any("only 2 optimizer steps" in w and "--max-steps" in w for w in result["warnings"])
    merged = runner.invoke(app, ["merge", result["artifact_id"], "--json"])
    assert merged.exit_code == 0, merged.output
    assert json.loads(merged.stdout)["artifact_id"].startswith("model-")
    again = runner.invoke(app, [*args, "--json"])  # same recipe and data: same run, resumed
    assert json.loads(again.stdout)["run_id"] == result["run_id"]
    shown = runner.invoke(app, args)  # for people: the plan and the warning stay on screen
    assert shown.exit_code == 0, shown.output
    assert "plan: " in shown.stderr and "warning: only 2 optimizer steps" in shown.stderr
    assert "warning: only 2 optimizer steps" in shown.stdout  # and under the result table
    bad = runner.invoke(app, ["train", "-m", str(tiny), "-d", str(chats), "--method", "dpo"])
    assert bad.exit_code == 2 and "training.method" in bad.stderr


def test_requests_use_absolute_paths_and_safe_run_ids(
    tiny: Path, chats: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    monkeypatch.chdir(chats.parent)
    request = _request(tiny, chats.name)
    assert request.config.data.path == str(chats.resolve())
    for bad in ("..", ".hidden", "a/b"):
        with pytest.raises(ValidationError, match="run_id"):
            _request(tiny, chats, run_id=bad)


def _texts(path: Path, word: str, n: int) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"{word} {i} " * 5}) + "\n")
    return path


def test_streaming_interleaves_sources_by_weight_and_replays_the_same_rows(
    tiny: Path, tmp_path: Path
) -> None:
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.training.streaming import StreamingRows

    a = _texts(tmp_path / "a.jsonl", "alpha", 300)
    b = _texts(tmp_path / "b.jsonl", "beta", 300)
    cfg = load_config(
        None,
        [
            "training.method=cpt",
            "training.max_seq_length=64",
            "data.streaming=true",
            "data.shuffle_buffer=50",
            f'data.sources=[{{"path": "{a}", "weight": 3}}, {{"path": "{b}", "weight": 1}}]',
        ],
    )
    tok = load_tokenizer(str(tiny))
    rows = StreamingRows(cfg, tok, 64)
    first = [r["input_ids"].tolist() for _, r in zip(range(40), rows, strict=False)]
    again = [r["input_ids"].tolist() for _, r in zip(range(40), rows, strict=False)]
    assert first == again  # deterministic: a resumed run replays to the same position
    text = tok.decode([t for row in first for t in row])
    alpha, beta = text.count("alpha"), text.count("beta")
    assert 2.0 < alpha / beta < 4.5, (alpha, beta)  # weights 3:1
    row = next(iter(rows))
    assert row["position_ids"][0] == 0 and row["length"] <= 64
    assert (row["labels"][: row["length"]] == row["input_ids"][: row["length"]]).all()
    rows.set_epoch(1)
    assert [r["input_ids"].tolist() for _, r in zip(range(40), rows, strict=False)] != first


def test_streaming_fine_tune_trains_and_records_its_sources(tiny: Path, chats: Path) -> None:
    from lmfast.artifacts import ArtifactStore
    from lmfast.training import fine_tune

    with pytest.raises(DataError, match=r"training\.max_steps"):
        fine_tune(_request(tiny, chats, "data.streaming=true"))
    result = fine_tune(
        _request(
            tiny, chats, "data.streaming=true", "training.max_steps=8", "data.shuffle_buffer=20"
        )
    )
    assert result.metrics["steps"] == 8 and result.metrics["tokens_per_second"] > 0
    losses = [
        h["loss"]
        for h in json.loads(Path(result.path, "log_history.json").read_text())
        if "loss" in h
    ]
    assert losses[-1] < losses[0]
    store = ArtifactStore()
    dataset = store.get(result.dataset_artifact)
    assert dataset.manifest.config["streaming"] is True
    assert str(chats) in (dataset.path / "sources.txt").read_text()
    assert result.dataset_artifact in store.get(result.artifact_id).manifest.parents


def test_mlflow_run_records_tags_metrics_and_the_loss_curve(tiny: Path, chats: Path) -> None:
    """The default tracker: a local SQLite MLflow store under LMFAST_HOME, no server."""
    from mlflow.tracking import MlflowClient

    from lmfast.training import fine_tune

    result = fine_tune(_request(tiny, chats, "training.max_steps=3", "training.tracker=auto"))
    assert result.tracking["tracker"] == "mlflow"
    assert result.tracking["uri"].startswith("sqlite:///") and "mlflow.db" in result.tracking["uri"]
    client = MlflowClient(tracking_uri=result.tracking["uri"])
    run = client.get_run(result.tracking["run_id"])
    tags = run.data.tags
    assert run.info.status == "FINISHED"
    assert tags["lmfast.dataset_artifact"] == result.dataset_artifact
    assert len(tags["lmfast.config_hash"]) >= 12 and tags["lmfast.code_version"]
    assert tags["lmfast.backend"] == result.backend and tags["lmfast.hardware"]
    assert tags["lmfast.dataset_version"]
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert len(losses) == 3  # logged every step by transformers' MLflow callback
    assert run.data.metrics["final_train_loss"] == pytest.approx(result.metrics["train_loss"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"loss_curve.png", "request.json"} <= artifacts


def test_streaming_sources_keep_their_own_layouts(tiny: Path, chats: Path, tmp_path: Path) -> None:
    """A chat source and a raw-text source mix in one continued-pretraining stream."""
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.training.streaming import StreamingRows

    text = _texts(tmp_path / "t.jsonl", "alpha", 50)
    sources = f'[{{"path": "{chats}"}}, {{"path": "{text}"}}]'
    cfg = load_config(
        None,
        ["training.method=cpt", "data.streaming=true", f"data.sources={sources}"],
    )
    tok = load_tokenizer(str(tiny))
    rows = [r for _, r in zip(range(20), StreamingRows(cfg, tok, 128), strict=False)]
    decoded = tok.decode([t for r in rows for t in r["input_ids"][: r["length"]]])
    assert "<|im_start|>user\nAdd" in decoded and "alpha 1" in decoded


def test_eval_tasks_run_at_each_evaluation_and_pick_the_best_checkpoint(
    tiny: Path, chats: Path, tmp_path: Path
) -> None:
    from lmfast.training import fine_tune

    mc = tmp_path / "sums.jsonl"
    mc.write_text(
        "".join(
            json.dumps(
                {"question": f"Add {a} and {a}.", "choices": [str(2 * a), str(a)], "answer": 0}
            )
            + "\n"
            for a in range(1, 7)
        )
    )
    request = _request(
        tiny, chats, "training.max_steps=6", "training.save_steps=3",
        "data.validation_split=0.1", f"eval.tasks={json.dumps([str(mc)])}",
        "eval.metric=sums.accuracy", "training.early_stopping_patience=5",
    )  # fmt: skip
    result = fine_tune(request)
    assert 0.0 <= result.metrics["eval_sums_accuracy"] <= 1.0
    assert "eval_sums_calibration_error" in result.metrics
    history = json.loads((Path(result.path) / "log_history.json").read_text())
    evals = [h for h in history if "eval_sums_accuracy" in h]
    # steps 3 and 6, then the final evaluation of the best checkpoint
    assert [h["step"] for h in evals][:2] == [3, 6]
    from lmfast.home import lmfast_home

    state_file = lmfast_home() / "runs" / result.run_id / "checkpoints/checkpoint-6"
    state = json.loads((state_file / "trainer_state.json").read_text())
    assert state["best_metric"] == max(h["eval_sums_accuracy"] for h in evals[:2])
    with pytest.raises(ConfigError, match="names task 'other'"):
        load_config(None, [f"eval.tasks={json.dumps([str(mc)])}", "eval.metric=other.accuracy"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "choices": ["a", "b"], "answer": 5}\n')
    with pytest.raises(LMFastError, match=r"bad\.jsonl, line 1: field 'answer' is 5"):
        fine_tune(
            _request(tiny, chats, "training.max_steps=2", f"eval.tasks={json.dumps([str(bad)])}")
        )
