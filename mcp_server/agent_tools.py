"""MCP tool for agent specialization: confine paths, build the request, start the job."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from lmfast.mcp_server import jobs
from lmfast.mcp_server.jobs import JobOutcome
from lmfast.mcp_server.paths import (
    PathNotAllowedError,
    client_roots,
    confine_input,
    confine_model_reference,
)
from lmfast.mcp_server.tool_errors import tool_errors
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from lmfast.config import DEFAULT_MODEL


def confine_tools(tools: Sequence[str], roots: Sequence[Path]) -> list[str]:
    """Tools from a client: built-in names, or a .json schema file or file.py:name inside
    the roots. module:name is refused (it would import code on a client's word), and MCP
    servers are not offered here at all (they are commands to run)."""
    from lmfast.agents.builtin import BUILTIN

    kept = []
    for ref in tools:
        if ref in BUILTIN:
            kept.append(ref)
        elif ref.endswith(".json"):
            kept.append(confine_input(ref, "tools", roots))
        else:
            file, _, name = ref.rpartition(":")
            if not file.endswith(".py") or not name:
                raise PathNotAllowedError(
                    f"tools: {ref!r}: over MCP a tool is built-in ({', '.join(BUILTIN)}), a "
                    ".json file of tool schemas or file.py:name inside the client's roots"
                )
            kept.append(f"{confine_input(file, 'tools', roots)}:{name}")
    return kept


def add_agent_tools(mcp: MCPServer) -> None:
    @mcp.tool(
        description="Make a small model good at given tools. From the tools (built-in names, "
        "a .json of OpenAI-style tool schemas, or file.py:name with @tool functions) and a "
        "task file of example requests with {slots} (YAML/JSON; without one, requests are "
        "worded from the schemas), it draws tasks with correct trajectories by executing the "
        "tools (single calls, chains, answers from observations, refusals), fine-tunes a LoRA "
        "adapter on them in the agent's own format (then, with grpo_steps, GRPO on the agent's "
        "turns), exports a merged GGUF and scores the base "
        "and specialized agents on held-out tasks worded differently. A job with progress; "
        "the result names the adapter, the GGUF and both scores."
    )
    @tool_errors
    async def specialize_agent(
        ctx: Context,
        tools: Annotated[list[str], Field(min_length=1, description="Tool references.")],
        tasks: Annotated[str | None, Field(description="Task file path.")] = None,
        model: Annotated[str, Field(min_length=1, description="Model to specialize.")] = (
            DEFAULT_MODEL
        ),
        train_tasks: Annotated[int, Field(ge=10, le=100_000, description="Training tasks.")] = 300,
        held_out_tasks: Annotated[int, Field(ge=0, le=10_000, description="Held-out tasks.")] = 40,
        think: Annotated[bool, Field(description="Train a Thought line per step.")] = True,
        tool_listing: Annotated[
            Literal["compact", "schemas"], Field(description="Tools in the prompt.")
        ] = "compact",
        max_steps: Annotated[int | None, Field(ge=1, le=1_000_000, description="Steps.")] = None,
        epochs: Annotated[float | None, Field(gt=0, le=100, description="Passes.")] = None,
        grpo_steps: Annotated[
            int, Field(ge=0, le=10_000, description="GRPO steps after SFT (0: SFT only).")
        ] = 0,
        gguf: Annotated[bool, Field(description="Export a merged GGUF.")] = True,
        score_base: Annotated[bool, Field(description="Score the base model too.")] = True,
        seed: Annotated[int, Field(description="Seed for drawing tasks.")] = 0,
        name: Annotated[str | None, Field(max_length=200, description="Adapter name.")] = None,
        wait: Annotated[bool, Field(description="Follow the job to the end.")] = False,
    ) -> JobOutcome:
        from lmfast.agents.specialize import SpecializeRequest
        from lmfast.mcp_server.recipes import recipe

        roots = await client_roots(ctx)
        request = SpecializeRequest(
            tools=confine_tools(tools, roots),
            tasks=confine_input(tasks, "tasks", roots) if tasks else None,
            model=confine_model_reference(model, "model", roots),
            train_tasks=train_tasks, held_out_tasks=held_out_tasks, think=think,
            tool_listing=tool_listing, gguf=gguf, score_base=score_base, name=name, seed=seed,
            grpo_steps=grpo_steps,
            config=recipe({"training.max_steps": max_steps, "training.epochs": epochs}, None),
        )  # fmt: skip
        return await jobs.start_job("specialize_agent", request, wait, ctx)
