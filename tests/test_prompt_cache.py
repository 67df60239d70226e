"""The llama.cpp engine's KV pool and prompt cache: slots share one pool (a request may use a
whole window, admission keeps the running ones within the pool), a conversation whose slot
was taken by others is loaded back from RAM when it returns, a shared system prompt is not
recomputed, and the `openai` client sees it in usage.prompt_tokens_details.cached_tokens."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import openai
import pytest

from lmfast.registry import resolve_model
from tests.server_utils import metric, running

SYSTEM = (
    "You are the support assistant of a shop for hiking gear. Answer in plain English, in at "
    "most three sentences. Returns are accepted within 30 days for unused items in their "
    "original packaging. Delivery takes two to four working days and is free above 50 pounds. "
    "Tents carry a two-year warranty and stoves one year. Never invent order details."
)


@pytest.fixture(scope="module")
def embedded() -> Path:
    return resolve_model().path


def _ask(engine, messages: list[dict[str, str]], tokens: int = 24):  # type: ignore[no-untyped-def]
    from lmfast.inference.base import ChatMessage, Delta, EngineRequest, Finished, SamplingParams

    prompt = engine.render_chat([ChatMessage.model_validate(m) for m in messages])
    request = EngineRequest(prompt, SamplingParams(max_tokens=tokens, temperature=0))
    text, done = "", None
    for event in engine.submit(request):
        if isinstance(event, Delta):
            text += event.text
        elif isinstance(event, Finished):
            done = event
    assert done is not None and done.finish_reason in ("stop", "length"), done
    return text, done


def test_a_returning_conversation_is_loaded_from_ram_not_recomputed(embedded: Path) -> None:
    from lmfast.inference.llamacpp import LlamaCppEngine

    engine = LlamaCppEngine(embedded, n_ctx=1024, parallel=2)
    try:
        chats = {
            name: [{"role": "system", "content": f"{SYSTEM} Your name is {name}."},
                   {"role": "user", "content": question}]
            for name, question in (("Ada", "Can I return boots I wore once?"),
                                   ("Bo", "How long does delivery take?"),
                                   ("Cy", "What warranty does a tent have?"))
        }  # fmt: skip
        first = {name: _ask(engine, chat) for name, chat in chats.items()}
        # The instructions before the names are shared: later chats start from them.
        assert first["Ada"][1].cached_tokens == 0
        assert first["Bo"][1].cached_tokens > 40 and first["Cy"][1].cached_tokens > 40
        # Three conversations, two slots: Ada's slot went on to another chat, her state to RAM.
        assert engine.stats()["prompt_cache_entries"] >= 1
        ada = [*chats["Ada"], {"role": "assistant", "content": first["Ada"][0]},
               {"role": "user", "content": "And sandals?"}]  # fmt: skip
        _, again = _ask(engine, ada)
        stats = engine.stats()
        assert stats["prompt_cache_hits"] == 1, stats
        # Everything Ada's first turn held is reused: its prompt and most of the reply.
        assert again.cached_tokens >= first["Ada"][1].prompt_tokens, again
        assert again.cached_tokens < again.prompt_tokens
    finally:
        engine.close()


def test_slots_share_one_pool_and_wait_for_room(embedded: Path) -> None:
    from lmfast.inference.llamacpp import LlamaCppEngine

    # Four slots, a pool of two windows: at most two of these requests (a window each at
    # their longest) run at once; the others wait for room instead of failing.
    engine = LlamaCppEngine(embedded, n_ctx=512, parallel=4, kv_tokens=1024)
    try:
        results: dict[int, object] = {}
        chats = [[{"role": "user", "content": f"Count from {i} to {i + 40}."}] for i in range(4)]
        peak = []

        def ask(i: int) -> None:
            results[i] = _ask(engine, chats[i], tokens=400)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            peak.append(engine.stats()["running"])
            threads[0].join(0.05)
        assert len(results) == 4 and max(peak) == 2, (len(results), max(peak))
    finally:
        engine.close()


def test_shared_system_prompt_is_cached_through_the_openai_client(embedded: Path) -> None:
    from lmfast.config import ServeConfig
    from lmfast.serving import build_app

    with running(build_app(str(embedded), ServeConfig(context_length=1024))) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x")
        model = client.models.list().data[0].id
        usages = []
        for question in ("Can I return a stove?", "Is delivery free?", "Do you ship to France?"):
            chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
            out = client.chat.completions.create(
                model=model,
                messages=chat,  # type: ignore[arg-type]
                max_tokens=8,
                temperature=0,
            )
            usages.append(out.usage)
        ask = {"prompt": SYSTEM, "add_special_tokens": False}
        counted = httpx.post(f"{base}/tokenize", json=ask)
        system_tokens = counted.json()["count"]
        assert usages[0].prompt_tokens_details.cached_tokens == 0  # type: ignore[union-attr]
        for usage in usages[1:]:
            cached = usage.prompt_tokens_details.cached_tokens  # type: ignore[union-attr]
            assert system_tokens <= cached < usage.prompt_tokens, (cached, system_tokens)
        assert metric(base, "lmfast_prompt_cache_bytes") >= 0
