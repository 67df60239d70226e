"""specialize_agent: make a small model good at the user's own tools.

From the tools (built-in, the user's Python, JSON schemas, an MCP server's) and a task file
of example requests (or, without one, requests worded from the schemas), LMFast builds
tasks with correct trajectories by executing the tools, renders them exactly as the Agent
exchanges them at run time (its system prompt, its Thought / tool call / Observation /
Answer turns, the model's own chat template), fine-tunes a LoRA adapter on them with
`fine_tune`, exports it merged as a GGUF for llama.cpp, and scores the base and the
specialized model as agents on held-out tasks worded differently, with values not seen.

    Agent(tools, model=result.gguf)   # the same tools, default settings
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from lmfast.agents.models import PROFILE_FILE
from lmfast.agents.react import ToolListing
from lmfast.agents.taskgen import TaskInstance, TaskSets, answer_matches
from lmfast.agents.tools import Tool
from pydantic import BaseModel, Field, model_validator

from lmfast.config import DEFAULT_MODEL, LMFastConfig
from lmfast.errors import LMFastError
from lmfast.progress import ProgressFn, no_progress
from lmfast.training.run import FineTuneResult, RunId


class SpecializeRequest(BaseModel):
    """Tools and example requests in; an adapter (and GGUF) the Agent uses out."""

    tools: list[str] = Field(
        default_factory=list,
        description="Built-in tool names (calculator, convert_units), module:name or "
        "file.py:name (a @tool, function or list of them), or a .json file of OpenAI-style "
        "tool schemas (trained to call, not executed).",
    )
    mcp: list[str] = Field(
        default_factory=list, description="MCP servers over stdio (command lines) whose tools "
        "to use.",
    )  # fmt: skip
    tasks: str | None = Field(
        None, description="Task file (YAML / JSON) of example requests with {slots} and their "
        "calls; default: one request per tool worded from its schema.",
    )  # fmt: skip
    model: str = Field(DEFAULT_MODEL, min_length=1, description="The model to specialize.")
    train_tasks: int = Field(300, ge=10, le=100_000, description="Training conversations.")
    held_out_tasks: int = Field(40, ge=0, le=10_000, description="Held-out tasks scored.")
    think: bool = Field(
        True, description="Train the agent's Thought line (the Agent's default) or none."
    )
    tool_listing: ToolListing = Field(
        "compact", description="How the agent's prompt lists the tools: one line each "
        "(compact: a quarter of the tokens to train on) or as JSON schemas.",
    )  # fmt: skip
    grpo_steps: int = Field(
        0, ge=0, le=10_000, description="GRPO steps after SFT on the agent's turns, rewarding "
        "the right call with the right arguments and the right final answer (0: SFT only). "
        "Each step samples 4 turns x 4 completions.",
    )  # fmt: skip
    gguf: bool = Field(True, description="Also export the merged model as a GGUF (llama.cpp).")
    score_base: bool = Field(True, description="Score the base model on the held-out tasks.")
    seed: int = Field(0, description="Seed for drawing tasks and slot values.")
    config: LMFastConfig = Field(
        default_factory=LMFastConfig,
        description="Training settings (LoRA, steps, rate); model and data are set from the "
        "fields above.",
    )
    name: str | None = Field(None, max_length=200, description="Name for the adapter.")
    run_id: RunId = None
    fresh: bool = Field(False, description="Ignore earlier checkpoints of the same run.")

    @model_validator(mode="after")
    def _absolute_paths(self) -> SpecializeRequest:
        """Files become absolute, so the detached job worker finds them from its folder."""

        def absolute(path: str) -> str:
            p = Path(path).expanduser()
            return str(p.resolve()) if not p.is_absolute() and p.exists() else path

        self.tools = [
            absolute(t) if t.endswith(".json") else _absolute_file_ref(t, absolute)
            for t in self.tools
        ]
        if self.tasks:
            self.tasks = absolute(self.tasks)
        return self


class AgentScore(BaseModel):
    model: str
    tasks: int
    success: float = Field(description="Share of held-out tasks solved.")
    success_by_kind: dict[str, float]
    valid_call_rate: float | None = Field(description="Calls that parse and fit the schema.")
    calls: int
    seconds: float
    failures: list[dict[str, Any]] = Field(
        default_factory=list, description="Up to 5 unsolved tasks: task, expected, answer."
    )


class SpecializeResult(BaseModel):
    tools: list[str]
    train_tasks: int
    held_out_tasks: int
    tasks_by_kind: dict[str, int]
    skipped_draws: int = Field(description="Draws a tool refused (redrawn).")
    data: str = Field(description="The training conversations (JSONL).")
    training: FineTuneResult = Field(description="The SFT stage.")
    grpo: FineTuneResult | None = Field(None, description="The GRPO stage, when it ran.")
    gguf: str | None = Field(None, description="The merged GGUF for llama.cpp.")
    gguf_artifact: str | None = None
    sft_gguf: str | None = Field(None, description="The SFT stage's GGUF, when GRPO followed.")
    base: AgentScore | None = None
    sft: AgentScore | None = Field(
        None, description="The SFT adapter alone, scored when a GRPO stage followed it."
    )
    specialized: AgentScore | None = Field(None, description="The final model (SFT [+ GRPO]).")
    seconds: dict[str, float]


def specialize(request: SpecializeRequest, progress: ProgressFn = no_progress) -> SpecializeResult:
    """Build tasks, train, export, score; resumable (training resumes its checkpoints)."""
    from lmfast.agents.react import system_prompt
    from lmfast.agents.taskgen import build_tasks, chat_rows, load_task_file, schema_tasks
    from lmfast.agents.toolsets import resolve_tools

    from lmfast.artifacts import write_atomic
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.inference.chat_format import template_supports_tools
    from lmfast.training.finetune import FineTuneRequest, fine_tune
    from lmfast.training.run import run_folder

    if request.config.data.path:
        raise LMFastError("config.data.path: specialize writes its own training data; leave it")
    if not request.tools and not request.mcp:
        raise LMFastError("tools: give at least one tool (tools or mcp)")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with ExitStack() as stack:
        progress(0, None, "tools: loading")
        tools, runnable = resolve_tools(request.tools, request.mcp, stack)
        spec = load_task_file(request.tasks) if request.tasks else schema_tasks(tools)
        sets = build_tasks(spec, tools, train=request.train_tasks,
                           held_out=request.held_out_tasks, executable=runnable,
                           seed=request.seed,
                           extra=grpo_tasks(request.grpo_steps))  # fmt: skip
        tokenizer = load_tokenizer(request.model)
        tool_turns = template_supports_tools(getattr(tokenizer, "chat_template", None))
        system = system_prompt(tools, listing=request.tool_listing)
        rows = chat_rows(sets.train, system, think=request.think, tool_turns=tool_turns)
        key = {
            "tools": [t.spec.model_dump() for t in tools],
            "rows": rows,
            "model": request.model,
            "listing": request.tool_listing,
            "config": request.config.model_dump(mode="json"),
        }
        folder = run_folder("specialize", key, request.run_id)
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / "train.jsonl"
        write_atomic(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        write_atomic(folder / "held_out.json", json.dumps(
            [_expected(i) for i in sets.held_out], indent=1, ensure_ascii=False))  # fmt: skip
        progress(0, None, f"plan: {len(rows)} training conversations ({_kinds(sets)}), "
                 f"{len(sets.held_out)} held-out tasks, {len(tools)} tools")  # fmt: skip
        seconds["tasks"] = round(time.perf_counter() - started, 1)

        config = request.config.model_copy(deep=True)
        config.model.reference = request.model
        config.data.path = str(data)
        if config.data.validation_split == LMFastConfig().data.validation_split:
            config.data.validation_split = 0.0  # the held-out agent tasks are the validation
        t0 = time.perf_counter()
        name = request.name or f"{request.model} specialized for {', '.join(t.name for t in tools)}"
        training = fine_tune(
            FineTuneRequest(config=config, name=name[:200], run_id=None, fresh=request.fresh),
            _stage(progress, "train"),
        )
        seconds["train"] = round(time.perf_counter() - t0, 1)
        profile = json.dumps({"think": request.think, "tool_listing": request.tool_listing,
                              "tools": [t.name for t in tools]}, indent=1)  # fmt: skip
        # The agent settings travel with the model, so Agent(tools, model) uses them.
        write_atomic(Path(training.path) / PROFILE_FILE, profile)
        grpo = None
        if request.grpo_steps:
            t0 = time.perf_counter()
            grpo = _grpo_stage(request, training, sets, tools, system, tool_turns, folder,
                               name, progress)  # fmt: skip
            write_atomic(Path(grpo.path) / PROFILE_FILE, profile)
            seconds["grpo"] = round(time.perf_counter() - t0, 1)
        final = grpo or training
        gguf = gguf_artifact = sft_gguf = None
        if request.gguf:
            t0 = time.perf_counter()
            gguf, gguf_artifact = _export_gguf(final, profile, progress)
            if grpo is not None:  # the SFT stage, to compare and to score
                sft_gguf, _ = _export_gguf(training, profile, progress)
            seconds["export"] = round(time.perf_counter() - t0, 1)
        base = sft = specialized = None
        if sets.held_out:
            t0 = time.perf_counter()
            if request.score_base:
                base = score_agent(request.model, tools, sets.held_out, progress, "base",
                                   think=request.think, tool_listing="schemas")  # fmt: skip
            if grpo is not None:
                sft = score_agent(sft_gguf or training.artifact_id, tools, sets.held_out,
                                  progress, "SFT")  # fmt: skip
            specialized = score_agent(gguf or final.artifact_id, tools, sets.held_out,
                                      progress, "specialized")  # fmt: skip
            seconds["score"] = round(time.perf_counter() - t0, 1)
    seconds["total"] = round(time.perf_counter() - started, 1)
    return SpecializeResult(
        tools=[t.name for t in tools], train_tasks=len(sets.train),
        held_out_tasks=len(sets.held_out), tasks_by_kind=sets.by_kind,
        skipped_draws=sets.skipped, data=str(data), training=training, grpo=grpo, gguf=gguf,
        gguf_artifact=gguf_artifact, sft_gguf=sft_gguf, base=base, sft=sft,
        specialized=specialized, seconds=seconds,
    )  # fmt: skip


GRPO_TURNS_PER_STEP = 4  # prompts a GRPO step samples (the CPU default of derive_grpo)


def grpo_tasks(steps: int) -> int:
    """Tasks to draw for `steps` GRPO steps: one pass over their turns (about two a task)."""
    return 0 if not steps else max(20, steps * GRPO_TURNS_PER_STEP // 2)


def _grpo_stage(
    request: SpecializeRequest,
    sft: FineTuneResult,
    sets: TaskSets,
    tools: list[Tool],
    system: str,
    tool_turns: bool,
    folder: Path,
    name: str,
    progress: ProgressFn,
) -> FineTuneResult:
    """GRPO from the SFT adapter on the turns of tasks neither SFT nor the held-out set
    saw, with `agent_turn` as the reward."""
    from lmfast.agents.specialize_grpo import REWARD, TURNS, balance_turns, step_rows

    from lmfast.artifacts import write_atomic
    from lmfast.training.finetune import FineTuneRequest, fine_tune

    rows = balance_turns(step_rows(sets.extra, system, [t.openai for t in tools],
                                   think=request.think, tool_turns=tool_turns))  # fmt: skip
    data = folder / "grpo_turns.jsonl"
    write_atomic(data, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    mix = ", ".join(f"{sum(r['turn'] == t for r in rows)} {t}" for t in TURNS)
    progress(0, None, f"plan: GRPO from the SFT adapter, {request.grpo_steps} steps over "
             f"{len(rows)} turns of {len(sets.extra)} new tasks ({mix}; calls after an "
             "observation repeated to match the answers)")  # fmt: skip
    config = request.config.model_copy(deep=True)
    config.model.reference = sft.artifact_id
    config.data.path = str(data)
    config.data.validation_split = 0.0
    config.training.grpo.rewards = [REWARD]
    config.training.method = "grpo"
    # The recipe's steps, rate and batch are SFT's: GRPO derives its own.
    config.training.max_steps = request.grpo_steps
    config.training.epochs = None
    config.training.learning_rate = None
    config.training.warmup_ratio = None
    config.training.effective_batch_size = None
    config.training.micro_batch_size = None
    config.training.gradient_accumulation_steps = None
    config.training.max_seq_length = None
    stage = FineTuneRequest(config=config, name=f"{name} (GRPO)"[:200], fresh=request.fresh)
    return fine_tune(stage, _stage(progress, "grpo"))


def _stage(progress: ProgressFn, label: str) -> ProgressFn:
    """A training stage's progress, labelled; its plan and warnings pass as they are."""

    def report(step: float, total: float | None = None, message: str = "",
               **metrics: float) -> None:  # fmt: skip
        shown = message if message.startswith(("plan: ", "warning: ")) else f"{label}: {message}"
        progress(step, total, shown, **metrics)

    return report


