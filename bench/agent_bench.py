"""Agent benchmark: tool calling with and without constrained decoding, and best-of-N.

    uv run python bench/agent_bench.py [--limit N] [--skip-thinking]

Model: the embedded SmolLM2-135M-Instruct on llama.cpp, greedy. Task suite (built here):
arithmetic with a calculator, unit conversion, lookup in a small local city table, and
multi-step combinations of them; every task gets all three tools, so choosing the right one
is part of the task. Each task runs three times through the same ReAct agent and prompt
(no Thought line, at most 5 steps): with the step grammar (constrained decoding) and the
first step held to a tool call, with the grammar alone, and parsing free text.

- valid-call rate: calls that parse, name a tool and fit its schema, over every call the
  model attempted (a call cut off by max_tokens or stopped in a loop counts as invalid);
- task success: the final answer contains the expected number (1 % tolerance) or word.

ThinkingAgent: chain-of-thought on small word problems (sums, differences, products of
small numbers), N = 1 greedy vs N = 5 and N = 10 (one greedy sample plus N - 1 sampled at
0.5, majority vote, ties to the greedy answer), the samples decoded as one llama.cpp batch.
Results go to bench/results/agent.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import time
from datetime import date
from pathlib import Path
from typing import Any, Literal

from lmfast.agents import Agent, LocalModel, ThinkingAgent, tool
from lmfast.agents.builtin import calculator, convert_units
from lmfast.agents.thinking import normalise

HERE = Path(__file__).parent

CITIES: dict[str, dict[str, Any]] = {
    "Oslo": {"country": "Norway", "population": 709000, "elevation_m": 23},
    "Lima": {"country": "Peru", "population": 10092000, "elevation_m": 154},
    "Quito": {"country": "Ecuador", "population": 2011000, "elevation_m": 2850},
    "Perth": {"country": "Australia", "population": 2125000, "elevation_m": 31},
    "Nairobi": {"country": "Kenya", "population": 4397000, "elevation_m": 1795},
    "Denver": {"country": "United States", "population": 716000, "elevation_m": 1609},
}
City = Literal["Oslo", "Lima", "Quito", "Perth", "Nairobi", "Denver"]


@tool
def lookup_city(city: City, field: Literal["country", "population", "elevation_m"]) -> str:
    """Look up a fact about a city in the local city table.

    Args:
        city: The city (Oslo, Lima, Quito, Perth, Nairobi or Denver).
        field: What to look up: country, population or elevation_m (metres above sea level).
    """
    return str(CITIES[city][field])


TOOLS = [calculator, convert_units, lookup_city]


def task_suite() -> list[dict[str, Any]]:
    rng = random.Random(7)
    tasks: list[dict[str, Any]] = []
    for _ in range(10):
        a, b, c = rng.randint(12, 999), rng.randint(11, 99), rng.randint(2, 9)
        expr, value = rng.choice(
            [
                (f"{a} * {b}", a * b),
                (f"{a} + {b} * {c}", a + b * c),
                (f"({a} - {b}) * {c}", (a - b) * c),
                (f"{a * c} / {c}", a),
            ]
        )
        tasks.append({"kind": "calculator", "task": f"What is {expr}?", "expected": value})
    conversions = [
        (5, "kilometre", "metre"), (3, "mile", "kilometre"), (12, "inch", "centimetre"),
        (2.5, "kilogram", "gram"), (10, "pound", "kilogram"), (100, "fahrenheit", "celsius"),
        (37, "celsius", "fahrenheit"), (90, "minute", "hour"), (2, "gallon", "litre"),
        (500, "millilitre", "litre"),
    ]  # fmt: skip
    names = {u: u + "s" for u in ("kilometre", "metre", "mile", "centimetre", "kilogram",
             "gram", "pound", "minute", "hour", "gallon", "litre", "millilitre")}  # fmt: skip
    names |= {"inch": "inches", "fahrenheit": "degrees Fahrenheit",
              "celsius": "degrees Celsius"}  # fmt: skip
    for v, f, t in conversions:
        value = float(convert_units(value=v, from_unit=f, to_unit=t).split()[0])
        tasks.append({"kind": "conversion", "task": f"Convert {v} {names[f]} to {names[t]}.",
                      "expected": value})  # fmt: skip
    lookups = [("Oslo", "population"), ("Lima", "country"), ("Quito", "elevation_m"),
               ("Perth", "country"), ("Nairobi", "population"), ("Denver", "elevation_m"),
               ("Quito", "country"), ("Perth", "population")]  # fmt: skip
    words = {"population": "What is the population of {}?", "country": "Which country is {} in?",
             "elevation_m": "What is the elevation of {} in metres?"}  # fmt: skip
    for city, field in lookups:
        tasks.append({"kind": "lookup", "task": words[field].format(city),
                      "expected": CITIES[city][field]})  # fmt: skip
    multi = [
        ("What is the combined population of Oslo and Denver?",
         CITIES["Oslo"]["population"] + CITIES["Denver"]["population"]),
        ("How much higher is Quito than Nairobi, in metres?",
         CITIES["Quito"]["elevation_m"] - CITIES["Nairobi"]["elevation_m"]),
        ("What is the elevation of Denver in feet?", CITIES["Denver"]["elevation_m"] / 0.3048),
        ("Convert 4 miles to kilometres, then multiply the result by 3.", 4 * 1.609344 * 3),
        ("What is the population of Perth divided by 1000?",
         CITIES["Perth"]["population"] / 1000),
        ("What is the elevation of Quito in kilometres?", CITIES["Quito"]["elevation_m"] / 1000),
    ]  # fmt: skip
    for text, value in multi:
        tasks.append({"kind": "multi-step", "task": text, "expected": value})
    return tasks


_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def correct(answer: str | None, expected: Any) -> bool:
    if not answer:
        return False
    if isinstance(expected, str):
        return expected.lower() in answer.lower()
    for m in _NUM.findall(answer):
        v = float(m.replace(",", ""))
        if abs(v - expected) <= 0.01 * max(1.0, abs(expected)):
            return True
    return False


def run_suite(
    model: LocalModel, tasks: list[dict[str, Any]], constrained: bool, require_tool: bool
) -> dict[str, Any]:
    from lmfast.inference.tools import CLOSE, OPEN

    rows, attempts, valid = [], 0, 0
    start = time.perf_counter()
    for t in tasks:
        # No Thought line: the 135M model "computes" in it and then answers its own guess.
        agent = Agent(TOOLS, model, constrained=constrained, think=False, max_steps=5,
                      require_tool_first=require_tool)  # fmt: skip
        result = agent.run(t["task"])
        calls = result.calls
        # A call opened but never closed (cut off at max_tokens) is an invalid attempt.
        cut = sum(1 for s in result.steps if OPEN in s.text and CLOSE not in s.text and not s.calls)
        attempts += len(calls) + cut
        valid += sum(c.valid for c in calls)
        rows.append({"kind": t["kind"], "task": t["task"], "answer": result.answer,
                     "ok": correct(result.answer, t["expected"]), "calls": len(calls) + cut,
                     "valid": sum(c.valid for c in calls), "stop": result.stop_reason})  # fmt: skip
        print(f"  [{'ok ' if rows[-1]['ok'] else '  x'}] {t['task']} -> {result.answer!r} "
              f"({rows[-1]['valid']}/{rows[-1]['calls']} valid calls)", flush=True)  # fmt: skip
    by_kind: dict[str, list[bool]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r["ok"])
    return {
        "constrained": constrained,
        "require_tool_first": require_tool,
        "tasks": len(rows),
        "call_attempts": attempts,
        "valid_calls": valid,
        "valid_call_rate": round(valid / attempts, 4) if attempts else None,
        "success": round(sum(r["ok"] for r in rows) / len(rows), 4),
        "success_by_kind": {k: round(sum(v) / len(v), 3) for k, v in by_kind.items()},
        "truncated_or_unfinished": sum(r["stop"] != "answer" for r in rows),
        "seconds": round(time.perf_counter() - start, 1),
        "rows": rows,
    }


def reasoning_set(n: int) -> list[tuple[str, int]]:
    rng = random.Random(11)
    items = ["apples", "books", "marbles", "coins", "stickers", "pencils"]
    names = ["Tom", "Ana", "Li", "Sara", "Omar", "Kim"]
    out = []
    for i in range(n):
        a, b = rng.randint(2, 12), rng.randint(2, 9)
        who, what = rng.choice(names), rng.choice(items)
        form = i % 3
        if form == 0:
            q = f"{who} has {a} {what} and gets {b} more. How many {what} does {who} have?"
            v = a + b
        elif form == 1:
            a += b
            q, v = f"{who} had {a} {what} and gave away {b}. How many {what} are left?", a - b
        else:
            q, v = f"{who} buys {b} bags with {a} {what} in each. How many {what} in total?", a * b
        out.append((q, v))
    return out


def run_thinking(model: LocalModel, questions: list[tuple[str, int]], n: int) -> dict[str, Any]:
    start = time.perf_counter()
    right = tokens = 0
    for q, v in questions:
        result = ThinkingAgent(model, n=n, max_tokens=128, seed=1).run(q)
        right += result.answer == normalise(str(v))
        tokens += result.completion_tokens
    seconds = round(time.perf_counter() - start, 1)
    return {"n": n, "accuracy": round(right / len(questions), 4), "questions": len(questions),
            "completion_tokens": tokens, "seconds": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None, help="Run only the first N tasks.")
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--skip-thinking", action="store_true")
    parser.add_argument(
        "--thinking-only", action="store_true", help="Rerun only best-of-N (keeps the rest)."
    )
    args = parser.parse_args()
    tasks = task_suite()[: args.limit]
    model = LocalModel.load()
    out: dict[str, Any] = {
        "date": str(date.today()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "model": model.name,
        "suite": {k: sum(t["kind"] == k for t in tasks) for k in {t["kind"]: 0 for t in tasks}},
    }
    runs = {"constrained, tool first": (True, True), "constrained": (True, False),
            "free text": (False, False)}  # fmt: skip
    saved = HERE / "results" / "agent.json"
    if args.thinking_only:
        out = {**json.loads(saved.read_text()), **{k: out[k] for k in ("date", "machine")}}
    for key, (constrained, require_tool) in runs.items():
        if args.thinking_only:
            continue
        print(f"tool calling: {key}", flush=True)
        out[key] = run_suite(model, tasks, constrained, require_tool)
    if not args.skip_thinking:
        questions = reasoning_set(args.questions)
        wide = LocalModel.load(parallel=10)
        out["thinking"] = []
        for n in (1, 5, 10):
            out["thinking"].append(run_thinking(wide, questions, n))
            print("thinking", out["thinking"][-1], flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    saved.write_text(json.dumps(out, indent=2))
    for key in runs:
        r = out[key]
        print(f"{key:24} valid calls {r['valid_calls']}/{r['call_attempts']} "
              f"({r['valid_call_rate']}), success {r['success']} {r['success_by_kind']}, "
              f"{r['seconds']} s")  # fmt: skip
    for r in out.get("thinking", []):
        print(f"thinking N={r['n']:2}: accuracy {r['accuracy']} ({r['seconds']} s)")


if __name__ == "__main__":
    main()
