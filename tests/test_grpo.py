"""training.method=grpo: the built-in rewards, the reward contract's errors, prompt rows
checked by line, settings derived from the prompts, and a tiny GRPO run whose reward rises
and whose every trainable tensor moves."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from lmfast.config import GRPOSettings, load_config
from lmfast.data.readers import DataError
from lmfast.training.rewards import (
    RewardError,
    exact_answer,
    guarded,
    json_valid,
    length_reward,
    load_rewards,
    tool_call,
)
from tests.tiny_models import make_tiny_llama

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALC = {
    "type": "function",
    "function": {
        "name": "calculator",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
    },
}


def test_exact_answer_compares_numbers_by_value_and_text_loosely() -> None:
    completions = [
        "Thought: add them.\nAnswer: 1,234",
        "The total is 1234.0",
        "Answer: 1233",
        "Answer: Paris.",
        "answer: the city of paris",
        "no number here",
    ]
    answers = ["1234", "1234", "1234", "paris", "Paris", "7"]
    assert exact_answer(completions, answer=answers) == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="no 'answer' field"):
        exact_answer(["x"])


def test_json_valid_checks_the_rows_schema() -> None:
    schema = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    out = json_valid(
        ['{"name": "a"}', '```json\n{"name": "b"}\n```', '{"name": 3}', "{oops", "[1, 2]"],
        schema=[schema, schema, schema, schema, None],
    )
    assert out == [1.0, 1.0, 0.0, 0.0, 1.0]


def test_tool_call_scores_validity_and_the_expected_tool() -> None:
    tools = [WEATHER, CALC]
    call = '<tool_call>{{"name": "{}", "arguments": {}}}</tool_call>'
    completions = [
        "Thought: look it up.\n" + call.format("weather", '{"city": "Oslo"}'),
        call.format("calculator", '{"expression": "2+2"}'),  # valid, but not the tool asked
        call.format("weather", '{"town": "Oslo"}'),  # misses the required argument
        call.format("search", '{"q": "x"}'),  # no such tool
        "Answer: sunny",  # no call at all
        call.format("weather", '{"city": "Oslo"}'),  # a row without tools does not apply
    ]
    rows_tools: list[Any] = [json.dumps(tools)] * 5 + [None]
    expected: list[str | None] = ["weather"] * 6
    assert tool_call(completions, tools=rows_tools, tool=expected) == [
        1.0,
        0.5,
        0.0,
        0.0,
        0.0,
        None,
    ]


def test_length_reward_counts_tokens() -> None:
    fn = length_reward(GRPOSettings(rewards=["length"], target_length=4))
    assert fn(["a", "b"], completion_ids=[[1, 2, 3], [1] * 8]) == [1.0, 0.5]


def test_reward_errors_name_the_function_and_the_completion() -> None:
    def broken(completions: list[str], **_: Any) -> list[float]:
        raise KeyError("answer")

    with pytest.raises(RewardError, match=r"reward 'mine:broken' raised KeyError.*'Hello there'"):
        guarded("mine:broken", broken)(prompts=["p"], completions=["Hello there"])
    with pytest.raises(RewardError, match="returned 1 values for 2 completions"):
        guarded("short", lambda completions, **_: [1.0])(prompts=["p", "q"], completions=["a", "b"])
    with pytest.raises(RewardError, match=r"returned nan for completion 1 \('b'\)"):
        guarded("nan", lambda completions, **_: [1.0, math.nan])(
            prompts=["p", "q"], completions=["a", "b"]
        )
    with pytest.raises(RewardError, match="returned 'high'"):
        guarded("text", lambda completions, **_: ["high"])(prompts=["p"], completions=["a"])
    # TRL's conversational completions arrive as text; None means "does not apply"
    fn = guarded(
        "ok", lambda completions, **_: [None if c == "skip" else len(c) for c in completions]
    )
    out = fn(prompts=["p", "q"], completions=[[{"role": "assistant", "content": "abc"}], "skip"])
    assert out == [3.0, None]


def test_user_rewards_load_from_files_and_modules(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(
        "def shout(completions, **_):\n    return [float(c.isupper()) for c in completions]\n"
    )
    fns = load_rewards(GRPOSettings(rewards=[f"{tmp_path}/mine.py:shout", "exact_answer"]))
    assert [f.__name__ for f in fns] == ["shout", "exact_answer"]
    assert fns[0](prompts=["p", "p"], completions=["HI", "hi"]) == [1.0, 0.0]
    from lmfast.errors import LMFastError

    with pytest.raises(LMFastError, match="has no whisper"):
        load_rewards(GRPOSettings(rewards=[f"{tmp_path}/mine.py:whisper"]))
    with pytest.raises(LMFastError, match="cannot import 'no_such_module_xyz'"):
        load_rewards(GRPOSettings(rewards=["no_such_module_xyz:f"]))
    with pytest.raises(LMFastError, match="no file"):
        load_rewards(GRPOSettings(rewards=[f"{tmp_path}/absent.py:f"]))


def test_recipe_errors_name_the_setting() -> None:
    from lmfast.errors import ConfigError

    with pytest.raises(ConfigError, match=r"needs training\.grpo\.rewards"):
        load_config(None, ["training.method=grpo"])
    with pytest.raises(ConfigError, match="'nope' is neither a built-in reward"):
        load_config(None, ["training.method=grpo", "training.grpo.rewards=[nope]"])
    with pytest.raises(ConfigError, match="2 values for 1 rewards"):
        load_config(
            None,
            [
                "training.method=grpo",
                "training.grpo.rewards=[exact_answer]",
                "training.grpo.reward_weights=[1.0, 2.0]",
            ],
        )


def test_prompt_rows_are_checked_by_line(tmp_path: Path) -> None:
    from lmfast.training.grpo import read_prompt_files

    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"prompt": "ok", "answer": "1"}\n{"question": "no prompt"}\nnot json\n'
        '{"prompt": [{"role": "user", "content": "hi"}]}\n{"prompt": "  "}\n'
    )
    with pytest.raises(DataError) as e:
        read_prompt_files(str(path))
    message = str(e.value)
    assert "3 of 5 prompt rows are unusable" in message
    assert "p.jsonl:2" in message and "fields: question" in message
    assert "p.jsonl:3" in message and "p.jsonl:5" in message


def test_settings_are_derived_from_the_prompts() -> None:
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.registry import model_spec
    from lmfast.training.grpo import derive_grpo, render_prompts

    tok = load_tokenizer("smollm2-135m-instruct")
    spec = model_spec("smollm2-135m-instruct")
    rows = render_prompts(
        [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(40)], tok
    )
    cfg = load_config(None, ["training.method=grpo", "training.grpo.rewards=[exact_answer]"])
    lengths = [20] * 30 + [70] * 9 + [128]  # the model's greedy answers, in tokens
    config, shape, choices = derive_grpo(cfg, rows, tok, spec, "cpu", lengths)
    t = config.training
    assert t.grpo.max_completion_length == 128  # a power of two covering 90 % (70 tokens)
    short, _, _ = derive_grpo(cfg, rows, tok, spec, "cpu", [3] * 40)
    assert short.training.grpo.max_completion_length == 32  # the floor
    long = [300] * 40  # rambling answers: cut where sampling stays affordable
    cpu, _, why = derive_grpo(cfg, rows, tok, spec, "cpu", long)
    assert cpu.training.grpo.max_completion_length == 128
    assert "cut at 128" in next(c.reason for c in why if c.setting.endswith("completion_length"))
    gpu, _, _ = derive_grpo(cfg, rows, tok, spec, "cuda", long)
    assert gpu.training.grpo.max_completion_length == 512
    assert t.effective_batch_size == 16  # 4 prompts x 4 completions on a CPU
    assert t.epochs == 3  # 40 prompts = 10 steps a pass: as many passes as allowed
    assert t.learning_rate == pytest.approx(1e-4)  # a tenth of LoRA SFT's on 135M
    assert shape.kind == "prompts" and shape.rows == 160 and shape.lengths.documents == 40
    assert {c.setting for c in choices} >= {
        "training.grpo.max_completion_length",
        "training.effective_batch_size",
        "training.learning_rate",
    }
    odd = load_config(
        None,
        [
            "training.method=grpo",
            "training.grpo.rewards=[exact_answer]",
            "training.effective_batch_size=10",
        ],
    )
    from lmfast.errors import LMFastError

    with pytest.raises(LMFastError, match=r"not a multiple of training\.grpo\.num_generations=4"):
        derive_grpo(odd, rows, tok, spec, "cpu", lengths)


class _Snapshot:
    """Trainable tensors at the start and the end of training."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        outer = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                               **kw: Any) -> None:  # fmt: skip
                outer.before = _trainable(model)

            def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None,
                             **kw: Any) -> None:  # fmt: skip
                outer.after = _trainable(model)

        self.callback = Callback()
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}


