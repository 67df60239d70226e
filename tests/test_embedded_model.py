"""The embedded SmolLM2-135M-Instruct answers offline through llama.cpp and transformers."""

from __future__ import annotations

import pytest

from lmfast.inference import ChatMessage, SamplingParams, load_engine
from lmfast.pipeline import Pipeline

pytestmark = pytest.mark.slow

QUESTION = [ChatMessage(role="user", content="What is the capital of France?")]
GREEDY = SamplingParams(temperature=0.0, max_tokens=32)


@pytest.fixture(scope="module")
def llama() -> Pipeline:
    engine = load_engine(backend="llamacpp")
    assert engine.name == "llama.cpp"
    yield Pipeline(engine)
    engine.close()


def test_llama_cpp_answers_paris(llama: Pipeline) -> None:
    out = llama.chat(QUESTION, GREEDY)
    assert out.text and "Paris" in out.text
    assert out.prompt_tokens > 5 and 0 < out.completion_tokens <= 32
    streamed = "".join(llama.stream(QUESTION, GREEDY))
    assert streamed == out.text  # greedy: streaming and non-streaming agree


def test_llama_cpp_stop_and_length(llama: Pipeline) -> None:
    short = llama.chat(QUESTION, SamplingParams(temperature=0.0, max_tokens=2))
    assert short.finish_reason == "length" and short.completion_tokens == 2
    stopped = llama.chat(QUESTION, SamplingParams(temperature=0.0, stop=["Paris"]))
    assert stopped.text is not None and "Paris" not in stopped.text
    assert stopped.finish_reason == "stop"


def test_transformers_answers_paris_saves_and_reloads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lmfast.inference.hf import TransformersEngine
    from lmfast.loading import load_transformers, save_transformers

    model, tokenizer = load_transformers()  # the embedded GGUF, dequantized
    assert not getattr(model, "is_quantized", False)
    assert getattr(model.config, "quantization_config", None) is None
    assert all(p.requires_grad for p in model.parameters())  # an ordinary trainable model
    engine = TransformersEngine(model, tokenizer)
    out = Pipeline(engine).chat(QUESTION, GREEDY)
    assert out.text and "Paris" in out.text

    saved = save_transformers(model, tokenizer, tmp_path / "smollm2-hf")
    assert (saved / "model.safetensors").is_file()
    assert "quantization_config" not in (saved / "config.json").read_text()
    reloaded = TransformersEngine(*load_transformers(str(saved)))
    assert Pipeline(reloaded).chat(QUESTION, GREEDY).text == out.text
    engine.close()
    reloaded.close()


def test_convert_makes_a_model_artifact_with_lineage() -> None:
    from lmfast.convert import ConvertRequest, convert_to_hf
    from lmfast.generation import GenerateRequest, generate
    from lmfast.registry import list_models, model_info

    result = convert_to_hf(ConvertRequest(model="smollm2-135m-instruct", dtype="float32"))
    assert 130e6 < result.parameters < 140e6
    info = model_info(result.artifact_id)
    assert info.format == "hf" and info.source == "artifact"
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in info.lineage[0]
    assert result.artifact_id in [r.name for r in list_models()]
    reply = generate(
        GenerateRequest(
            model=result.artifact_id, prompt="What is the capital of France?", params=GREEDY
        )
    )
    assert reply.backend == "transformers" and "Paris" in reply.text