def _export_gguf(trained: FineTuneResult, profile: str, progress: ProgressFn) -> tuple[str, str]:
    """The adapter merged into a GGUF, with the agent profile beside it: (path, artifact)."""
    from lmfast.artifacts import write_atomic
    from lmfast.export.export import ExportRequest, export

    progress(0, None, "export: merging the adapter into a GGUF")
    exported = export(ExportRequest(model=trained.artifact_id, format="gguf"))
    write_atomic(Path(exported.path).parent / PROFILE_FILE, profile)
    return exported.path, exported.artifact_id


def _absolute_file_ref(ref: str, absolute: Any) -> str:
    target, sep, attr = ref.rpartition(":")
    return absolute(target) + sep + attr if target.endswith(".py") else ref


def _kinds(sets: TaskSets) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(sets.by_kind.items()))


def _expected(inst: TaskInstance) -> dict[str, Any]:
    return {"task": inst.task, "kind": inst.kind, "calls": inst.calls, "answer": inst.answer}


def solved(inst: TaskInstance, calls: list[tuple[str, dict[str, Any]]], answer: str | None) -> bool:
    """A refusal is solved by answering without a call; a task whose tools ran, by an answer
    holding the expected one; a schema-only task, by the expected first call."""
    if inst.kind == "refusal":
        return not calls and bool(answer)
    if inst.answer is None:
        return bool(calls) and calls[0] == inst.calls[0]
    return answer_matches(inst.answer, answer)


