"""`lmfast agent run`: a tool-calling agent in the terminal, each step shown as it happens."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated

import typer

from lmfast.cli.options import GuardOpt
from lmfast.cli.output import console, print_json
from lmfast.config import DEFAULT_MODEL

app = typer.Typer(help="Tool-calling agents (ReAct, code).", no_args_is_help=True)

_STYLE = {"thought": "dim", "tool_call": "cyan", "observation": "green", "error": "red",
          "answer": "bold"}  # fmt: skip


@app.command("run")
def run_command(
    task: Annotated[str, typer.Argument(help="What the agent should do.")],
    tools: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated tools: built-in calculator, convert_units, python; "
            "module:name or file.py:name (a @tool, function or list); a .json of tool "
            "schemas [default: calculator,convert_units; none with --data]."
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="A DataAgent confined to this folder: inspects files, runs prep_dataset and "
            "evaluate."
        ),
    ] = None,
    mcp: Annotated[
        list[str] | None,
        typer.Option(help="Also use an MCP server's tools: its command line (repeatable)."),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Model reference or http://host/v1#name.")
    ] = DEFAULT_MODEL,
    backend: Annotated[str, typer.Option(help="auto, llamacpp or transformers.")] = "auto",
    code: Annotated[bool, typer.Option(help="A CodeAgent: writes and runs Python.")] = False,
    max_steps: Annotated[int, typer.Option(help="Most think/act steps.")] = 6,
    require_tool: Annotated[
        bool, typer.Option(help="The first step must call a tool (local models).")
    ] = False,
    think: Annotated[
        bool | None,
        typer.Option(
            help="A Thought line before each action (--no-think for tiny models) [default: "
            "yes, or what a specialized model was trained with]."
        ),
    ] = None,
    constrained: Annotated[
        bool, typer.Option(help="Grammar-constrained steps (local models).")
    ] = True,
    guard: GuardOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run an agent on TASK. With --guard, the task and every tool result are checked."""
    from lmfast.agents import Agent, CodeAgent
    from lmfast.agents.models import resolve_agent_model
    from lmfast.agents.react import AgentEvent
    from lmfast.agents.toolsets import ToolsetError, resolve_tools

    def show(e: AgentEvent) -> None:
        label = f"[{e.step + 1}] {e.kind}" + (f" {e.tool}" if e.tool else "")
        console.print(f"[{_STYLE[e.kind]}]{label}:[/] ", end="")
        console.print(e.text, markup=False, highlight=False, soft_wrap=True)

    if tools is None:
        tools = "" if data else "calculator,convert_units"
    names = [n.strip() for n in tools.split(",") if n.strip()]
    remote = model.startswith(("http://", "https://"))
    on_event = None if json_out else show
    with ExitStack() as stack:
        refs = [n for n in names if n != "python"]
        try:
            chosen = resolve_tools(refs, mcp or [], stack)[0] if refs or mcp else []
        except ToolsetError as e:
            raise typer.BadParameter(str(e).removeprefix("tools: "), param_hint="--tools") from None
        agent_model = resolve_agent_model(model, backend, guard=guard)
        common = {
            "max_steps": max_steps,
            "on_event": on_event,
            "constrained": constrained and not remote,
        }
        if code or "python" in names:
            agent = CodeAgent(agent_model, **common)
        elif data is not None:
            from lmfast.agents.data_agent import DataAgent

            agent = DataAgent(agent_model, root=data, extra_tools=chosen, think=think is not False,
                              require_tool_first=require_tool, **common)  # fmt: skip
        else:
            agent = Agent(chosen, agent_model, require_tool_first=require_tool, think=think,
                          **common)  # fmt: skip
        result = agent.run(task)
    if json_out:
        print_json(result)
    elif result.answer is None:
        console.print(f"[red]no answer[/] ({result.stop_reason})")


@app.command("specialize")
def specialize_command(
    tools: Annotated[
        list[str] | None,
        typer.Option(
            "--tools",
            "-t",
            help="Tools: built-in names (calculator, convert_units), module:name or "
            "file.py:name (a @tool, function or list), or a .json of OpenAI tool schemas; "
            "comma-separated or repeated.",
        ),
    ] = None,
    tasks: Annotated[
        str | None,
        typer.Option(help="Task file (YAML/JSON) of example requests with {slots} and calls."),
    ] = None,
    mcp: Annotated[
        list[str] | None,
        typer.Option(help="Also an MCP server's tools: its command line (repeatable)."),
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to specialize.")] = (
        DEFAULT_MODEL
    ),
    train_tasks: Annotated[int, typer.Option(help="Training conversations to draw.")] = 300,
    held_out: Annotated[int, typer.Option(help="Held-out tasks to score.")] = 40,
    think: Annotated[bool, typer.Option(help="Train a Thought line before each action.")] = True,
    listing: Annotated[
        str, typer.Option(help="Tools in the prompt: compact (one line each) or schemas.")
    ] = "compact",
    grpo_steps: Annotated[
        int, typer.Option(help="GRPO steps after SFT on the agent's turns (0: SFT only).")
    ] = 0,
    gguf: Annotated[bool, typer.Option(help="Export the merged model as a GGUF.")] = True,
    score_base: Annotated[bool, typer.Option(help="Score the base model as well.")] = True,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Passes over the conversations.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Peak rate.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for drawing tasks.")] = 0,
    name: Annotated[str | None, typer.Option(help="Name for the adapter.")] = None,
    fresh: Annotated[bool, typer.Option(help="Ignore earlier checkpoints.")] = False,
    background: Annotated[bool, typer.Option("--background", help="Print the job id only.")] = (
        False
    ),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Make MODEL good at your tools, as a job: tasks and correct trajectories drawn from the
    task file (executing the tools), LoRA SFT in the agent's own format, optionally GRPO on
    the agent's turns (--grpo-steps), a merged GGUF, and the base and specialized agents
    scored on held-out tasks."""
    from lmfast.agents.specialize import SpecializeRequest
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.config import load_config

    names = [n.strip() for t in tools or [] for n in t.split(",") if n.strip()]
    flags = {
        "training.max_steps": max_steps,
        "training.epochs": epochs,
        "training.learning_rate": learning_rate,
    }
    request = SpecializeRequest(
        tools=names, mcp=mcp or [], tasks=tasks, model=model, train_tasks=train_tasks,
        held_out_tasks=held_out, think=think, tool_listing=listing, gguf=gguf,  # type: ignore[arg-type]
        grpo_steps=grpo_steps, score_base=score_base, seed=seed,
        config=load_config(None, None, values=flags),
        name=name, fresh=fresh,
    )  # fmt: skip
    result = run_job_for_people("specialize_agent", request, background, json_out)
    if result is None:
        return
    final = result["grpo"] or result["training"]
    console.print(f"adapter {final['artifact_id']}: {final['path']}")
    if result["gguf"]:
        console.print(f"GGUF {result['gguf_artifact']}: {result['gguf']}")
    for label in ("base", "sft", "specialized"):
        score = result[label]
        if score:
            valid = score["valid_call_rate"]
            shown = "-" if valid is None else f"{valid:.0%}"
            console.print(
                f"{label:12} held-out success {score['success']:.0%} of {score['tasks']} "
                f"{score['success_by_kind']}, valid calls {shown}"
            )
    console.print(f"use it: Agent(tools, model={result['gguf'] or final['path']!r})")
