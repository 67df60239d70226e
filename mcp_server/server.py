"""LMFast's capabilities as MCP tools, resources and prompts (MCP Python SDK v2, MCPServer).

Every tool is a thin adapter over the same function the CLI and Python API call; long work
runs as a job (a detached worker process) and a tool either returns its id at once or, with
`wait: true`, follows it to the end while sending progress notifications.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import anyio
from lmfast.guardrails.check import STAGE_HELP, GuardCheckResult, Stage
from lmfast.mcp_server import jobs
from lmfast.mcp_server.jobs import JobOutcome
from lmfast.mcp_server.paths import (
    client_roots,
    confine_input,
    confine_model_reference,
    confine_rewards,
)
from lmfast.mcp_server.recipes import recipe
from lmfast.mcp_server.tool_errors import tool_errors
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from pydantic import BaseModel, Field

from lmfast import __version__
from lmfast.config import DEFAULT_MODEL
from lmfast.data.audit import Explanation
from lmfast.errors import LMFastError
from lmfast.generation import GenerateResult
from lmfast.inference.base import ChatMessage
from lmfast.jobs.store import JobInfo, JobStatus
from lmfast.registry import ModelInfo, ModelListing

P = ParamSpec("P")
T = TypeVar("T")


def _instructions() -> str:
    """The server's instructions; the job tools are read from the job kinds, so a new job
    capability is listed without anyone remembering to."""
    from lmfast.capabilities import CAPABILITIES
    from lmfast.jobs.kinds import KINDS

    jobs = ", ".join(CAPABILITIES[k][1] for k in KINDS if k in CAPABILITIES)
    return (
        "LMFast runs small language models locally: generate text, list and inspect models, "
        "convert models, prepare datasets, train tokenizers, fine-tune, search "
        "hyper-parameters, distill, align to preferences (ORPO / DPO), merge adapters, "
        "specialize a model for an agent's tools, evaluate, quantize and export models. Long work "
        f"({jobs}) runs as a job: pass wait=true to follow it with progress, or poll "
        "job_status / job_result with the job_id; clients with the tasks extension "
        "(io.modelcontextprotocol/tasks) get a task to poll instead. A job estimated to train "
        "for over an hour, or past the memory budget, asks the user first."
    )


INSTRUCTIONS = _instructions()


def _forbid_unknown_arguments(mcp: MCPServer) -> None:
    """A misspelt argument is an error listing the valid ones, never silently dropped."""
    for tool in mcp._tool_manager.list_tools():
        model = tool.fn_metadata.arg_model
        model.model_config["extra"] = "forbid"
        model.model_rebuild(force=True)
        tool.parameters = model.model_json_schema(by_alias=True)


class _StrictMCPServer(MCPServer):
    """Refuses unknown tool arguments by name, listing the valid ones (as the CLI does)."""

    async def call_tool(self, name: str, arguments: dict[str, Any], *args: Any, **kw: Any) -> Any:
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
            valid = sorted(tool.parameters.get("properties", {}))
            unknown = sorted(set(arguments) - set(valid))
            if unknown:
                raise ToolError(
                    f"unknown argument{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(map(repr, unknown))} for {name}; valid arguments: "
                    f"{', '.join(valid) or '(none)'}"
                )
        return await super().call_tool(name, arguments, *args, **kw)


def build_server() -> MCPServer:
    from lmfast.mcp_server.tasks import JobTasks
    from lmfast.mcp_server.watch import add_resource_updates

    mcp = _StrictMCPServer(
        "lmfast", instructions=INSTRUCTIONS, version=__version__, extensions=[JobTasks()]
    )
    add_resource_updates(mcp)  # subscribers to jobs://{id} and artifacts://index hear changes

    # -- generation --------------------------------------------------------------------
    @mcp.tool(
        description="Generate a reply from a local model (default: the embedded "
        "SmolLM2-135M-Instruct). Give `prompt` or a full `messages` history."
    )
    @tool_errors
    async def generate(
        ctx: Context,
        prompt: Annotated[str | None, Field(description="A single user message.")] = None,
        messages: Annotated[
            list[ChatMessage] | None, Field(description="A chat history instead of prompt.")
        ] = None,
        model: Annotated[str, Field(description="Alias, artifact id, local path or hub id.")] = (
            DEFAULT_MODEL
        ),
        system: Annotated[str | None, Field(description="System message.")] = None,
        max_tokens: Annotated[int, Field(ge=1, le=4096, description="Most tokens.")] = 256,
        temperature: Annotated[float, Field(ge=0, le=2, description="0 is greedy.")] = 0.7,
        top_p: Annotated[float, Field(gt=0, le=1, description="Nucleus mass.")] = 1.0,
        seed: Annotated[int | None, Field(ge=0, le=2**32 - 1, description="Seed.")] = None,
        stop: Annotated[list[str] | None, Field(max_length=16, description="Stops.")] = None,
        json_schema: Annotated[
            dict[str, Any] | None, Field(description="Constrain the reply to this JSON schema.")
        ] = None,
    ) -> GenerateResult:
        from lmfast.generation import GenerateRequest
        from lmfast.generation import generate as run
        from lmfast.inference.base import SamplingParams
        from lmfast.pipeline import ResponseFormat

        roots = await client_roots(ctx)
        request = GenerateRequest(
            model=confine_model_reference(model, client_roots=roots),
            prompt=prompt,
            messages=messages,
            system=system,
            params=SamplingParams(
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                stop=stop or [],
            ),
            response_format=ResponseFormat(type="json_schema", json_schema=json_schema)
            if json_schema
            else None,
        )
        out = await anyio.to_thread.run_sync(run, request)
        return out

    @mcp.tool(
        description="Check a text against a guard policy before using it (a prompt before "
        "sending it, a document before it goes into training data): whether the policy "
        "refuses it and why (prompt injection, PII), the text redacted as the policy passes "
        "it on, and every finding (entity types, injection risk with reasons). Offline."
    )
    @tool_errors
    async def guard_check(
        ctx: Context,
        text: Annotated[str, Field(max_length=1_000_000, description="The text to check.")],
        policy: Annotated[
            str, Field(description="strict, balanced, permissive, or a policy YAML file.")
        ] = "balanced",
        stage: Annotated[Stage, Field(description=STAGE_HELP)] = "input",
    ) -> GuardCheckResult:
        from lmfast.guardrails.check import GuardCheckRequest
        from lmfast.guardrails.check import guard_check as run
        from lmfast.guardrails.policy import PRESETS

        if policy not in (*PRESETS, "off"):
            policy = confine_input(policy, "policy", client_roots=await client_roots(ctx))
        request = GuardCheckRequest(text=text, policy=policy, stage=stage)
        return await anyio.to_thread.run_sync(run, request)

    # -- models ------------------------------------------------------------------------
    @mcp.tool(
        description="List model aliases (and whether each works offline) and the "
        "model artifacts LMFast has produced."
    )
    @tool_errors
    async def list_models() -> list[ModelListing]:
        from lmfast.registry import list_models as run

        return await anyio.to_thread.run_sync(run)

    @mcp.tool(
        description="Describe a model without loading it: architecture, parameters, "
        "context length, quantization, chat template, lineage."
    )
    @tool_errors
    async def model_info(
        ctx: Context,
        model: Annotated[str, Field(description="Alias, artifact id, local path or hub id.")] = (
            DEFAULT_MODEL
        ),
    ) -> ModelInfo:
        from lmfast.registry import model_info as run

        reference = confine_model_reference(model, client_roots=await client_roots(ctx))
        return await anyio.to_thread.run_sync(run, reference)

    @mcp.tool(
        description="Convert a model (e.g. the embedded GGUF) into a trainable Hugging "
        "Face artifact. A job: returns a job_id, or with wait=true runs to the end and "
        "reports progress."
    )
    @tool_errors
    async def convert_model(
        ctx: Context,
        model: Annotated[str, Field(description="Model to convert.")] = DEFAULT_MODEL,
        dtype: Annotated[
            Literal["auto", "float32", "float16", "bfloat16"], Field(description="Weight dtype.")
        ] = "bfloat16",
        name: Annotated[str | None, Field(max_length=200, description="Artifact name.")] = None,
        wait: Annotated[bool, Field(description="Follow the job to the end.")] = False,
    ) -> JobOutcome:
        from lmfast.convert import ConvertRequest

        reference = confine_model_reference(model, client_roots=await client_roots(ctx))
        request = ConvertRequest(model=reference, dtype=dtype, name=name)
        return await jobs.start_job("convert_model", request, wait, ctx)

    @mcp.tool(
        description="Prepare a dataset from files: normalize, quality-filter (Gopher, "
        "C4, FineWeb), deduplicate (exact + MinHash), format chat data with the model's "
        "template and tokenize/pack. A job: returns a job_id, or with wait=true runs "
        "to the end and reports progress."
    )
    @tool_errors
    async def prep_dataset(
        ctx: Context,
        inputs: Annotated[
            list[str], Field(min_length=1, max_length=1000, description="Files, folders, globs.")
        ],
        format: Annotated[
            Literal[
                "auto", "text", "messages", "alpaca", "sharegpt", "prompt_response", "preference"
            ],
            Field(description="Record layout (preference: prompt / chosen / rejected pairs)."),
        ] = "auto",
        text_field: Annotated[str | None, Field(description="Field with raw text.")] = None,
        tokenizer: Annotated[
            str | None, Field(description="Tokenize and pack with this model's tokenizer.")
        ] = None,
        seq_len: Annotated[int, Field(ge=8, le=131072, description="Tokens per sequence.")] = 2048,
        filters: Annotated[
            Literal["auto", "web", "document", "minimal", "off"],
            Field(description="Quality filter preset."),
        ] = "auto",
        exact_dedup: Annotated[bool, Field(description="Drop exact duplicates.")] = True,
        near_dedup: Annotated[bool, Field(description="Drop near duplicates.")] = True,
        name: Annotated[str | None, Field(max_length=200, description="Artifact name.")] = None,
        engine: Annotated[
            Literal["local", "ray"],
            Field(description="Run shards and near dedup here or on Ray (same artifact)."),
        ] = "local",
        ray_address: Annotated[
            str | None,
            Field(max_length=500, description="Ray cluster for engine='ray' (None: local)."),
        ] = None,
        settings: Annotated[
            dict[str, Any] | None,
            Field(
                description="Other prep settings by field name, as `lmfast prep --set` takes "
                "them: normalization, strip_markup, scrub {emails, ip_addresses, "
                "phone_numbers}, pack, text_files, shard_size, shard_bytes, id_field, strict, "
                "warn_drop_fraction, filters {...}."
            ),
        ] = None,
        wait: Annotated[bool, Field(description="Follow the job to the end.")] = False,
    ) -> JobOutcome:
        from lmfast.mcp_server.paths import confine_input

        from lmfast.config import merge_dicts
        from lmfast.data.settings import FilterSettings, PrepRequest

        roots = await client_roots(ctx)
        own = ("inputs", "tokenizer", "format", "text_field", "seq_len", "name", "engine",
               "ray_address")  # fmt: skip
        for key in settings or {}:
            if key in own:  # one value per field; paths are confined through their arguments
                raise ToolError(f"settings: give {key!r} as its own argument")
        preset = FilterSettings.preset(filters)
        body: dict[str, Any] = {
            "inputs": [confine_input(p, f"inputs.{i}", roots) for i, p in enumerate(inputs)],
            "format": format,
            "text_field": text_field,
            "tokenizer": (
                confine_model_reference(tokenizer, "tokenizer", roots) if tokenizer else None
            ),
            "seq_len": seq_len,
            "filters": preset.model_dump() if preset else None,
            "dedup": {"exact": exact_dedup, "near": near_dedup},
            "name": name,
            "engine": engine,
            "ray_address": ray_address,
        }
        request = PrepRequest.model_validate(merge_dicts(body, settings or {}))
        return await jobs.start_job("prep_dataset", request, wait, ctx)

    @mcp.tool(
        description="Why prep_dataset kept, dropped or deduplicated a document: the filter "
        "that dropped it, or the document it duplicates (exact or near, with the estimated "
        "Jaccard), or where it sits in data.jsonl."
    )
    @tool_errors
    async def explain_document(
        doc_id: Annotated[
            str, Field(min_length=1, max_length=2000, description="Its id field, or file:line.")
        ],
        dataset: Annotated[
            str | None, Field(max_length=200, description="Dataset artifact (default: newest).")
        ] = None,
    ) -> Explanation:
        from lmfast.data.audit import explain_document as run

        return await anyio.to_thread.run_sync(run, doc_id, dataset)

    # -- training ----------------------------------------------------------------------
    @mcp.tool(
        description="Fine-tune a model on a dataset: LoRA by default (QLoRA on small GPUs, "
        "full with lora=false), SFT on chat data (loss on the answers) or continued "
        "pretraining (method='cpt'); or pretrain a model from scratch (method='pretrain' with "
        "a template: tiny, small, base, t5-small; and a tokenizer from train_tokenizer); or "
        "reinforcement learning with GRPO on prompt rows scored by `rewards`. "
        "A job with progress (step, total, loss, ETA): returns a "
        "job_id, or with wait=true runs to the end. The result names the adapter or model "
        "artifact; calling again with the same settings resumes from the last checkpoint."
    )
    @tool_errors
    async def fine_tune(
        ctx: Context,
        data: Annotated[
            str, Field(description="Dataset artifact id, or a JSONL / Parquet file or folder.")
        ],
        model: Annotated[
            str | None, Field(description="Base model to train (default: the recipe's).")
        ] = None,
        method: Annotated[
            Literal["sft", "cpt", "pretrain", "grpo"] | None,
            Field(
                description="sft (answers; default), cpt (every token), pretrain (from "
                "scratch, all weights) or grpo (prompt rows scored by rewards)."
            ),
        ] = None,
        rewards: Annotated[
            list[str] | None,
            Field(
                max_length=16,
                description="grpo (implied when given): built-in exact_answer, format, "
                "json_valid, tool_call, length, or file.py:function inside the client's roots.",
            ),
        ] = None,
        template: Annotated[
            str | None, Field(description="pretrain: tiny, small, base or t5-small.")
        ] = None,
        tokenizer: Annotated[
            str | None, Field(description="pretrain: tokenizer artifact (default: embedded).")
        ] = None,
        lora: Annotated[
            bool | None, Field(description="Train LoRA adapters (false: all weights).")
        ] = None,
        lora_rank: Annotated[int | None, Field(ge=1, le=1024, description="LoRA rank.")] = None,
        epochs: Annotated[
            float | None, Field(gt=0, le=100, description="Passes over the data.")
        ] = None,
        max_steps: Annotated[
            int | None, Field(ge=1, le=1_000_000, description="Optimizer steps.")
        ] = None,
        learning_rate: Annotated[float | None, Field(gt=0, le=1, description="Peak rate.")] = None,
        max_seq_length: Annotated[
            int | None, Field(ge=16, le=131072, description="Tokens per sequence.")
        ] = None,
        validation_split: Annotated[
            float | None, Field(ge=0, le=0.5, description="Held-out fraction for eval loss.")
        ] = None,
        overrides: Annotated[
            dict[str, Any] | None,
            Field(description="Any other recipe settings, e.g. {'training.lora.alpha': 32}."),
        ] = None,
        name: Annotated[str | None, Field(max_length=200, description="Artifact name.")] = None,
        wait: Annotated[bool, Field(description="Follow the job to the end.")] = False,
    ) -> JobOutcome:
        from lmfast.mcp_server.paths import confine_input

        from lmfast.artifacts import ArtifactStore
        from lmfast.training.finetune import FineTuneRequest
        from lmfast.training.templates import builtin_templates

        roots = await client_roots(ctx)
        if not ArtifactStore().exists(data):
            data = confine_input(data, "data", roots)
        if template is not None and template not in builtin_templates():
            raise ValueError(  # template files would be paths: only the built-in ones here
                f"template: {template!r} is not one of {', '.join(builtin_templates())}"
            )
        values = {
            "model.reference": (
                confine_model_reference(model, client_roots=roots) if model else None
            ),
            "training.grpo.rewards": confine_rewards(rewards, roots),
            "model.template": template,
            "model.tokenizer": (
                confine_model_reference(tokenizer, "tokenizer", roots) if tokenizer else None
            ),
            "data.path": data,
            "data.validation_split": validation_split,
            "training.method": method or ("grpo" if rewards else None),
            "training.lora.enabled": lora,  # pretraining's all-weights rule is the config's
            "training.lora.rank": lora_rank,
            "training.epochs": epochs,
            "training.max_steps": max_steps,
            "training.learning_rate": learning_rate,
            "training.max_seq_length": max_seq_length,
        }
        request = FineTuneRequest(config=recipe(values, overrides), name=name)
        return await jobs.start_job("fine_tune", request, wait, ctx)

    @mcp.tool(
        description="Fold a LoRA adapter into its base model: a full Hugging Face model "
        "artifact (safetensors, tokenizer, chat template). A job."
    )
    @tool_errors
    async def merge_adapter(
        ctx: Context,
        adapter: Annotated[str, Field(description="Adapter artifact id or folder.")],
        dtype: Annotated[
            Literal["auto", "float32", "float16", "bfloat16"], Field(description="Weights.")
        ] = "auto",
        name: Annotated[str | None, Field(max_length=200, description="Artifact name.")] = None,
        wait: Annotated[bool, Field(description="Follow the job to the end.")] = False,
    ) -> JobOutcome:
        from lmfast.training.merge import MergeRequest

        roots = await client_roots(ctx)
        reference = confine_model_reference(adapter, "adapter", roots)
        request = MergeRequest(adapter=reference, dtype=dtype, name=name)
        return await jobs.start_job("merge_adapter", request, wait, ctx)

    @mcp.tool(
        description="Evaluate one or more models on tasks and write a report artifact "
        "(Markdown, JSON, plots, per-example records; a comparison when several models are "
        "given). Tasks: sample names (arithmetic, capitals, definitions, prose, reading) or "
        "task files (.jsonl, .txt, .yaml: generation, multiple choice, perplexity), and "
        "optionally lm-evaluation-harness tasks. A job with progress per task and example."
    )
    @tool_errors
    async def evaluate(
        ctx: Context,
        models: Annotated[
            list[str],
            Field(min_length=1, max_length=8, description="Model references to evaluate."),
        ],
        tasks: Annotated[
            list[str] | None, Field(max_length=32, description="Sample task names or files.")
        ] = None,
        harness_tasks: Annotated[
            list[str] | None, Field(max_length=32, description="lm-evaluation-harness tasks.")
        ] = None,
        harness_include: Annotated[
            str | None, Field(description="Folder of extra harness YAML tasks.")
        ] = None,
        limit: Annotated[
            int | None, Field(ge=1, le=100_000, description="At most N examples per task.")
        ] = None,
        backend: Annotated[
            Literal["auto", "llamacpp", "transformers"], Field(description="Scorer backend.")
        ] = "auto",
        batch_size: Annotated[int, Field(ge=1, le=256, description="Requests together.")] = 8,
        efficiency: Annotated[
            bool, Field(description="Measure latency, tokens/s and peak memory.")
        ] = True,
        seed: Annotated[int, Field(ge=0, description="Few-shot selection seed.")] = 1234,
        tracker: Annotated[
            Literal["auto", "mlflow", "none"],
            Field(description="Log results to MLflow (auto: when installed) or not."),
        ] = "auto",
        name: Annotated[str | None, Field(max_length=200, description="Report name.")] = None,
        wait: Annotated[bool, Field(description="Follow the job to the end.")] = False,
    ) -> JobOutcome:
        from lmfast.mcp_server.paths import confine, confine_input

        from lmfast.evaluation.evaluate import EvaluateRequest
        from lmfast.evaluation.tasks import sample_tasks, task_spec

        roots = await client_roots(ctx)
        confined_tasks = []
        for i, task in enumerate(tasks or []):
            if task in sample_tasks():
                confined_tasks.append(task)
                continue
            path = confine_input(task, f"tasks[{i}]", roots)
            spec = await anyio.to_thread.run_sync(task_spec, path)  # reads a YAML, not data
            confine(spec.path, f"tasks[{i}] (its data file)", roots)
            confined_tasks.append(str(path))
        request = EvaluateRequest(
            models=[
                confine_model_reference(m, f"models[{i}]", roots) for i, m in enumerate(models)
            ],
            tasks=confined_tasks,
            harness_tasks=harness_tasks or [],
            harness_include=str(confine(harness_include, "harness_include", roots))
            if harness_include
            else None,
            limit=limit,
            backend=backend,
            batch_size=batch_size,
            efficiency=efficiency,
            seed=seed,
            tracker=tracker,
            name=name,
        )
        return await jobs.start_job("evaluate", request, wait, ctx)

    # -- jobs --------------------------------------------------------------------------
    @mcp.tool(description="A job's status and progress (step, total, message, metrics).")
    @tool_errors
    async def job_status(job_id: Annotated[str, Field(description="Job id.")]) -> JobInfo:
        from lmfast.jobs import JobStore

        return await anyio.to_thread.run_sync(JobStore().get, job_id)

    @mcp.tool(description="A job's result; an error while it is still running.")
    @tool_errors
    async def job_result(job_id: Annotated[str, Field(description="Job id.")]) -> JobOutcome:
        from lmfast.jobs import JobStore

        store = JobStore()
        info = await anyio.to_thread.run_sync(store.get, job_id)
        if not info.done:
            progress = info.message or "no progress yet"
            raise ToolError(
                f"job {job_id} is still {info.status} ({progress}); poll job_status or call "
                "again later"
            )
        return JobOutcome(
            job_id=job_id, status=info.status, result=store.result(job_id), error=info.error
        )

    @mcp.tool(description="Stop a running job. Its worker cleans up; nothing half-written is kept.")
    @tool_errors
    async def cancel_job(job_id: Annotated[str, Field(description="Job id.")]) -> JobInfo:
        from lmfast.jobs import cancel

        return await anyio.to_thread.run_sync(cancel, job_id)

    @mcp.tool(description="Recent jobs, newest first.")
    @tool_errors
    async def list_jobs(
        status: Annotated[JobStatus | None, Field(description="Only this status.")] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="Most jobs.")] = 50,
    ) -> list[JobInfo]:
        from lmfast.jobs import JobStore

        return await anyio.to_thread.run_sync(lambda: JobStore().list(status, limit))

    from lmfast.mcp_server.agent_tools import add_agent_tools
    from lmfast.mcp_server.lifecycle_tools import add_lifecycle_tools
    from lmfast.mcp_server.pretrain_tools import add_pretrain_tools

    add_lifecycle_tools(mcp)
    add_agent_tools(mcp)
    add_pretrain_tools(mcp)
    _forbid_unknown_arguments(mcp)
    _resources(mcp)
    _prompts(mcp)
    return mcp


def _resources(mcp: MCPServer) -> None:
    def read(fn: Callable[[], Any]) -> str:
        try:
            value = fn()
        except LMFastError as e:
            raise ResourceError(str(e)) from None
        if isinstance(value, BaseModel):
            return value.model_dump_json(indent=2)
        return json.dumps(value, indent=2, default=str)

    @mcp.resource(
        "jobs://{job_id}",
        name="job",
        mime_type="application/json",
        description="A job's state, progress and (when done) result.",
    )
    def job_resource(job_id: str) -> str:
        from lmfast.jobs import JobStore

        store = JobStore()
        return read(lambda: {**store.get(job_id).model_dump(), "result": store.result(job_id)})

    @mcp.resource(
        "model://{model}/info",
        name="model info",
        mime_type="application/json",
        description="Architecture, parameters, context length, quantization and "
        "lineage of a model (alias or artifact id).",
    )
    def model_resource(model: str) -> str:
        from lmfast.registry import model_info

        return read(lambda: model_info(confine_model_reference(model)))

    @mcp.resource(
        "artifacts://index",
        name="artifacts",
        mime_type="application/json",
        description="Every artifact's manifest, newest first.",
    )
    def artifacts_index() -> str:
        from lmfast.artifacts import ArtifactStore

        return read(lambda: [a.manifest.model_dump(mode="json") for a in ArtifactStore().list()])

    @mcp.resource(
        "artifact://{artifact_id}/manifest",
        name="artifact manifest",
        mime_type="application/json",
        description="One artifact's manifest: kind, parents, config hash, metrics.",
    )
    def artifact_resource(artifact_id: str) -> str:
        from lmfast.artifacts import ArtifactStore

        return read(lambda: ArtifactStore().get(artifact_id).manifest)


def _prompts(mcp: MCPServer) -> None:
    @mcp.prompt(
        description="Make the embedded model trainable: convert it, inspect the result and try it."
    )
    def convert_and_try(model: str = DEFAULT_MODEL) -> str:
        return (
            f"1. Call convert_model with model={model!r} and wait=true; report its progress.\n"
            "2. Read model://<artifact_id>/info for the new artifact and summarise its "
            "architecture, size and lineage.\n"
            "3. Call generate with model=<artifact_id> and the prompt 'What is the capital of "
            "France?', and show the answer."
        )

    @mcp.prompt(description="Prepare a training dataset from files and review what was kept.")
    def prepare_dataset(inputs: str, tokenizer: str = DEFAULT_MODEL) -> str:
        return (
            f"1. Call prep_dataset with inputs=[{inputs!r}], tokenizer={tokenizer!r} and "
            "wait=true; relay its progress.\n"
            "2. From the result's report, summarise documents and bytes in and out, the top "
            "reasons documents were dropped, duplicate clusters, read issues (with file and "
            "line) and the token count.\n"
            "3. If more than half the documents were dropped by one rule, say which setting "
            "controls it and suggest whether to relax it (filters='minimal' for chat data).\n"
            "4. Read artifact://<artifact_id>/manifest and report the dataset version id."
        )

    @mcp.prompt(description="Compare two models on the same questions with greedy decoding.")
    def compare_models(model_a: str, model_b: str, questions: str = "") -> str:
        qs = questions or "What is the capital of France?; Name three primary colours."
        return (
            f"For each question in [{qs}] (separated by ';'), call generate twice with "
            f"temperature=0: once with model={model_a!r}, once with model={model_b!r}. "
            "Put the answers side by side in a table, note where they differ, and say which "
            "model answered better and why. Use model_info on each model to explain size or "
            "quantization differences."
        )