def _trainable(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.slow
def test_grpo_raises_the_reward_and_moves_every_trainable_tensor(tmp_path: Path) -> None:
    """A toy reward a 2-layer model can learn: the share of sampled tokens from a quarter of
    the vocabulary that one direction of the hidden state favours."""
    import torch
    from safetensors.torch import load_file

    from lmfast.artifacts import ArtifactStore
    from lmfast.training.finetune import FineTuneRequest, fine_tune

    tiny = make_tiny_llama(tmp_path / "tiny")
    head = load_file(str(tiny / "model.safetensors"))["lm_head.weight"]
    direction = torch.randn(head.shape[1], generator=torch.Generator().manual_seed(0))
    favoured = torch.argsort(head @ direction, descending=True)[: head.shape[0] // 4].tolist()
    (tmp_path / "favoured.json").write_text(json.dumps(favoured))
    (tmp_path / "toy_reward.py").write_text(
        "import json, pathlib\n"
        "FAV = set(json.loads((pathlib.Path(__file__).parent / 'favoured.json').read_text()))\n"
        "def favoured(completions, completion_ids, **_):\n"
        "    return [sum(i in FAV for i in ids) / max(1, len(ids)) for ids in completion_ids]\n"
    )
    data = tmp_path / "prompts.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Say something about item {i}."}) + "\n" for i in range(16))
    )
    cfg = load_config(
        None,
        [
            f"model.reference={tiny}",
            f"data.path={data}",
            f"training.grpo.rewards=[{tmp_path}/toy_reward.py:favoured]",
            "training.method=grpo",
            "training.grpo.max_completion_length=8",
            "training.max_steps=20",
            "training.learning_rate=0.01",
            "training.logging_steps=1",
            "training.tracker=none",
        ],
    )
    snapshot = _Snapshot()
    events: list[str] = []
    result = fine_tune(
        FineTuneRequest(config=cfg),
        lambda step, total, message, **kw: events.append(message),
        callbacks=[snapshot.callback],
    )
    m = result.metrics
    assert m["steps"] == 20
    history = json.loads((Path(result.path) / "log_history.json").read_text())
    rewards = [h["reward"] for h in history if "reward" in h]
    assert len(rewards) >= 16
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.05, rewards
    assert m["trained_reward_favoured"] > m["base_reward_favoured"]
    assert 0 < m["generation_share"] < 1
    assert snapshot.before and snapshot.before.keys() == snapshot.after.keys()
    unchanged = [n for n, p in snapshot.before.items() if torch.equal(p, snapshot.after[n])]
    assert not unchanged, unchanged
    assert (Path(result.path) / "reward_curve.png").stat().st_size > 1000
    assert any("reward" in e and "spread" in e for e in events)
    art = ArtifactStore().get(result.artifact_id)
    assert art.manifest.extra["method"] == "grpo"
    dataset = ArtifactStore().get(result.dataset_artifact)
    assert dataset.manifest.extra["report"]["format"] == "prompts"


