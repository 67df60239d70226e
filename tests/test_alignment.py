"""align_orpo: preference rows checked by line, pairs through prep_dataset, tiny ORPO and DPO
runs that raise the chosen-vs-rejected margin, and the artifact they leave."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from lmfast.config import load_config
from lmfast.data.readers import DataError
from lmfast.errors import LMFastError
from tests.tiny_models import make_tiny_llama

COLOURS = ["red", "blue", "green", "black", "white", "pink", "grey", "gold"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Answer (chosen) rather than refuse (rejected): a preference a 2-layer model can learn."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("prefs") / "prefs.jsonl"
    with open(path, "w") as f:
        for i in range(60):
            right = rng.choice(COLOURS)
            row: dict[str, Any] = {
                "prompt": f"Item {i} is {right}. What colour is item {i}?",
                "chosen": f"It is {right}.",
                "rejected": rng.choice(["I do not know.", "I will not say.", "No idea."]),
            }
            if i % 3 == 0:  # chat-style rows: the conversations carry the prompt
                row = {
                    "chosen": [
                        {"role": "user", "content": row["prompt"]},
                        {"role": "assistant", "content": row["chosen"]},
                    ],
                    "rejected": [
                        {"role": "user", "content": row["prompt"]},
                        {"role": "assistant", "content": row["rejected"]},
                    ],
                }
            f.write(json.dumps(row) + "\n")
    return path


def _request(model: Path, data: Path, *extra: str, **kw: Any) -> Any:
    from lmfast.alignment import AlignRequest

    cfg = load_config(
        None,
        [
            f"model.reference={model}",
            f"data.path={data}",
            "data.validation_split=0.2",
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
    return AlignRequest(config=cfg, **kw)


def test_bad_preference_rows_are_named_by_line(tmp_path: Path) -> None:
    from lmfast.alignment import check_preference_files

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(
            [
                json.dumps({"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}),
                json.dumps({"prompt": "Hi", "chosen": "Hello!"}),
                json.dumps({"prompt": "Hi", "chosen": "Same.", "rejected": "Same."}),
                "{not json",
                json.dumps({"chosen": "A", "rejected": "B"}),
            ]
        )
        + "\n"
    )
    with pytest.raises(DataError) as err:
        check_preference_files([bad])
    text = str(err.value)
    assert text.startswith("4 of 5 preference rows are unusable")
    assert "bad.jsonl:2: missing 'rejected'" in text
    assert "bad.jsonl:3: chosen and rejected are the same answer" in text
    assert "bad.jsonl:4:" in text
    assert "bad.jsonl:5: missing 'prompt'" in text


def test_dpo_on_an_adapter_is_refused_with_the_way_out(tmp_path: Path) -> None:
    """LoRA DPO's reference is the adapter switched off: for an SFT adapter that is the
    model before SFT, so LMFast says to merge first (ORPO has no reference)."""
    from lmfast.alignment import align

    adapter = tmp_path / "sft-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    with pytest.raises(LMFastError, match="Merge it first") as err:
        align(_request(adapter, tmp_path / "pairs.jsonl", method="dpo"))
    assert "model.reference" in str(err.value) and "orpo" in str(err.value)


def test_prep_normalises_preference_pairs(pairs: Path) -> None:
    from lmfast.data import PrepRequest, prep_dataset

    result = prep_dataset(PrepRequest(inputs=[str(pairs)], dedup={"near": False}))
    assert result.report.format == "preference"
    rows = [
        json.loads(line) for line in (Path(result.path) / "data.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 60
    colour = rows[0]["chosen"].removeprefix("It is ").rstrip(".")
    assert rows[0]["prompt"] == [
        {"role": "user", "content": f"Item 0 is {colour}. What colour is item 0?"}
    ]
    # The pair is normalised; provenance is added (records are kept whole).
    assert all(set(r) == {"prompt", "chosen", "rejected", "_source"} for r in rows)
    assert all(r["_source"]["file"].endswith(".jsonl") and r["_source"]["line"] for r in rows)
    with pytest.raises(DataError, match="preference pairs are not packed"):
        prep_dataset(PrepRequest(inputs=[str(pairs)], tokenizer="smollm2-135m-instruct"))


@pytest.mark.parametrize("method", ["orpo", "dpo"])
def test_alignment_raises_the_chosen_margin(tiny: Path, pairs: Path, method: str) -> None:
    from lmfast.alignment import align
    from lmfast.artifacts import ArtifactStore

    result = align(_request(tiny, pairs, "training.max_steps=30", method=method, beta=0.5))
    pref = result.preference
    assert result.measured_on == "held-out" and result.held_out_pairs == 12
    assert result.pairs == 48
    assert pref["aligned_mean_margin"] > pref["base_mean_margin"] + 0.5, pref
    assert pref["aligned_preference_accuracy"] > pref["base_preference_accuracy"], pref
    history = json.loads((Path(result.training.path) / "log_history.json").read_text())
    logged = [h for h in history if "rewards/margins" in h]
    assert logged, history[:3]
    if method == "orpo":
        assert all("log_odds_ratio" in h for h in logged)
    art = ArtifactStore().get(result.training.artifact_id)
    assert art.manifest.kind == "adapter" and art.manifest.extra["method"] == method
    assert art.manifest.parents[1] == result.training.dataset_artifact
    assert not (Path(art.path) / "ref").exists()  # DPO's frozen copy is not saved
    assert (Path(art.path) / "loss_curve.png").is_file()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_align_orpo_runs_as_a_job_and_names_bad_rows(
    tiny: Path, pairs: Path, tmp_path: Path, anyio_backend: str, monkeypatch: Any
) -> None:
    import os

    from lmfast.mcp_server import build_server
    from mcp import Client

    seen: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello"}) + "\n")
    roots = os.pathsep.join(str(p) for p in (tiny.parent, pairs.parent, tmp_path))
    monkeypatch.setenv("LMFAST_MCP_ROOTS", roots)
    args = {"model": str(tiny), "max_seq_length": 128, "learning_rate": 0.01}
    async with Client(build_server()) as client:
        done = await client.call_tool(
            "align_orpo",
            {**args, "data": str(pairs), "max_steps": 4, "wait": True, "validation_split": 0.1,
             "overrides": {"training.logging_steps": 1}},
            progress_callback=on_progress,
        )  # fmt: skip
        assert not done.is_error, done.content
        out = done.structured_content
        assert out["status"] == "succeeded", out
        assert out["result"]["training"]["artifact_id"].startswith("adapter-")
        assert out["result"]["held_out_pairs"] == 6
        assert any("margin" in m and "log-odds ratio" in m for m in seen), seen
        failed = await client.call_tool("align_orpo", {**args, "data": str(bad), "wait": True})
        outcome = failed.structured_content
        assert (
            outcome["status"] == "failed" and "bad.jsonl:1: missing 'rejected'" in outcome["error"]
        )


def test_align_and_distill_commands(tiny: Path, pairs: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    runner = CliRunner()
    aligned = runner.invoke(
        app, ["align", "-m", str(tiny), "-d", str(pairs), "--max-steps", "2", "--seq-len",
              "128", "--method", "dpo", "--validation-split", "0.1", "--json"],
    )  # fmt: skip
    assert aligned.exit_code == 0, aligned.output
    result = json.loads(aligned.stdout)
    assert result["method"] == "dpo" and result["training"]["metrics"]["steps"] == 2
    shown = runner.invoke(
        app, ["align", "-m", str(tiny), "-d", str(pairs), "--max-steps", "2", "--seq-len", "128"]
    )
    assert shown.exit_code == 0, shown.output
    assert "ORPO: chosen preferred on" in shown.stdout

    chats = tmp_path / "chats.jsonl"
    chats.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": f"Say {i}."},
                                     {"role": "assistant", "content": f"{i}."}]}) + "\n"
            for i in range(16)
        )
    )  # fmt: skip
    distilled = runner.invoke(
        app, ["distill", "-t", str(tiny), "-d", str(chats), "--student-layers", "0",
              "--max-steps", "1", "--seq-len", "128"],
    )  # fmt: skip
    assert distilled.exit_code == 0, distilled.output
    assert "student built from layers [0] of 2" in distilled.stdout
    bad = runner.invoke(app, ["distill", "-t", str(tiny), "-d", str(chats),
                              "--student-layers", "one,two"])  # fmt: skip
    assert bad.exit_code == 2 and "--student-layers" in bad.stderr
