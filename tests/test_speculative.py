"""Speculative decoding with a draft model: the output is the output without it (greedy and
seeded sampling), drafted tokens are both kept and refused along the way, the acceptance
shows in /metrics, and drafts that cannot work are refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import openai
import pytest

from lmfast.registry import resolve_model
from tests.gguf_surgery import first_layers
from tests.server_utils import metric, running

PROMPTS = [
    "Write a short story about a dragon who learns to fly.",
    "List three facts about the Moon.",
    "What is 17 times 23? Explain step by step.",
    "Translate 'good morning, friends' into French and Spanish.",
]


@pytest.fixture(scope="module")
def embedded() -> Path:
    return resolve_model().path


@pytest.fixture(scope="module")
def shallow_draft(embedded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model's first 10 of 30 layers, untrained: right often enough to be kept
    sometimes, wrong often enough that refused drafts are exercised."""
    return first_layers(embedded, tmp_path_factory.mktemp("draft") / "draft.gguf", 10)


def _replies(engine, prompts: list[str], **params: object) -> list[str]:  # type: ignore[no-untyped-def]
    from lmfast.inference.base import ChatMessage, Delta, EngineRequest, SamplingParams

    out = []
    for text in prompts:
        prompt = engine.render_chat([ChatMessage(role="user", content=text)])
        request = EngineRequest(prompt, SamplingParams(max_tokens=48, **params))  # type: ignore[arg-type]
        out.append("".join(e.text for e in engine.submit(request) if isinstance(e, Delta)))
    return out


def test_output_with_a_draft_is_the_output_without_it(embedded: Path, shallow_draft: Path) -> None:
    from lmfast.inference.llamacpp import LlamaCppEngine

    plain = LlamaCppEngine(embedded, n_ctx=1024)
    try:
        greedy = _replies(plain, PROMPTS, temperature=0)
        sampled = _replies(plain, PROMPTS[:2], temperature=0.8, seed=7)
    finally:
        plain.close()
    assert len(set(greedy)) == len(PROMPTS) and all(len(r) > 40 for r in greedy)

    for draft in (shallow_draft, embedded):  # a poor draft, and a perfect one
        engine = LlamaCppEngine(embedded, n_ctx=1024, draft=draft, draft_max=6, draft_min=6)
        try:
            assert _replies(engine, PROMPTS, temperature=0) == greedy
            stats = engine.stats()
            # The sampler draws once per token kept, as without a draft: same seed, same text.
            assert _replies(engine, PROMPTS[:2], temperature=0.8, seed=7) == sampled
        finally:
            engine.close()
        assert stats["draft_tokens"] > 40, stats
        if draft == embedded:  # greedy guesses of the model itself: nearly all kept
            assert stats["draft_accepted"] >= 0.95 * stats["draft_tokens"], stats
        else:  # some kept, some refused: both paths of the check ran
            assert 0 < stats["draft_accepted"] < 0.9 * stats["draft_tokens"], stats


def test_served_with_a_draft_same_answers_and_acceptance_in_metrics(
    embedded: Path, shallow_draft: Path
) -> None:
    from lmfast.config import ServeConfig
    from lmfast.serving import build_app

    def answers(config: ServeConfig) -> tuple[list[str], str]:
        with running(build_app(str(embedded), config)) as base:
            client = openai.OpenAI(base_url=f"{base}/v1", api_key="x")
            model = client.models.list().data[0].id
            out = [
                client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": p}],
                    max_tokens=32,
                    temperature=0,
                ).choices[0].message.content
                or ""
                for p in PROMPTS[:2]
            ]
            # Streaming goes through the same verification.
            stream = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": PROMPTS[2]}],
                max_tokens=32, temperature=0, stream=True,
            )  # fmt: skip
            out.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
            text = httpx.get(f"{base}/metrics").text
            if config.draft:
                assert metric(base, "lmfast_draft_tokens") > 0
                rate = metric(base, "lmfast_draft_acceptance_rate")
                kept = metric(base, "lmfast_draft_accepted_tokens")
                assert rate == pytest.approx(kept / metric(base, "lmfast_draft_tokens"))
                assert 0 < rate < 1
            return out, text

    plain, plain_metrics = answers(ServeConfig(context_length=1024))
    config = ServeConfig(context_length=1024, draft=str(shallow_draft), draft_max=4, draft_min=4)
    drafted, _ = answers(config)
    assert drafted == plain
    assert "lmfast_draft_tokens" not in plain_metrics


