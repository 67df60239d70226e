"""Export and quantization on tiny models the tests build: HF -> GGUF f32 -> llama.cpp logits,
quantized files that load and generate, the adapter -> merged -> GGUF lineage, mixed
precision within its budget, int8 / int4 in PyTorch, ONNX against PyTorch, refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.tiny_models import make_tiny_llama

TEXT = "The quick brown fox jumps over the lazy dog. 12345 <|im_start|>user\nHi<|im_end|>"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("export") / "tiny", layers=2)


@pytest.fixture(scope="module")
def adapter(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter with non-zero B matrices, so merging changes the weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "up_proj"]))
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.2)
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(str(out))
    cfg = json.loads((out / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny)
    (out / "adapter_config.json").write_text(json.dumps(cfg))
    return out


def _llama_logits(path: Path, ids: list[int]) -> np.ndarray:
    from llama_cpp import Llama

    # f32 KV cache: the default f16 cache alone would differ from transformers by ~1e-3.
    llm = Llama(str(path), logits_all=True, n_ctx=128, type_k=0, type_v=0, verbose=False)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)])
    finally:
        llm.close()


def test_gguf_f32_round_trip_matches_transformers(tiny: Path, tmp_path: Path) -> None:
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmfast.export.gguf_convert import hf_to_gguf
    from lmfast.gguf_meta import read_gguf

    out = hf_to_gguf(tiny, tmp_path / "tiny.gguf", "f32")
    assert out.pre_tokenizer == "smollm" and out.tokenizer_model == "gpt2"
    tok = AutoTokenizer.from_pretrained(str(tiny))
    ids = tok.encode(TEXT, add_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].numpy()
    got = _llama_logits(tmp_path / "tiny.gguf", ids)
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()
    # The tokenizer travels too: llama.cpp tokenizes like transformers, special tokens whole.
    llm = Llama(str(tmp_path / "tiny.gguf"), vocab_only=True, verbose=False)
    assert llm.tokenize(TEXT.encode(), add_bos=False, special=True) == ids
    llm.close()
    info = read_gguf(tmp_path / "tiny.gguf")
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.spec.num_layers == 2 and info.file_type == "ALL_F32"


def test_quantize_adapter_keeps_lineage_and_generates(adapter: Path) -> None:
    import torch

    from lmfast.artifacts import ArtifactStore
    from lmfast.export import QuantizeRequest, quantize
    from lmfast.generation import GenerateRequest, generate
    from lmfast.loading import load_transformers

    messages: list[str] = []
    result = quantize(
        QuantizeRequest(model=str(adapter), type="q8_0"),
        progress=lambda i, n, m: messages.append(m),
    )
    store = ArtifactStore()
    kinds = [store.get(a).manifest.kind for a in result.lineage]
    assert kinds == ["model", "export", "export"]  # merged -> f16 GGUF -> q8_0 GGUF
    merged, f16, q8 = result.lineage
    assert store.get(q8).manifest.parents == [f16]
    assert store.get(f16).manifest.parents == [merged]
    assert result.tensor_types["q8_0"] == 16 and result.size_vs_f16 is not None
    assert 0.4 < result.size_vs_f16 < 0.7
    assert result.metrics["perplexity"] > 1 and abs(result.metrics["perplexity_change"]) < 0.05
    assert result.metrics["decode_tokens_per_s"] > 0
    modelfile = Path(result.modelfile or "").read_text()
    assert "FROM ./adapter.q8_0.gguf" in modelfile and "<|im_start|>" in modelfile

    # The merged model equals base + adapter, and the quantized artifact is a model reference.
    peft_model, _ = load_transformers(str(adapter))
    full, _ = load_transformers(merged)
    x = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(peft_model(x).logits, full(x).logits, atol=1e-5)
    out = generate(GenerateRequest(model=q8, prompt="Hello", max_tokens=4, temperature=0))
    assert out.backend == "llama.cpp" and out.completion_tokens > 0

    # Quantizing the merged artifact again reuses its f16 GGUF (artifacts never change).
    again = quantize(QuantizeRequest(model=merged, type="q4_0", measure=False))
    assert again.lineage[0] == f16 and again.tensor_types["q4_0"] >= 14


def test_mixed_precision_stays_within_budget(tiny: Path) -> None:
    from lmfast.export import QuantizeRequest, quantize
    from lmfast.export.llama_quantize import tensor_bytes, tensor_types

    q4 = quantize(QuantizeRequest(model=str(tiny), type="q4_0", measure=False))
    budget = sum(tensor_bytes(Path(q4.path)).values()) * 1.3 / 1e6  # room for some upgrades
    mixed = quantize(
        QuantizeRequest(model=str(tiny), type="mixed", base="q4_0", size_budget_mb=budget,
                        calibration_tokens=128, measure=False)
    )  # fmt: skip
    plan = json.loads(Path(mixed.plan or "").read_text())
    assert plan["planned_bytes"] <= plan["budget_bytes"]
    stored = tensor_types(Path(mixed.path))
    assert all(stored[d["name"]] == d["type"] for d in plan["decisions"])
    assert len(plan["decisions"]) == 16 and len(set(stored.values())) > 2
    assert all(d["sensitivity"] >= 0 for d in plan["decisions"])
    assert (Path(mixed.path).parent / "plan.png").stat().st_size > 1000
    # A budget below every tensor's smallest type is refused with the minimum.
    from lmfast.errors import LMFastError

    with pytest.raises(LMFastError, match="size budget"):
        quantize(QuantizeRequest(model=str(tiny), type="mixed", size_budget_mb=0.01,
                                 calibration_tokens=128, measure=False))  # fmt: skip


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_torch_weight_only_quantization_loads_everywhere(tiny: Path, kind: str) -> None:
    import torch

    from lmfast.export import QuantizeRequest, quantize
    from lmfast.loading import load_transformers

    result = quantize(QuantizeRequest(model=str(tiny), type=kind))
    config = json.loads((Path(result.path) / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "torchao"
    model, _ = load_transformers(result.artifact_id)
    weight = model.model.layers[0].mlp.up_proj.weight
    assert "Int" in type(weight).__name__  # still quantized after loading
    assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()
    assert result.metrics["perplexity"] > 1 and result.metrics["source_perplexity"] > 1


def test_onnx_export_matches_pytorch(tiny: Path) -> None:
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForCausalLM

    from lmfast.export import ExportRequest, export

    result = export(ExportRequest(model=str(tiny), format="onnx"))
    assert result.details["max_abs_logit_diff"] < 1e-3
    session = ort.InferenceSession(str(Path(result.path) / "model.onnx"))
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]])
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": np.ones_like(ids)})[0]
    model = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    with torch.no_grad():
        want = model(ids).logits.numpy()
    assert np.abs(got - want).max() < 1e-3


def test_unsupported_architecture_and_bad_type_are_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from lmfast.export import QuantizeRequest
    from lmfast.export.gguf_convert import UnsupportedModelError, hf_to_gguf

    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(UnsupportedModelError) as err:
        hf_to_gguf(folder, tmp_path / "x.gguf")
    message = str(err.value)
    assert "'GPT2LMHeadModel'" in message and "LlamaForCausalLM, MistralForCausalLM" in message
    with pytest.raises(ValidationError, match=r"type: 'q4_k_x' is not one of .*q4_k_m"):
        QuantizeRequest(model="x", type="q4_k_x")
    with pytest.raises(ValidationError, match=r"calibration: '/nope.txt' is not a file"):
        QuantizeRequest(model="x", type="mixed", calibration="/nope.txt")

    from lmfast.export import ExportRequest

    with pytest.raises(ValidationError, match=r"dtype: 'bf16' is not available for onnx"):
        ExportRequest(model="x", format="onnx", dtype="bf16")
    assert ExportRequest(model="x", format="onnx").dtype == "f32"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_mcp_quantize_and_export_run_as_jobs(
    tiny: Path, anyio_backend: str, monkeypatch: Any
) -> None:
    from lmfast.mcp_server import build_server
    from mcp import Client

    monkeypatch.setenv("LMFAST_MCP_ROOTS", os.pathsep.join([str(tiny.parent)]))
    seen: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with Client(build_server()) as client:
        done = await client.call_tool(
            "quantize", {"model": str(tiny), "type": "q4_0", "measure": False, "wait": True},
            progress_callback=on_progress,
        )  # fmt: skip
        assert not done.is_error, done.content
        out = done.structured_content
        assert out["status"] == "succeeded", out
        assert out["result"]["type"] == "q4_0" and out["result"]["path"].endswith(".gguf")
        assert any("llama.cpp" in m for m in seen), seen
        bad = await client.call_tool("quantize", {"model": str(tiny), "type": "q9"})
        assert bad.is_error and "q4_k_m" in str(bad.content)
        exported = await client.call_tool(
            "export_model", {"model": str(tiny), "format": "gguf", "dtype": "f32", "wait": True}
        )
        assert exported.structured_content["result"]["details"]["type"] == "f32"


def test_quantize_and_export_commands(tiny: Path) -> None:
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    runner = CliRunner()
    shown = runner.invoke(app, ["quantize", str(tiny), "--type", "q8_0"])
    assert shown.exit_code == 0, shown.output
    assert "perplexity_change" in shown.stdout and "ollama create" in shown.stdout
    exported = runner.invoke(app, ["export", str(tiny), "--format", "gguf", "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["path"].endswith("tiny.f16.gguf")
    merged = runner.invoke(
        app, ["export", str(tiny), "-f", "safetensors", "--dtype", "bf16", "--json"]
    )
    assert merged.exit_code == 0, merged.output
    folder = Path(json.loads(merged.stdout)["path"])
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    bad = runner.invoke(app, ["quantize", str(tiny), "--type", "q9"])
    assert bad.exit_code != 0 and "q4_k_m" in bad.output
