"""Many LoRA adapters over one base in one server: the PEFT -> GGUF LoRA conversion against
transformers, two adapters trained on different tasks answering differently through the
`openai` client, requests for different adapters decoded together, and the refusals."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import openai
import pytest

from tests.server_utils import running
from tests.tiny_models import make_tiny_llama

MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("adapters") / "tiny")


@pytest.fixture(scope="module")
def tiny_gguf(tiny: Path) -> Path:
    from lmfast.export.gguf_convert import hf_to_gguf

    return Path(hf_to_gguf(tiny, tiny.parent / "tiny.gguf", "f32").path)


def _random_adapter(tiny: Path, out: Path, **config: object) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(target_modules=MODULES, **config))  # type: ignore[arg-type]
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.2)
    model.save_pretrained(str(out))
    cfg = json.loads((out / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tiny)
    (out / "adapter_config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.parametrize("rslora", [False, True])
def test_gguf_lora_over_the_base_gives_the_peft_models_logits(
    tiny: Path, tiny_gguf: Path, tmp_path: Path, rslora: bool
) -> None:
    """Every projection adapted (Q and K rows permuted for llama.cpp's rotary layout), with
    PEFT's alpha / r and rsLoRA's alpha / sqrt(r) scaling: llama.cpp's logits with the
    converted adapter equal the PEFT model's."""
    import torch
    from llama_cpp import Llama
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lmfast.export.lora_gguf import lora_to_gguf
    from lmfast.registry import model_spec

    folder = _random_adapter(tiny, tmp_path / "ad", r=4, lora_alpha=8, use_rslora=rslora)
    info = lora_to_gguf(folder, model_spec(str(tiny)), tmp_path / "ad.gguf")
    assert info.tensors == 2 * len(MODULES) and info.architecture == "llama"

    ids = [1, 504, 3458, 6353, 28, 2767, 260, 17]
    base = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    with torch.no_grad():
        plain = base(torch.tensor([ids])).logits[0].numpy()
        peft = PeftModel.from_pretrained(base, str(folder))
        want = peft(torch.tensor([ids])).logits[0].numpy()
    # f32 KV cache: the default f16 cache alone would differ by ~1e-3.
    llm = Llama(str(tiny_gguf), lora_path=info.path, logits_all=True, n_ctx=64, type_k=0,
                type_v=0, verbose=False)  # fmt: skip
    try:
        llm.eval(ids)
        got = np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
    assert np.abs(want - plain).max() > 1.0  # the adapter matters
    assert np.abs(got - want).max() < 1e-3


def test_adapters_that_cannot_run_in_llama_cpp_are_refused_by_name(
    tiny: Path, tmp_path: Path
) -> None:
    from lmfast.export.gguf_convert import UnsupportedModelError
    from lmfast.export.lora_gguf import lora_to_gguf
    from lmfast.registry import model_spec

    spec = model_spec(str(tiny))
    dora = _random_adapter(tiny, tmp_path / "dora", r=4, use_dora=True)
    with pytest.raises(UnsupportedModelError, match="use_dora"):
        lora_to_gguf(dora, spec, tmp_path / "x.gguf")
    saved = _random_adapter(tiny, tmp_path / "saved", r=4, modules_to_save=["lm_head"])
    with pytest.raises(UnsupportedModelError, match="modules_to_save"):
        lora_to_gguf(saved, spec, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "x.gguf.part").exists()


def _fruit_adapter(tiny: Path, tmp_path: Path, fruit: str) -> str:
    """A LoRA adapter trained (LMFast's fine_tune) to answer every request with `fruit`."""
    from lmfast.config import load_config
    from lmfast.training import FineTuneRequest, fine_tune

    data = tmp_path / f"{fruit}.jsonl"
    with open(data, "w") as f:
        for i in range(48):
            turns = [{"role": "user", "content": f"Tell me about thing number {i}."},
                     {"role": "assistant", "content": f"{fruit} {fruit} {fruit}"}]  # fmt: skip
            f.write(json.dumps({"messages": turns}) + "\n")
    cfg = load_config(None, [
        f"model.reference={tiny}", f"data.path={data}", "training.max_seq_length=64",
        "training.learning_rate=0.05", "training.micro_batch_size=8",
        "training.gradient_accumulation_steps=1", "training.warmup_ratio=0",
        "training.max_steps=40", "training.tracker=none", "training.logging_steps=10",
    ])  # fmt: skip
    return fine_tune(FineTuneRequest(config=cfg, name=fruit)).path


def test_two_adapters_trained_on_different_tasks_answer_differently_in_one_server(
    tiny: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    from lmfast.config import ServeConfig
    from lmfast.serving import build_app
    from lmfast.serving.adapters import parse_adapter_options

    apple, cherry = (
        _fruit_adapter(tiny, tmp_path, "apple"),
        _fruit_adapter(tiny, tmp_path, "cherry"),
    )
    adapters = parse_adapter_options([f"fruit-a={apple}", f"fruit-c={cherry}"])
    config = ServeConfig(max_concurrency=3, adapters=adapters)
    ask = [{"role": "user", "content": "Tell me about thing number 1000."}]
    with running(build_app(str(tiny_gguf), config)) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x")
        listed = {m.id: m for m in client.models.list().data}
        assert set(listed) == {"tiny", "fruit-a", "fruit-c"}
        assert listed["fruit-a"].parent == "tiny"  # type: ignore[attr-defined]

        def reply(model: str) -> str:
            out = client.chat.completions.create(model=model, messages=ask, max_tokens=6,
                                                 temperature=0)  # type: ignore[arg-type]  # fmt: skip
            assert out.model == model
            return out.choices[0].message.content or ""

        alone = {m: reply(m) for m in ("fruit-a", "tiny", "fruit-c")}
        assert "apple" in alone["fruit-a"] and "cherry" in alone["fruit-c"], alone
        assert "apple" not in alone["tiny"] and "cherry" not in alone["tiny"]
        # The same prompt under another adapter is not served from the first one's cache,
        # and requests for different adapters in flight together get what they get alone.
        together: dict[str, str] = {}
        threads = [threading.Thread(target=lambda m=m: together.__setitem__(m, reply(m)))
                   for m in ("fruit-c", "fruit-a", "tiny", "fruit-c")]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert together == alone
        with pytest.raises(openai.NotFoundError, match="fruit-a"):
            reply("fruit-b")


def test_adapters_that_cannot_be_served_are_refused_at_start(
    tiny: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    from lmfast.config import ServeConfig
    from lmfast.errors import ConfigError
    from lmfast.serving import build_app
    from lmfast.serving.adapters import parse_adapter_options

    with pytest.raises(ConfigError, match=r"serve.adapters.x: .* not a LoRA adapter"):
        build_app(str(tiny_gguf), ServeConfig(adapters={"x": str(tiny)}))
    other = make_tiny_llama(tmp_path / "deep", layers=3)
    wrong = _random_adapter(other, tmp_path / "wrong", r=4)
    with pytest.raises(ConfigError, match="num_layers 3 vs 2"):
        build_app(str(tiny_gguf), ServeConfig(adapters={"x": str(wrong)}))
    right = _random_adapter(tiny, tmp_path / "right", r=4)
    with pytest.raises(ConfigError, match="base model's name"):
        build_app(str(tiny_gguf), ServeConfig(adapters={"tiny": str(right)}))
    with pytest.raises(ConfigError, match="cannot serve them"):
        build_app(str(tiny_gguf), ServeConfig(adapters={"x": str(right)}, backend="transformers"))
    with pytest.raises(ConfigError, match=r"serve.adapters.y: model '/nowhere' not found"):
        build_app(str(tiny_gguf), ServeConfig(adapters={"y": "/nowhere"}))
    with pytest.raises(ConfigError, match="the name 'no way' must be"):
        parse_adapter_options(["no way=/x"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_adapter_options([f"a={right}", f"a={wrong}"])
    assert parse_adapter_options([str(right), f"b={wrong}"]) == {"right": str(right),
                                                                  "b": str(wrong)}  # fmt: skip
    with pytest.raises(ValueError, match="adapter name 'no way'"):
        ServeConfig(adapters={"no way": str(right)})


def test_adapters_are_loaded_and_unloaded_while_serving(
    tiny: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    import httpx

    from lmfast.config import ServeConfig
    from lmfast.serving import build_app

    apple = _fruit_adapter(tiny, tmp_path, "apple")
    ask = [{"role": "user", "content": "Tell me about thing number 1000."}]
    with running(build_app(str(tiny_gguf), ServeConfig(adapter_updates=True))) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x")

        def reply(model: str) -> str:
            out = client.chat.completions.create(model=model, messages=ask, max_tokens=6,
                                                 temperature=0)  # type: ignore[arg-type]  # fmt: skip
            return out.choices[0].message.content or ""

        plain = reply("tiny")
        loaded = httpx.post(f"{base}/v1/load_lora_adapter",
                            json={"lora_name": "fruit", "lora_path": apple})  # fmt: skip
        assert loaded.status_code == 200, loaded.text
        assert loaded.json()["parent"] == "tiny"
        assert {m.id for m in client.models.list().data} == {"tiny", "fruit"}
        assert "apple" in reply("fruit") and reply("tiny") == plain
        again = httpx.post(f"{base}/v1/load_lora_adapter",
                           json={"lora_name": "fruit", "lora_path": apple})  # fmt: skip
        assert again.status_code == 400 and "already served" in again.json()["error"]["message"]
        missing = httpx.post(f"{base}/v1/load_lora_adapter",
                             json={"lora_name": "pear", "lora_path": "/nowhere"})  # fmt: skip
        assert missing.status_code == 400
        assert missing.json()["error"]["param"] == "lora_path"
        assert "not found" in missing.json()["error"]["message"]
        clash = httpx.post(f"{base}/v1/load_lora_adapter",
                           json={"lora_name": "tiny", "lora_path": apple})  # fmt: skip
        assert clash.status_code == 400 and "base model" in clash.json()["error"]["message"]

        gone = httpx.post(f"{base}/v1/unload_lora_adapter", json={"lora_name": "fruit"})
        assert gone.status_code == 200 and gone.json()["deleted"] is True
        assert {m.id for m in client.models.list().data} == {"tiny"}
        with pytest.raises(openai.NotFoundError):
            reply("fruit")
        assert reply("tiny") == plain
        unknown = httpx.post(f"{base}/v1/unload_lora_adapter", json={"lora_name": "fruit"})
        assert unknown.status_code == 404 and "not served" in unknown.json()["error"]["message"]
        # Loaded again under another name after unloading: the engine frees and reloads.
        reloaded = httpx.post(f"{base}/v1/load_lora_adapter",
                              json={"lora_name": "fruit-2", "lora_path": apple})  # fmt: skip
        assert reloaded.status_code == 200 and "apple" in reply("fruit-2")
    with running(build_app(str(tiny_gguf), ServeConfig())) as base:
        off = httpx.post(f"{base}/v1/load_lora_adapter",
                         json={"lora_name": "fruit", "lora_path": apple})  # fmt: skip
        assert off.status_code == 403 and "--adapter-updates" in off.json()["error"]["message"]
