"""GPU-only engine checks: run on a CUDA machine (they skip elsewhere)."""

from __future__ import annotations

import importlib.util

import pytest

from lmfast.inference import ChatMessage, SamplingParams, load_engine
from lmfast.pipeline import Pipeline

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
QUESTION = [ChatMessage(role="user", content="What is the capital of France?")]


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
def test_vllm_engine_answers_and_constrains_json() -> None:
    from lmfast.convert import ConvertRequest, convert_to_hf
    from lmfast.pipeline import ResponseFormat

    art = convert_to_hf(ConvertRequest(model="smollm2-135m-instruct", dtype="bfloat16"))
    engine = load_engine(art.artifact_id, backend="vllm", n_ctx=2048)
    try:
        pipe = Pipeline(engine)
        out = pipe.chat(QUESTION, SamplingParams(temperature=0, max_tokens=32))
        assert out.text and "Paris" in out.text
        schema = {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        }
        js = pipe.chat(
            QUESTION,
            SamplingParams(temperature=0, max_tokens=40),
            response_format=ResponseFormat(type="json_schema", json_schema=schema),
        )
        import json

        assert isinstance(json.loads(js.text or "")["city"], str)
    finally:
        engine.close()


def test_transformers_engine_on_cuda() -> None:
    engine = load_engine(backend="transformers", device="cuda")
    try:
        out = Pipeline(engine).chat(QUESTION, SamplingParams(temperature=0, max_tokens=32))
        assert out.text and "Paris" in out.text
    finally:
        engine.close()
