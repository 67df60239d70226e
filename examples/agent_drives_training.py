"""An agent script that trains a model by itself, through LMFast's own MCP server.

    uv run python examples/agent_drives_training.py data.jsonl
    uv run python examples/agent_drives_training.py data.jsonl --model http://localhost:8000/v1#big
    uv run python examples/agent_drives_training.py data.jsonl --base ./my-model --steps 60

It starts `lmfast mcp` over stdio (the same server Claude Desktop or Cursor would use), hands
the agent that server's lifecycle tools (prep_dataset, fine_tune, evaluate, quantize, plus
the job tools) and asks it to: prepare the data, fine-tune the base model with LoRA, evaluate
the result and quantize it to GGUF. Every step is printed as it happens, and the final
answer names the artifacts.

The agent's brain is any LMFast model or OpenAI-compatible endpoint (`--model`). A local
model is held to a grammar so its tool calls are always valid; the planning of a four-stage
job is still best left to a capable model, so point `--model` at one when you have it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lmfast.agents import Agent, AgentEvent, AgentResult, MCPToolset

TOOLS = ["prep_dataset", "fine_tune", "evaluate", "quantize", "job_status", "job_result"]

SYSTEM = (
    "You operate LMFast, a toolkit that trains small language models, through its tools. "
    "Work in order: prepare the data, fine-tune on the prepared dataset's artifact id, "
    "evaluate the trained model artifact, quantize it. Call each tool with wait=true so it "
    "runs to the end, and pass artifact ids from one result to the next tool. Write each "
    "reply as one line 'Thought: <your reasoning>' followed by exactly one tool call, or, "
    "when everything is done, the line 'Answer: <the artifact ids and the scores>'."
)


def task_text(data: Path, base: str, steps: int, tasks: list[str]) -> str:
    return (
        f"Prepare the dataset {data}, fine-tune the model {base} on it with LoRA for "
        f"{steps} steps, evaluate the fine-tuned model on the tasks {', '.join(tasks)}, then "
        "quantize it to q8_0. Report the artifact ids and the scores."
    )


def show(event: AgentEvent) -> None:
    tool = f" {event.tool}" if event.tool else ""
    text = event.text if len(event.text) < 600 else event.text[:600] + " ..."
    print(f"[{event.step + 1}] {event.kind}{tool}: {text}", flush=True)


def run(
    data: Path,
    model: Any = None,
    *,
    base: str = "smollm2-135m-instruct",
    steps: int = 30,
    tasks: tuple[str, ...] = ("arithmetic", "capitals"),
    max_steps: int = 12,
    on_event: Any = show,
    env: dict[str, str] | None = None,
) -> AgentResult:
    """Start `lmfast mcp`, give its tools to an agent and let it run the whole job.
    `model`: the agent's model (an AgentModel, a reference or 'http://host/v1#name')."""
    data = data.resolve()
    # The server may touch the data's folder (and LMFAST_HOME) and nothing else.
    server_env = {"LMFAST_MCP_ROOTS": str(data.parent), **(env or {})}
    with MCPToolset.stdio(sys.executable, ["-m", "lmfast", "mcp"], env=server_env,
                          only=TOOLS) as lmfast:  # fmt: skip
        agent = Agent(lmfast.tools, model, system=SYSTEM, max_steps=max_steps,
                      token_budget=60_000, on_event=on_event)  # fmt: skip
        return agent.run(task_text(data, base, steps, list(tasks)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="Training data (JSONL, Parquet, text).")
    parser.add_argument("--model", default=None, help="The agent's model (default: embedded).")
    parser.add_argument("--base", default="smollm2-135m-instruct", help="Model to fine-tune.")
    parser.add_argument("--steps", type=int, default=30, help="Fine-tuning steps.")
    args = parser.parse_args()
    if not args.data.exists():
        parser.error(f"data: {args.data} does not exist")
    result = run(args.data, args.model, base=args.base, steps=args.steps)
    print(f"\n{result.stop_reason}: {result.answer}")
    print(f"{len(result.calls)} tool calls, {result.prompt_tokens + result.completion_tokens} "
          f"tokens; LMFAST_HOME={os.environ.get('LMFAST_HOME', '~/.lmfast')}")  # fmt: skip


if __name__ == "__main__":
    main()
