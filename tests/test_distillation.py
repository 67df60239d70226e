"""distill: the KL term, stored top-k teacher logits, students built from a teacher, tiny
online and offline runs that lower the KL, clear errors, and the MCP tool as a job."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lmfast.config import load_config
from lmfast.errors import ConfigError, LMFastError
from tests.tiny_models import make_tiny_llama


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("teacher"), seed=0, layers=4)


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same tokenizer, different weights: a student far from the teacher."""
    return make_tiny_llama(tmp_path_factory.mktemp("other"), seed=1, layers=2)


@pytest.fixture(scope="module")
def chats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("data") / "chats.jsonl"
    with open(path, "w") as f:
        for _ in range(64):
            a, b = rng.randint(1, 50), rng.randint(1, 50)
            turns = [
                {"role": "user", "content": f"Add {a} and {b}."},
                {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
            ]
            f.write(json.dumps({"messages": turns}) + "\n")
    return path


def _request(student: Path | str, teacher: Path, data: Path, *extra: str, **kw: Any) -> Any:
    from lmfast.distillation import DistillRequest

    cfg = load_config(
        None,
        [
            f"model.reference={student}",
            f"data.path={data}",
            "training.max_seq_length=128",
            "training.learning_rate=0.01",
            "training.logging_steps=1",
            "training.micro_batch_size=4",
            "training.gradient_accumulation_steps=1",
            "training.warmup_ratio=0",
            "training.tracker=none",
            *extra,
        ],
    )
    return DistillRequest(config=cfg, teacher=str(teacher), **kw)


def _history(result: Any) -> list[dict[str, float]]:
    return json.loads((Path(result.training.path) / "log_history.json").read_text())


def test_kl_is_zero_for_equal_distributions_and_positive_otherwise() -> None:
    from lmfast.distillation.loss import distillation_sums, kl_full, kl_topk

    torch.manual_seed(0)
    a, b = torch.randn(6, 50) * 3, torch.randn(6, 50) * 3
    for t in (1.0, 2.0, 4.0):
        assert kl_full(a, a, t).item() == pytest.approx(0.0, abs=1e-5)
        assert kl_full(b, a, t).item() > 0.1
    # Top-k with k = vocabulary is the full KL; smaller k stays >= 0.
    lp = torch.log_softmax(a, -1)
    top = lp.topk(50, -1)
    assert kl_topk(b, top.indices, top.values, 2.0).item() == pytest.approx(
        kl_full(b, a, 2.0).item(), rel=1e-4
    )
    top8 = lp.topk(8, -1)
    assert kl_topk(b, top8.indices, top8.values, 2.0).item() > 0
    assert kl_topk(a * 50, top8.indices, top8.values * 50, 1.0).item() >= -1e-5
    # alpha = 0 is plain cross-entropy; alpha = 1 is T^2 x KL.
    targets = torch.randint(0, 50, (6,))
    total, ce, kl = distillation_sums(b, targets, (a,), 0.0, 2.0)
    assert total.item() == pytest.approx(ce.item())
    total, ce, kl = distillation_sums(b, targets, (a,), 1.0, 2.0)
    assert total.item() == pytest.approx(4.0 * kl.item(), rel=1e-5)


def test_student_built_from_teacher_layers(teacher: Path) -> None:
    from lmfast.distillation import build_student
    from lmfast.loading import load_transformers

    half = build_student(str(teacher), "every_other")
    assert half.layers == [0, 3] and half.teacher_layers == 4
    assert half.parameters < half.teacher_parameters and half.expected_speedup > 1.0
    again = build_student(str(teacher), "every_other")
    assert again.reused and again.artifact_id == half.artifact_id

    # Keeping every layer reproduces the teacher exactly: the weights are copied, not re-made.
    whole = build_student(str(teacher), [0, 1, 2, 3])
    t_model, tok = load_transformers(str(teacher), dtype="float32")
    s_model, _ = load_transformers(whole.path, dtype="float32")
    ids = tok("Add 3 and 4.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(t_model(ids).logits, s_model(ids).logits, atol=1e-5)

    narrow = build_student(str(teacher), [1, 2], mlp_ratio=0.5)
    s_model, _ = load_transformers(narrow.path, dtype="float32")
    assert narrow.intermediate_size == 64 and s_model.config.num_hidden_layers == 2
    assert s_model.model.layers[0].mlp.down_proj.weight.shape[1] == 64

    with pytest.raises(ConfigError, match=r"student_layers.*0\.\.3"):
        build_student(str(teacher), [0, 7])
    with pytest.raises(ConfigError, match="increasing"):
        build_student(str(teacher), [2, 1])


def test_offline_teacher_labels_round_trip(teacher: Path, chats: Path) -> None:
    from lmfast.distillation import generate_teacher_labels, open_teacher_labels
    from lmfast.loading import load_transformers
    from lmfast.training.data import RowDataset, collate, prepare
    from lmfast.training.loss import labelled_hidden

    req = _request(teacher, teacher, chats)
    model, tok = load_transformers(str(teacher), dtype="float32")
    data = prepare(req.config, tok, 512)
    art = generate_teacher_labels(str(teacher), data.dataset_artifact, k=8, batch_size=3)
    stored = open_teacher_labels(art.path)
    assert stored.k == 8 and stored.ids.dtype == np.uint16 and stored.logprobs.dtype == np.float16
    assert stored.index["positions"] == int(stored.offsets[-1]) > 0
    assert 0 < stored.index["coverage"] <= 1
    assert art.manifest.parents[0] == data.dataset_artifact
    # Rows 1 and 4, batched, give exactly the teacher's top-8 at their labelled positions.
    rows = [1, 4]
    every_row = RowDataset(data, np.arange(len(data.train_rows) + len(data.eval_rows)))
    batch = collate([every_row[r] for r in rows])
    assert batch.pop("row").tolist() == rows
    with torch.no_grad():
        hidden, _, head = labelled_hidden(model, batch)
        top = torch.log_softmax(head(hidden).float(), -1).topk(8, -1)
    ids, lps = stored.for_rows(rows)
    assert np.array_equal(ids.astype(np.int64), top.indices.numpy())
    assert np.allclose(lps.astype(np.float32), top.values.numpy(), atol=1e-2)
    # The same teacher, dataset and k reuse the stored file.
    assert generate_teacher_labels(str(teacher), data.dataset_artifact, k=8).id == art.id


def test_online_distillation_starts_at_zero_kl_when_student_is_teacher(
    teacher: Path, chats: Path
) -> None:
    from lmfast.distillation import distill

    # A LoRA student starts as its base exactly (B = 0): the KL to itself is zero.
    # float32: on a CPU with bf16 the plan would autocast the student, not the teacher.
    request = _request(teacher, teacher, chats, "training.max_steps=2", "model.dtype=float32")
    result = distill(request)
    first = next(h for h in _history(result) if "kl" in h)
    assert first["kl"] == pytest.approx(0.0, abs=1e-6)
    assert result.training.metrics["steps"] == 2


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_distillation_lowers_the_kl(teacher: Path, other: Path, chats: Path, mode: str) -> None:
    from lmfast.artifacts import ArtifactStore
    from lmfast.distillation import distill

    req = _request(
        other,
        teacher,
        chats,
        "training.max_steps=25",
        "training.lora.enabled=false",
        "training.learning_rate=0.03",
        mode=mode,
        alpha=1.0,
        top_k=16,
    )
    result = distill(req)
    kls = [h["kl"] for h in _history(result) if "kl" in h]
    assert len(kls) >= 20
    assert np.mean(kls[-5:]) < 0.7 * np.mean(kls[:3]), kls
    art = ArtifactStore().get(result.training.artifact_id)
    assert art.manifest.extra["method"] == f"distill-{mode}"
    assert str(teacher) in art.manifest.parents
    if mode == "offline":
        labels = result.teacher_labels
        assert labels is not None and labels["k"] == 16 and labels["bytes"] > 0
        assert labels["artifact_id"] in art.manifest.parents


def test_vocabulary_mismatch_and_bad_requests_are_refused(
    teacher: Path, chats: Path, tmp_path: Path
) -> None:
    from lmfast.distillation import distill

    odd = make_tiny_llama(tmp_path / "odd", extra_token="<odd_token>")
    with pytest.raises(ConfigError, match="different vocabularies"):
        distill(_request(odd, teacher, chats, "training.max_steps=1"))
    with pytest.raises(ValueError, match="student_layers builds the student"):
        _request(odd, teacher, chats, student_layers="every_other")
    with pytest.raises(ValueError, match="streamed data"):
        _request(teacher, teacher, chats, "data.streaming=true", "training.max_steps=1",
                 mode="offline")  # fmt: skip
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.distillation import generate_teacher_labels
    from lmfast.training.data import prepare

    data = prepare(_request(teacher, teacher, chats).config, load_tokenizer(str(teacher)), 512)
    with pytest.raises(LMFastError, match="different vocabulary"):
        generate_teacher_labels(str(odd), data.dataset_artifact, k=4)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_distill_runs_as_a_job_with_kl_progress(
    teacher: Path, other: Path, chats: Path, anyio_backend: str, monkeypatch: Any
) -> None:
    import os

    from lmfast.mcp_server import build_server
    from mcp import Client

    seen: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    roots = os.pathsep.join(str(p.parent) for p in (teacher, other, chats))
    monkeypatch.setenv("LMFAST_MCP_ROOTS", roots)
    args = {"data": str(chats), "teacher": str(teacher), "max_seq_length": 128}
    async with Client(build_server()) as client:
        done = await client.call_tool(
            "distill",
            {**args, "student_layers": "every_other", "max_steps": 3, "mode": "offline",
             "top_k": 8, "overrides": {"training.logging_steps": 1}, "wait": True},
            progress_callback=on_progress,
        )  # fmt: skip
        assert not done.is_error, done.content
        out = done.structured_content
        assert out["status"] == "succeeded", out
        result = out["result"]
        assert result["student"]["layers"] == [0, 3]
        assert result["training"]["metrics"]["steps"] == 3
        assert result["teacher_labels"]["k"] == 8
        assert any("KL" in m for m in seen), seen
        bad = await client.call_tool("distill", {**args, "eval_tasks": ["/etc/passwd"]})
        assert bad.is_error and "not sample tasks" in bad.content[0].text
        outside = await client.call_tool("distill", {**args, "student": "/etc"})
        assert outside.is_error and "student" in outside.content[0].text
