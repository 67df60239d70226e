"""Specialization benchmark: `lmfast agent specialize` on two tool sets, scored on held-out
tasks it never trained on, against the base model.

    uv run python bench/specialize_bench.py [--sets city,shop] [--train-tasks 300]
        [--grpo-steps 30]

Set "city": the agent benchmark's tools (calculator, convert_units, lookup_city), trained
from bench/specialize/city_tasks.yaml; held out: the agent benchmark's own 34 tasks
(bench/agent_bench.py), whose wording the task file avoids. Set "shop": three tools the
first set does not share (stock_level, order_total, convert_currency:
bench/specialize/shop_tools.py), trained from bench/specialize/shop_tasks.yaml; held out:
24 tasks written here in other words, 4 of them requests no tool fits.

Each set runs the specialization end to end with its defaults (tasks, LoRA SFT, merged
GGUF, its own held-out scoring), timed; with --grpo-steps, GRPO on the agent's turns
follows SFT and both stages are scored. Then on the independent held-out suite: the base
model as the agent benchmark runs it best (constrained, first step a tool call, no Thought
line, tools as JSON schemas), the base model with the Agent's defaults, and the
specialized model with the settings it carries. Success: the final answer holds the
expected number (1 %) or word; a refusal task, no tool called. Valid calls: calls that
parse and fit their schema. Results go to bench/results/specialize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE / "specialize")]

from agent_bench import task_suite  # noqa: E402
from lmfast.agents.specialize import (  # noqa: E402
    SpecializeRequest,
    score_agent,
    specialize,
)
from lmfast.agents.taskgen import TaskInstance  # noqa: E402
from lmfast.agents.toolsets import resolve_tools  # noqa: E402
from shop_tools import STOCK, convert_currency, order_total  # noqa: E402

from lmfast.config import DEFAULT_MODEL  # noqa: E402


def _n(text: str) -> float:
    return float(text.split()[0])


def _worth(item: str, store: str, currency: str | None = None) -> float:
    total = _n(order_total(item=item, quantity=STOCK[item, store]))
    if currency is None:
        return total
    return _n(convert_currency(amount=total, from_currency="EUR", to_currency=currency))


def shop_suite() -> list[dict[str, Any]]:
    """Held-out shop tasks, worded unlike shop_tasks.yaml; expected values from the tools."""
    cost = lambda item, q: _n(order_total(item=item, quantity=q))  # noqa: E731
    money = lambda x, a, b: _n(convert_currency(amount=x, from_currency=a, to_currency=b))  # noqa: E731
    rows = [
        ("stock", "I need the number of lamps the Dublin store has.", STOCK["lamp", "Dublin"]),
        ("stock", "Are there any backpacks left in Madrid, and how many?",
         STOCK["backpack", "Madrid"]),
        ("stock", "Tell me Berlin's pen inventory.", STOCK["pen", "Berlin"]),
        ("stock", "How many mugs does the Madrid store keep?", STOCK["mug", "Madrid"]),
        ("stock", "What's the notebook count in Dublin?", STOCK["notebook", "Dublin"]),
        ("order", "If I buy 12 mugs, what's the bill?", cost("mug", 12)),
        ("order", "How much do 7 backpacks cost altogether?", cost("backpack", 7)),
        ("order", "I want 30 pens. What's the total?", cost("pen", 30)),
        ("order", "Cost of an order of 4 lamps, please.", cost("lamp", 4)),
        ("order", "What is the total for 25 notebooks?", cost("notebook", 25)),
        ("currency", "Please convert 40 GBP to EUR.", money(40, "GBP", "EUR")),
        ("currency", "I have 250 US dollars; how many euros is that?", money(250, "USD", "EUR")),
        ("currency", "What is 12000 JPY in USD?", money(12000, "JPY", "USD")),
        ("currency", "Exchange 75.50 euros for pounds.", money(75.5, "EUR", "GBP")),
        ("multi-step", "If I buy 3 backpacks, how much is that in dollars?",
         money(cost("backpack", 3), "EUR", "USD")),
        ("multi-step", "I'd like 20 staplers; tell me the cost in GBP.",
         money(cost("stapler", 20), "EUR", "GBP")),
        ("multi-step", "What's the total value of the mugs in the Dublin store?",
         _worth("mug", "Dublin")),
        ("multi-step", "How much is Madrid's whole backpack inventory worth?",
         _worth("backpack", "Madrid")),
        ("multi-step", "In US dollars, what are all the lamps in Madrid worth?",
         _worth("lamp", "Madrid", "USD")),
        ("multi-step", "What is Berlin's stapler stock worth in pounds?",
         _worth("stapler", "Berlin", "GBP")),
        ("refusal", "Write me a haiku about staplers.", None),
        ("refusal", "What's the weather in Berlin today?", None),
        ("refusal", "Tell me a fun fact about pens.", None),
        ("refusal", "Can you recommend a good film for tonight?", None),
    ]  # fmt: skip
    return [{"kind": k, "task": t, "expected": e} for k, t, e in rows]


def instances(suite: list[dict[str, Any]]) -> list[TaskInstance]:
    out = []
    for t in suite:
        expected = t["expected"]
        shown = (
            None
            if expected is None
            else (f"{expected:.6g}" if isinstance(expected, float) else str(expected))
        )
        out.append(TaskInstance(template=-1, kind=t["kind"], task=t["task"], answer=shown))
    return out


SETS = {
    "city": {
        "tools": ["calculator", "convert_units", "agent_bench:lookup_city"],
        "tasks": str(HERE / "specialize" / "city_tasks.yaml"),
        "suite": task_suite,
    },
    "shop": {
        "tools": [f"{HERE / 'specialize' / 'shop_tools.py'}:TOOLS"],
        "tasks": str(HERE / "specialize" / "shop_tasks.yaml"),
        "suite": shop_suite,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="city,shop")
    parser.add_argument("--train-tasks", type=int, default=300)
    parser.add_argument("--grpo-steps", type=int, default=0)
    args = parser.parse_args()
    out_path = HERE / "results" / "specialize.json"
    out: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    out.update({
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "model": DEFAULT_MODEL,
    })  # fmt: skip
    out.setdefault("sets", {})
    for name in args.sets.split(","):
        spec = SETS[name]
        print(f"== {name}: specialize", flush=True)
        started = time.perf_counter()
        result = specialize(
            SpecializeRequest(
                tools=spec["tools"], tasks=spec["tasks"], train_tasks=args.train_tasks,
                grpo_steps=args.grpo_steps,
            ),
            lambda step, total=None, message="", **m: (
                print(f"  {message}", flush=True) if not message.startswith("score") else None
            ),
        )
        end_to_end = round(time.perf_counter() - started, 1)
        with ExitStack() as stack:
            tools, _ = resolve_tools(spec["tools"], [], stack)
        suite = instances(spec["suite"]())
        runs = {
            "base, tool first, no Thought (agent bench's best)": (
                DEFAULT_MODEL, {"think": False, "require_tool_first": True,
                                "tool_listing": "schemas"}),
            "base, Agent defaults": (DEFAULT_MODEL, {"tool_listing": "schemas", "think": True}),
            "specialized (SFT)": (result.sft_gguf or result.gguf, {}),
        }  # fmt: skip
        if result.grpo is not None:
            runs["specialized (SFT + GRPO)"] = (result.gguf, {})
        scores = {}
        for label, (model, settings) in runs.items():
            print(f"== {name}: held-out suite, {label}", flush=True)
            score = score_agent(model, tools, suite, max_steps=5, **settings)
            scores[label] = score.model_dump()
            print(f"  success {score.success} {score.success_by_kind}, valid calls "
                  f"{score.valid_call_rate}, {score.seconds} s", flush=True)  # fmt: skip
        out["sets"][name] = {
            "tools": result.tools,
            "train_tasks": result.train_tasks,
            "tasks_by_kind": result.tasks_by_kind,
            "held_out_suite": len(suite),
            "end_to_end_seconds": end_to_end,
            "phase_seconds": result.seconds,
            "training": {
                "steps": result.training.plan.total_steps,
                "summary": result.training.plan.summary,
                "metrics": result.training.metrics,
            },
            "grpo": None if result.grpo is None else {
                "steps": result.grpo.plan.total_steps,
                "summary": result.grpo.plan.summary,
                "metrics": result.grpo.metrics,
            },
            "template_held_out": {
                "base": result.base.model_dump() if result.base else None,
                "sft": result.sft.model_dump() if result.sft else None,
                "specialized": result.specialized.model_dump() if result.specialized else None,
            },
            "suite": scores,
        }
        out_path.parent.mkdir(exist_ok=True)
        out_path.write_text(json.dumps(out, indent=2))
    for name, s in out["sets"].items():
        print(f"{name}: end to end {s['end_to_end_seconds'] / 60:.1f} min")
        for label, sc in s["suite"].items():
            print(f"  {label:50} {sc['success']:.1%} valid {sc['valid_call_rate']}")


if __name__ == "__main__":
    main()
