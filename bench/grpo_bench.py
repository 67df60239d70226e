"""GRPO benchmark: LMFast's `training.method=grpo` with bare defaults against TRL's
GRPOTrainer used directly with its own defaults, same model, data and reward.

    uv run python bench/grpo_bench.py [--prompts 100] [--trl-steps 3]

The task (built here, seeded): sums of two numbers from 1 to 20 ("What is 13 + 7?"; the
base model gets about a fifth right, so groups differ and GRPO has a signal), scored by the
built-in exact_answer reward (the last number of the answer). 20 % of the prompts are
held out; greedy answers to them are scored before and after training. LMFast runs with
nothing set but the reward (LoRA, derived batch, rate, completion length and passes); TRL
runs GRPOConfig()'s defaults (full weights, 8 completions of up to 512 tokens, rate 1e-6)
for --trl-steps steps, enough to time a step. Per side: time per step, completions and
tokens per second, the share of time spent sampling, and held-out accuracy. Also timed:
the same completions sampled by llama.cpp from the GGUF, what a llama.cpp sampler could
save (the policy would have to be re-exported each step, which is not counted).
Results go to bench/results/grpo.json and the reward curve to bench/results/grpo_reward.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
WORK = Path(os.environ.get("LMFAST_BENCH_DIR", "/tmp/lmfast-grpo-bench"))
MODEL = "smollm2-135m-instruct"


def make_data(n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path = WORK / "sums.jsonl"
    seen: set[tuple[int, int]] = set()
    with open(path, "w") as f:
        while len(seen) < n:
            a, b = rng.randint(1, 20), rng.randint(1, 20)
            if (a, b) in seen:
                continue
            seen.add((a, b))
            f.write(json.dumps({"prompt": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n")
    return path


def run_lmfast(data: Path) -> dict[str, Any]:
    from lmfast.config import load_config
    from lmfast.training.finetune import FineTuneRequest, fine_tune

    cfg = load_config(
        None,
        [
            f"data.path={data}",
            "data.validation_split=0.2",
            "training.method=grpo",
            "training.grpo.rewards=[exact_answer]",
            "training.tracker=none",
        ],
    )
    started = time.perf_counter()
    result = fine_tune(FineTuneRequest(config=cfg, fresh=True), _print)
    m = result.metrics
    shutil.copy(Path(result.path) / "reward_curve.png", HERE / "results" / "grpo_reward.png")
    history = json.loads((Path(result.path) / "log_history.json").read_text())
    lengths = [h["completions/mean_length"] for h in history if "completions/mean_length" in h]
    plan = json.loads((Path(result.path) / "manifest.json").read_text())["extra"]["plan"]
    return {
        "steps": m["steps"],
        "seconds_per_step": m["train_seconds"] / m["steps"],
        "completions_per_second": m["completions_per_second"],
        "mean_completion_tokens": sum(lengths) / len(lengths),
        "generation_share": m["generation_share"],
        "held_out_before": m["base_reward_exact_answer"],
        "held_out_after": m["trained_reward_exact_answer"],
        "first_reward": m.get("first_reward"),
        "last_reward": m.get("last_reward"),
        "wall_seconds": time.perf_counter() - started,
        "settings": {c["setting"]: c["value"] for c in plan.get("choices", [])},
        "completions_per_step": plan["effective_batch_size"],
    }


def run_trl(data: Path, steps: int) -> dict[str, Any]:
    """TRL as its documentation shows it: GRPOConfig defaults, a reward function, a model."""
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from lmfast.config import GRPOSettings
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.loading import load_transformers
    from lmfast.registry import resolve_model
    from lmfast.training.grpo import held_out_rewards, render_prompts
    from lmfast.training.rewards import exact_answer, load_rewards
    from lmfast.training.run import split_held_out

    rows = [json.loads(x) for x in data.read_text().splitlines()]
    tok = load_tokenizer(MODEL)
    train_rows, held = split_held_out(render_prompts(rows, tok), 0.2, 42, "prompts")
    model, tok = load_transformers(resolve_model(MODEL))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token

    def reward(completions: list[Any], answer: list[str], **_: Any) -> list[float | None]:
        return exact_answer([c if isinstance(c, str) else c[0]["content"] for c in completions],
                            answer=answer)  # fmt: skip

    args = GRPOConfig(
        output_dir=str(WORK / "trl"),
        max_steps=steps,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=datasets.Dataset.from_list(train_rows),
        processing_class=tok,
    )
    out = trainer.train()
    runtime = out.metrics["train_runtime"]
    history = trainer.state.log_history
    lengths = [h["completions/mean_length"] for h in history if "completions/mean_length" in h]
    completions = steps * args.per_device_train_batch_size * args.gradient_accumulation_steps
    rewards = load_rewards(GRPOSettings(rewards=["exact_answer"]))
    # Scored as LMFast's run scores its answers: up to 128 tokens.
    after = held_out_rewards(trainer.model, tok, rewards, held, 128)["exact_answer"]
    return {
        "steps": steps,
        "seconds_per_step": runtime / steps,
        "completions_per_second": completions / runtime,
        "mean_completion_tokens": sum(lengths) / len(lengths),
        "completions_per_step": args.per_device_train_batch_size * args.gradient_accumulation_steps,
        "settings": {
            "num_generations": args.num_generations,
            "max_completion_length": args.max_completion_length,
            "learning_rate": args.learning_rate,
            "weights": "all (no adapter)",
        },
        "held_out_after": after,
    }


def time_llamacpp(data: Path, completions: int, max_tokens: int) -> dict[str, float]:
    """The same number of completions sampled by llama.cpp from the embedded GGUF."""
    from lmfast.generation import get_pipeline
    from lmfast.inference.base import ChatMessage, SamplingParams

    rows = [json.loads(x) for x in data.read_text().splitlines()][: max(1, completions // 4)]
    pipe = get_pipeline(MODEL)
    pipe.chat([ChatMessage(role="user", content="hi")], SamplingParams(max_tokens=1))  # warm
    started = time.perf_counter()
    submitted = [  # all at once: the engine batches them, as a GRPO sampler would
        pipe.submit(
            [ChatMessage(role="user", content=row["prompt"])],
            SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=i * 4 + k),
        )
        for i, row in enumerate(rows)
        for k in range(4)
    ]
    tokens = sum(pipe.collect(*s).completion_tokens for s in submitted)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "completions": len(submitted), "tokens": tokens}


def _print(step: int, total: int | None, message: str, **_: Any) -> None:
    print(f"[{step}/{total or '?'}] {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--trl-steps", type=int, default=3)
    parser.add_argument("--skip-trl", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LMFAST_HOME", str(WORK / "home"))
    data = make_data(args.prompts)
    results: dict[str, Any] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "task": f"{args.prompts} sums of numbers 1-20, exact_answer reward, 20 % held out",
    }
    results["lmfast"] = run_lmfast(data)
    lm = results["lmfast"]
    per_step = lm["completions_per_step"]
    budget = int(lm["settings"].get("training.grpo.max_completion_length", 128))
    results["llamacpp_sampling"] = time_llamacpp(data, per_step, budget)
    gen_seconds = lm["seconds_per_step"] * lm["generation_share"]
    results["llamacpp_sampling"]["transformers_seconds_per_step"] = gen_seconds
    if not args.skip_trl:
        results["trl"] = run_trl(data, args.trl_steps)
        trl = results["trl"]
        results["ratio_completions_per_second"] = (
            lm["completions_per_second"] / trl["completions_per_second"]
        )
    out = HERE / "results" / "grpo.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
