"""The attention visualizer on the embedded model: saliency and rollout as data and PNG, the
CLI face, and a bad token index named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # loads the embedded model into transformers


def test_saliency_and_rollout_of_the_embedded_model() -> None:
    from lmfast.artifacts import ArtifactStore
    from lmfast.observability.attention import AttentionRequest, attention_map

    request = AttentionRequest(prompt="The capital of France is", chat=False, target=" Paris")
    result = attention_map(request)
    assert result.input_tokens == ["The", " capital", " of", " France", " is"]
    assert result.output_token == " Paris" and result.probability > 0.3
    assert sum(result.saliency) == pytest.approx(1, abs=1e-4)
    assert sum(result.rollout) == pytest.approx(1, abs=1e-4)
    assert result.rollout[0] == 0  # the attention sink is left out
    # The prediction rests on the content words, not on "The", "of" or "is".
    top = max(range(5), key=lambda i: result.saliency[i])
    assert result.input_tokens[top] in (" capital", " France")
    assert Path(result.png).read_bytes()[:4] == b"\x89PNG"
    art = ArtifactStore().get(result.artifact_id)
    assert art.manifest.kind == "report"
    assert json.loads((art.path / "attention.json").read_text())["output_token"] == " Paris"


def test_attention_command_writes_the_heatmap(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    runner = CliRunner()
    out = tmp_path / "heat.png"
    done = runner.invoke(
        app, ["attention", "What is the capital of France?", "--out", str(out), "--json"]
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["output_token"] and len(result["saliency"]) == len(result["input_tokens"]) > 10
    assert out.read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["attention", "Hi", "--target", "Hello", "--token", "40"])
    assert bad.exit_code == 2 and "token=40" in bad.stderr
