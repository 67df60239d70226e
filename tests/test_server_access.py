"""Auth, loading state and CORS, in-process with a loader that never yields a model."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from lmfast.config import ServeConfig
from lmfast.serving.app import create_app

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _app(gate: threading.Event, **config: object) -> TestClient:
    def load():  # type: ignore[no-untyped-def]
        gate.wait(30)
        raise RuntimeError("weights are corrupt")

    return TestClient(create_app(ServeConfig(**config), model_id="m", load=load))  # type: ignore[arg-type]


def test_503_while_loading_then_load_error(gate: threading.Event) -> None:
    with _app(gate) as client:
        r = client.post("/v1/chat/completions", json=BODY)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "model_loading"
        assert client.get("/health").json()["status"] == "loading"
        gate.set()
        for _ in range(100):
            if client.get("/health").json()["status"] == "error":
                break
            threading.Event().wait(0.05)
        health = client.get("/health")
        assert health.status_code == 503 and "weights are corrupt" in health.json()["detail"]
        r = client.post("/v1/chat/completions", json=BODY)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_load_failed"


def test_api_key_is_required_and_checked(gate: threading.Event) -> None:
    with _app(gate, host="0.0.0.0", api_key="s3cret") as client:
        missing = client.post("/v1/chat/completions", json=BODY)
        assert missing.status_code == 401
        assert missing.json()["error"]["type"] == "authentication_error"
        assert "missing API key" in missing.json()["error"]["message"]
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "incorrect" in wrong.json()["error"]["message"]
        ok = client.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "m"
        assert client.get("/health").status_code == 503  # health needs no key


def test_unknown_model_404_even_while_loading(gate: threading.Event) -> None:
    with _app(gate) as client:
        r = client.post("/v1/chat/completions", json={**BODY, "model": "other"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert client.get("/v1/nothing").status_code == 404


def test_cors_off_unless_configured(gate: threading.Event) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with _app(gate) as client:
        r = client.options("/v1/chat/completions", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    with _app(gate, cors_origins=["https://app.example"]) as client:
        r = client.options("/v1/chat/completions", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example"