def test_drafts_that_cannot_draft_are_refused_by_name(embedded: Path, tmp_path: Path) -> None:
    from lmfast.config import ServeConfig
    from lmfast.errors import ConfigError
    from lmfast.export.gguf_convert import hf_to_gguf
    from lmfast.inference.llamacpp import LlamaCppEngine
    from lmfast.serving import build_app
    from tests.tiny_models import make_tiny_llama

    tiny = make_tiny_llama(tmp_path / "tiny", extra_token="<extra>")
    other_vocab = Path(hf_to_gguf(tiny, tmp_path / "tiny.gguf", "f32").path)
    with pytest.raises(ValueError, match=r"draft tiny.gguf: its vocabulary has 49153 tokens "
                       r"and SmolLM2.*'s 49152"):  # fmt: skip
        LlamaCppEngine(embedded, n_ctx=512, draft=other_vocab)
    respelled = first_layers(embedded, tmp_path / "respelled.gguf", 2, rename={1000: "zzz"})
    with pytest.raises(ValueError, match=r"token 1000 is 'zzz' in the draft and '.+' in"):
        LlamaCppEngine(embedded, n_ctx=512, draft=respelled)
    with pytest.raises(ConfigError, match=r"serve.draft: .* is a hf model; the draft must be"):
        build_app(str(embedded), ServeConfig(draft=str(tiny)))
    with pytest.raises(ConfigError, match=r"serve.draft: model '/nowhere.gguf' not found"):
        build_app(str(embedded), ServeConfig(draft="/nowhere.gguf"))
    with pytest.raises(ConfigError, match=r"speculative decoding runs in llama\.cpp"):
        build_app(str(tiny), ServeConfig(draft=str(other_vocab)))
    # The server stops with the reason when the draft's vocabulary differs.
    reasons: list[str] = []
    config = ServeConfig(draft=str(other_vocab))
    app = build_app(str(embedded), config, on_load_error=reasons.append)
    with running(app, wait_ready=False) as base:
        for _ in range(200):
            if reasons:
                break
            httpx.get(f"{base}/health")
    assert reasons and "vocabulary" in reasons[0], reasons


def test_speculate_command_measures_a_draft(
    embedded: Path, shallow_draft: Path, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from lmfast.cli.app import app
    from tests.tiny_models import make_tiny_llama

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"messages": [{"role": "user", "content": PROMPTS[1]}]})
        + "\n\n"
        + json.dumps({"prompt": PROMPTS[2]})
        + "\n"
    )
    runner = CliRunner()
    args = ["speculate", str(embedded), "--draft", str(shallow_draft), "--prompts", str(prompts),
            "--max-tokens", "24", "--draft-max", "3", "--draft-min", "3", "--json"]  # fmt: skip
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["prompts"] == 2 and report["identical"] is True
    assert report["tokens"] == 48 and report["draft_max"] == 3
    assert report["drafted"] > 0 and 0 <= report["accepted"] <= report["drafted"]
    assert report["acceptance"] == pytest.approx(report["accepted"] / report["drafted"], abs=1e-4)
    assert report["speedup"] == pytest.approx(
        report["tokens_per_s_with_draft"] / report["tokens_per_s_alone"], rel=0.01
    )
    tiny = make_tiny_llama(tmp_path / "tiny")
    refused = runner.invoke(app, ["speculate", str(embedded), "--draft", str(tiny)])
    assert refused.exit_code == 2 and "hf model" in refused.output, refused.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"answer": "x"}\n')
    failed = runner.invoke(app, ["speculate", str(embedded), "--draft", str(shallow_draft),
                                 "--prompts", str(bad)])  # fmt: skip
    assert failed.exit_code == 2
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", failed.output).split())
    assert "--prompts" in said and ":1: no prompt, text or messages field" in said, said


def test_the_plan_drafts_only_where_checking_tokens_together_is_cheap() -> None:
    from lmfast.inference.speculative import SpeculationPlan

    # Compute-bound (this machine, a 135M model): k+1 tokens cost k+1 decodes. Nothing pays,
    # except a look now and then.
    linear = SpeculationPlan([0.006 * (n + 1) for n in range(5)], draft_s=0.002, alpha=0.9)
    asked = [linear.tokens() for _ in range(128)]
    assert asked.count(0) == 126 and set(asked) == {0, 2}
    # Memory-bound (weights read once per decode): checking 5 tokens costs 1.3 decodes.
    flat = SpeculationPlan([0.010 + 0.00075 * n for n in range(5)], draft_s=0.001, alpha=0.8)
    assert flat.tokens() == 4
    assert flat.rate(4) > 1.5 * flat.rate(0)
    for _ in range(40):  # the draft keeps being refused at once: stop drafting
        flat.observe(drafted=4, accepted=0)
    assert flat.alpha < 0.1 and flat.tokens() == 0
    for _ in range(40):  # and right again: draft again
        flat.observe(drafted=4, accepted=4)
    assert flat.alpha > 0.9 and flat.tokens() == 4
