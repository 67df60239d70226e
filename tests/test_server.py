"""`lmfast serve` driven by the official openai client, on the embedded model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from lmfast.config import ServeConfig
from lmfast.serving import build_app
from tests.server_utils import metric, running

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
PARIS = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the local time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
        },
    },
}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with running(build_app(None, ServeConfig(max_concurrency=4, context_length=2048))) as url:
        yield url


@pytest.fixture(scope="module")
def client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)


def test_models_and_health(client: openai.OpenAI, base: str) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]
    assert httpx.get(f"{base}/health").json()["status"] == "ok"


def test_chat_non_streaming(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=PARIS, temperature=0, max_tokens=30)
    assert r.object == "chat.completion"
    assert "Paris" in (r.choices[0].message.content or "")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage and r.usage.prompt_tokens > 5 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    capped = client.chat.completions.create(model=MODEL, messages=PARIS, max_tokens=2)
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage and capped.usage.completion_tokens == 2


def test_chat_streaming_with_usage(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model=MODEL, messages=PARIS, temperature=0, max_tokens=30)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=PARIS,
            temperature=0,
            max_tokens=30,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content  # greedy: same text either way
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == full.usage.completion_tokens  # type: ignore[union-attr]


def _check_weather_args(arguments: str) -> dict[str, Any]:
    args = json.loads(arguments)
    assert set(args) == {"city", "unit"}
    assert isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit")
    return args


def test_streamed_tool_calls_accumulate_into_valid_arguments(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    with client.chat.completions.stream(
        model=MODEL,
        messages=messages,
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice="required",
        temperature=0,
        max_tokens=100,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    assert calls[0].function.name in ("get_weather", "get_time")
    if calls[0].function.name == "get_weather":
        _check_weather_args(calls[0].function.arguments)
    else:
        assert isinstance(json.loads(calls[0].function.arguments)["zone"], str)


def test_streamed_tool_call_wire_shape(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Weather in Rome?"}],
            tools=[WEATHER, TIME],  # type: ignore[list-item]
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            temperature=0,
            max_tokens=100,
            stream=True,
        )
    )
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) >= 2
    first, rest = deltas[0], deltas[1:]
    assert first.index == 0 and first.id and first.type == "function"
    assert first.function and first.function.name == "get_weather"
    assert first.function.arguments == ""
    for d in rest:  # later fragments carry only index and an arguments string
        assert d.index == 0 and d.id is None and d.type is None
        assert d.function and d.function.name is None and isinstance(d.function.arguments, str)
    _check_weather_args("".join(d.function.arguments or "" for d in rest))  # type: ignore[union-attr]
    finals = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finals == ["tool_calls"]


def test_non_streamed_tool_call_and_tool_history(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        temperature=0,
        max_tokens=100,
    )
    call = (r.choices[0].message.tool_calls or [])[0]
    _check_weather_args(call.function.arguments)
    assert r.choices[0].finish_reason == "tool_calls"
    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    answer = client.chat.completions.create(
        model=MODEL,
        messages=history,
        tools=[WEATHER],  # type: ignore[arg-type,list-item]
        tool_choice="none",
        temperature=0,
        max_tokens=40,
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.choices[0].message.content
    assert not answer.choices[0].message.tool_calls


def test_json_schema_response_validates(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "city": {"type": "string", "enum": ["Paris", "London", "Tokyo"]},
        },
        "required": ["name", "age", "city"],
    }
    r = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        max_tokens=80,
        messages=[{"role": "user", "content": "Describe a person who lives in Tokyo."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
    )
    data = json.loads(r.choices[0].message.content or "")
    assert set(data) == {"name", "age", "city"}
    assert isinstance(data["name"], str) and isinstance(data["age"], int)
    assert data["city"] in ("Paris", "London", "Tokyo")
    obj = client.chat.completions.create(
        model=MODEL,
        temperature=0,
        max_tokens=60,
        messages=PARIS,
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)


def test_chat_logprobs_shape(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=MODEL, messages=PARIS, temperature=0, max_tokens=8, logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and len(content) == r.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and bytes(t.bytes or []).decode() == t.token
        assert len(t.top_logprobs) == 3
        lps = [x.logprob for x in t.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        assert t.top_logprobs[0].token == t.token  # greedy picks the most likely token
        assert t.logprob == pytest.approx(lps[0])


def test_completions_echo_logprobs_and_batches(client: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    r = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=3, temperature=0, echo=True, logprobs=1
    )
    choice = r.choices[0]
    assert choice.text.startswith(prompt) and len(choice.text) > len(prompt)
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.text_offset
    assert "".join(lp.tokens) == choice.text
    assert lp.token_logprobs[0] is None and all(x <= 0 for x in lp.token_logprobs[1:])
    assert lp.text_offset[1] == len(lp.tokens[0])
    batch = client.completions.create(
        model=MODEL, prompt=["1, 2, 3,", "a, b, c,"], max_tokens=4, temperature=0
    )
    assert [c.index for c in batch.choices] == [0, 1]
    assert batch.choices[0].text != batch.choices[1].text
    ids = client.completions.create(model=MODEL, prompt=[16, 28, 17, 28], max_tokens=2)
    assert ids.usage and ids.usage.prompt_tokens == 4


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": PARIS, "temperature": 5}, "temperature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"messages": PARIS, "n": 2}, "n"),
        ({"messages": PARIS, "top_logprobs": 3}, "top_logprobs"),
        ({"messages": PARIS, "tool_choice": "required"}, "tool_choice"),
        ({"messages": PARIS, "response_format": {"type": "json_schema"}}, "response_format"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages"),
        ({"messages": PARIS, "max_tokens": 0}, "max_tokens"),
        ({"messages": PARIS, "stop": [""]}, "stop"),
    ],
)
def test_bad_chat_requests_are_400(base: str, body: dict[str, Any], param: str | None) -> None:
    r = httpx.post(f"{base}/v1/chat/completions", json={"model": MODEL, **body}, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    if param:
        assert param in err["message"]


BANANA_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "banana"}}}
REF_SCHEMA = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [WEATHER, BANANA_TOOL]}, "tools[1].function.parameters"),
        ({"tools": [BANANA_TOOL], "tool_choice": "required"}, "tools[0].function.parameters"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": REF_SCHEMA}}},
            "response_format.json_schema",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
        ({"logit_bias": {"999999": 5}}, "logit_bias"),
        ({"logit_bias": {"12": 500}}, "logit_bias"),
        ({"functions": [{"name": "f"}]}, None),
    ],
)
def test_invalid_schemas_and_parameters_name_the_field(
    base: str, body: dict[str, Any], param: str | None
) -> None:
    r = httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": MODEL, "messages": PARIS, "max_tokens": 4, **body},
        timeout=30,
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    if param:
        assert err["param"] == param and param in err["message"], err
    else:
        assert "functions is not supported" in err["message"]


def test_malformed_json_names_the_position(base: str) -> None:
    r = httpx.post(
        f"{base}/v1/chat/completions",
        content='{"model": "m", "messages": [}',
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] is None
    assert "not valid JSON" in err["message"] and "at character 28" in err["message"]


def test_logit_bias_is_honoured(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model=MODEL, messages=PARIS, temperature=0, max_tokens=8)
    text = plain.choices[0].message.content or ""
    assert "Paris" in text
    from lmfast.data.tokenize import load_tokenizer

    tok = load_tokenizer(MODEL)
    banned = {str(t): -100 for t in tok(" Paris", add_special_tokens=False)["input_ids"]}
    banned.update({str(t): -100 for t in tok("Paris", add_special_tokens=False)["input_ids"]})
    biased = client.chat.completions.create(
        model=MODEL, messages=PARIS, temperature=0, max_tokens=8, logit_bias=banned
    )
    assert "Paris" not in (biased.choices[0].message.content or "")


def test_default_max_tokens_caps_requests_without_one() -> None:
    app = build_app(None, ServeConfig(context_length=2048, default_max_tokens=5))
    with running(app) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        out = c.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Write a long story about a dragon."}],
            temperature=0,
        )
    assert out.usage.completion_tokens == 5 and out.choices[0].finish_reason == "length"


def test_malformed_bodies_are_400_not_500(base: str) -> None:
    for raw in ("{not json", "[]", '{"model": 3}', ""):
        r = httpx.post(
            f"{base}/v1/chat/completions",
            content=raw,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert r.status_code == 400, (raw, r.text)
    r = httpx.post(f"{base}/v1/completions", json={"model": MODEL, "prompt": []}, timeout=30)
    assert r.status_code == 400


def test_prompt_longer_than_context_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "word " * 3000}], max_tokens=5
        )
    assert info.value.code == "context_length_exceeded"


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=PARIS)
    assert info.value.code == "model_not_found"


def test_client_disconnect_stops_generation(base: str) -> None:
    body = {
        "model": MODEL,
        "prompt": "1, 2, 3, 4, 5,",
        "max_tokens": 1500,
        "temperature": 0,
        "stream": True,
    }
    before = metric(base, "lmfast_completion_tokens_total")
    with httpx.stream("POST", f"{base}/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = [line for _, line in zip(range(6), lines, strict=False)]
        assert any(line.startswith("data:") for line in got)
    # The server notices the hang-up and frees the slot long before 1500 tokens.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if (
            metric(base, "lmfast_requests_running") == 0
            and metric(base, "lmfast_requests_cancelled_total") >= 1
        ):
            break
        time.sleep(0.1)
    assert metric(base, "lmfast_requests_cancelled_total") >= 1
    assert metric(base, "lmfast_requests_running") == 0
    # Non-streaming: the client times out; generation must stop too.
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{base}/v1/completions", json={**body, "stream": False}, timeout=1.5)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and metric(base, "lmfast_requests_running") != 0:
        time.sleep(0.1)
    assert metric(base, "lmfast_requests_running") == 0
    assert metric(base, "lmfast_requests_cancelled_total") >= 2
    # Neither request ran to its 1500 tokens.
    assert metric(base, "lmfast_completion_tokens_total") - before < 1500


def test_flood_beyond_queue_gets_429() -> None:
    app = build_app(None, ServeConfig(max_concurrency=1, queue_size=1, context_length=1024))
    with running(app) as url:
        results: list[int] = []
        elapsed: list[float] = []

        def call() -> None:
            t = time.monotonic()
            r = httpx.post(
                f"{url}/v1/chat/completions",
                timeout=60,
                json={"model": MODEL, "messages": PARIS, "max_tokens": 40, "temperature": 0},
            )
            results.append(r.status_code)
            if r.status_code == 429:
                assert r.json()["error"]["type"] == "rate_limit_error"
                elapsed.append(time.monotonic() - t)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert results.count(200) >= 2 and results.count(429) >= 1
        assert set(results) <= {200, 429}
        assert max(elapsed) < 5  # refused at once, not after a timeout
        assert metric(url, "lmfast_requests_rejected_total") == results.count(429)


def test_metrics_are_prometheus(base: str, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=PARIS, max_tokens=3)
    text = httpx.get(f"{base}/metrics").text
    for name in (
        "lmfast_requests_total",
        "lmfast_request_duration_seconds_bucket",
        "lmfast_queue_depth",
        "lmfast_completion_tokens_total",
        "lmfast_time_to_first_token_seconds_bucket",
    ):
        assert name in text
    assert 'endpoint="/v1/chat/completions",status="200"' in text


def test_prefix_cache_reuses_the_prompt(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name three colours of the rainbow."}]
    first = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=20
    )
    again = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=20
    )
    # Not compared token for token: with the slots' shared KV pool, attention runs over cells
    # other requests left too (masked), which can move logits in their last bits (as in
    # llama-server and vLLM); tests/test_prompt_cache.py checks what the cache reuses.
    assert first.choices[0].message.content and again.choices[0].message.content
    details = again.usage.prompt_tokens_details  # type: ignore[union-attr]
    assert details is not None and details.cached_tokens == again.usage.prompt_tokens - 1  # type: ignore[union-attr]