def score_agent(
    model: str,
    tools: list[Tool],
    tasks: list[TaskInstance],
    progress: ProgressFn = no_progress,
    label: str = "",
    **agent: Any,
) -> AgentScore:
    """Run the Agent (greedy, constrained; its defaults, which a specialized model brings
    with it, unless `agent` settings say otherwise) on each task and score it."""
    from lmfast.agents import Agent, LocalModel

    from lmfast.inference import load_engine
    from lmfast.inference.base import PromptTooLongError
    from lmfast.pipeline import Pipeline

    started = time.perf_counter()
    # Its own engine, not the shared cached pipeline: it is closed at the end.
    local = LocalModel(Pipeline(load_engine(model), model=model))
    attempts = valid = 0
    ok_by_kind: dict[str, list[bool]] = {}
    failures: list[dict[str, Any]] = []
    try:
        for n, inst in enumerate(tasks):
            progress(n, len(tasks), f"score {label}: {inst.task[:60]}")
            steps = agent.get("max_steps") or max(3, len(inst.calls) + 2)
            settings = {**agent, "max_steps": steps}
            try:
                result = Agent(tools, local, **settings).run(inst.task)
            except PromptTooLongError as e:  # a run that outgrew the context: unsolved
                ok_by_kind.setdefault(inst.kind, []).append(False)
                if len(failures) < 5:
                    failures.append({"task": inst.task, "expected": inst.answer,
                                     "answer": None, "error": str(e)})  # fmt: skip
                continue
            calls = [(c.name, _args(c.arguments)) for c in result.calls]
            attempts += len(result.calls)
            valid += sum(c.valid for c in result.calls)
            ok = solved(inst, calls, result.answer)
            ok_by_kind.setdefault(inst.kind, []).append(ok)
            if not ok and len(failures) < 5:
                failures.append({"task": inst.task, "expected": inst.answer,
                                 "answer": result.answer, "calls": calls})  # fmt: skip
    finally:
        local.pipeline.engine.close()
    everything = [ok for oks in ok_by_kind.values() for ok in oks]
    return AgentScore(
        model=Path(model).name if Path(model).exists() else model,
        tasks=len(tasks),
        success=round(sum(everything) / max(1, len(everything)), 4),
        success_by_kind={k: round(sum(v) / len(v), 4) for k, v in sorted(ok_by_kind.items())},
        valid_call_rate=round(valid / attempts, 4) if attempts else None,
        calls=attempts,
        seconds=round(time.perf_counter() - started, 1),
        failures=failures,
    )


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"(unparsed)": arguments}
    return value if isinstance(value, dict) else {"(value)": value}