def test_cli_reward_flag_means_grpo_and_bad_rewards_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lmfast.cli.app import app

    data = tmp_path / "p.jsonl"
    data.write_text('{"prompt": "What is 2 + 2?", "answer": "4"}\n')
    runner = CliRunner()
    bad = runner.invoke(app, ["train", "-d", str(data), "--reward", "nope"])
    assert bad.exit_code == 2
    assert "'nope' is neither a built-in reward" in bad.stderr
    mixed = runner.invoke(app, ["train", "-d", str(data), "--reward", "exact_answer",
                                "--method", "sft"])  # fmt: skip
    assert mixed.exit_code == 2 and "training.grpo.rewards only apply" in mixed.stderr


@pytest.mark.slow
def test_an_interrupted_grpo_run_resumes_and_its_adapter_trains_on(tmp_path: Path) -> None:
    """Resume from the last checkpoint; then a run whose model is that adapter goes on
    training it (its weights as they were, all moving), saved over the same base."""
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from lmfast.artifacts import ArtifactStore
    from lmfast.training.finetune import FineTuneRequest, fine_tune

    tiny = make_tiny_llama(tmp_path / "tiny")
    data = tmp_path / "prompts.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"Item {i}?", "answer": str(i)}) + "\n" for i in range(8))
    )
    # A reward with spread in every group, so each step moves the weights.
    (tmp_path / "even.py").write_text(
        "def even(completion_ids, **_):\n"
        "    return [sum(i % 2 == 0 for i in ids) / max(1, len(ids)) for ids in completion_ids]\n"
    )
    cfg = load_config(
        None,
        [
            f"model.reference={tiny}",
            f"data.path={data}",
            f"training.grpo.rewards=[{tmp_path}/even.py:even]",
            "training.method=grpo",
            "training.grpo.max_completion_length=4",
            "training.learning_rate=0.01",
            "training.max_steps=4",
            "training.save_steps=2",
            "training.tracker=none",
        ],
    )

    class Interrupt(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == 3:
                raise KeyboardInterrupt

    request = FineTuneRequest(config=cfg)
    with pytest.raises(KeyboardInterrupt):
        fine_tune(request, callbacks=[Interrupt()])
    resumed = fine_tune(request)
    assert resumed.resumed_from_step == 2
    assert resumed.metrics["steps"] == 4

    on = cfg.model_copy(deep=True)
    on.model.reference = resumed.artifact_id
    on.training.max_steps = 2
    snapshot = _Snapshot()
    further = fine_tune(FineTuneRequest(config=on), callbacks=[snapshot.callback])
    saved = load_file(str(Path(resumed.path) / "adapter_model.safetensors"))
    started = {n.replace(".default", ""): p for n, p in snapshot.before.items()}
    assert started.keys() == saved.keys()
    assert all(torch.equal(started[k], saved[k]) for k in saved)
    assert all(not torch.equal(snapshot.before[n], snapshot.after[n]) for n in snapshot.before)
    adapter_cfg = json.loads((Path(further.path) / "adapter_config.json").read_text())
    assert Path(adapter_cfg["base_model_name_or_path"]) == tiny.resolve()
    assert ArtifactStore().get(further.artifact_id).manifest.parents[0] == resumed.artifact_id
