"""MCP tools for the training lifecycle beyond fine_tune: distill and align_orpo. Thin
adapters: confine paths, build the request, start the job."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from lmfast.mcp_server import jobs
from lmfast.mcp_server.jobs import JobOutcome
from lmfast.mcp_server.paths import client_roots, confine_input, confine_model_reference
from lmfast.mcp_server.recipes import recipe
from lmfast.mcp_server.tool_errors import tool_errors
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from lmfast.config import DEFAULT_MODEL

Steps = Annotated[int | None, Field(ge=1, le=1_000_000, description="Optimizer steps.")]
Epochs = Annotated[float | None, Field(gt=0, le=100, description="Passes over the data.")]
SeqLen = Annotated[int | None, Field(ge=16, le=131072, description="Tokens per sequence.")]
Overrides = Annotated[
    dict[str, Any] | None,
    Field(description="Any other recipe settings, e.g. {'training.learning_rate': 1e-4}."),
]
Name = Annotated[str | None, Field(max_length=200, description="Artifact name.")]
Wait = Annotated[bool, Field(description="Follow the job to the end.")]


def _data(data: str, roots: Any) -> str:
    from lmfast.artifacts import ArtifactStore

    return data if ArtifactStore().exists(data) else confine_input(data, "data", roots)


def add_lifecycle_tools(mcp: MCPServer) -> None:
    @mcp.tool(
        description="Distil a teacher into a smaller student: loss (1 - alpha) x CE + alpha x "
        "T^2 x KL(teacher || student). mode='online' keeps the teacher in memory; 'offline' "
        "stores its top-k log-probabilities once and trains from them. The student is `student`"
        " (same tokenizer as the teacher) or built from the teacher's layers with "
        "student_layers ('every_other' or indices). A job with progress (step, loss, KL); the "
        "result names the student artifact and, with eval_tasks, a side-by-side report with "
        "decode speed. Calling again with the same settings resumes from the last checkpoint."
    )
    @tool_errors
    async def distill(
        ctx: Context,
        data: Annotated[str, Field(description="Dataset artifact id, or a JSONL file / folder.")],
        teacher: Annotated[str, Field(min_length=1, description="Teacher model.")] = DEFAULT_MODEL,
        student: Annotated[
            str | None, Field(description="Student model (omit with student_layers).")
        ] = None,
        student_layers: Annotated[
            Literal["every_other"] | list[int] | None,
            Field(description="Build the student from these teacher layers."),
        ] = None,
        mode: Annotated[Literal["online", "offline"], Field(description="Teacher mode.")] = (
            "online"
        ),
        alpha: Annotated[float, Field(ge=0, le=1, description="KL weight.")] = 0.5,
        temperature: Annotated[float, Field(gt=0, le=20, description="Softmax temperature.")] = 2.0,
        top_k: Annotated[int, Field(ge=1, le=1024, description="Offline: logits kept.")] = 32,
        lora: Annotated[
            bool | None,
            Field(description="LoRA adapters on the student (default: all weights)."),
        ] = None,
        max_steps: Steps = None,
        epochs: Epochs = None,
        max_seq_length: SeqLen = None,
        student_mlp_ratio: Annotated[
            float | None,
            Field(gt=0.0, le=1.0, description="Built students: share of MLP neurons kept."),
        ] = None,
        eval_tasks: Annotated[
            list[str] | None, Field(description="Sample task names for the side-by-side report.")
        ] = None,
        eval_limit: Annotated[
            int | None, Field(ge=1, description="At most this many examples per task.")
        ] = None,
        overrides: Overrides = None,
        name: Name = None,
        wait: Wait = False,
    ) -> JobOutcome:
        from lmfast.distillation.distill import DistillRequest
        from lmfast.evaluation.tasks import sample_tasks

        roots = await client_roots(ctx)
        unknown = [t for t in eval_tasks or [] if t not in sample_tasks()]
        if unknown:  # task files would be paths: only the bundled tasks here
            raise ValueError(
                f"eval_tasks: {unknown} are not sample tasks ({', '.join(sample_tasks())})"
            )
        values = {
            "model.reference": confine_model_reference(student, "student", roots)
            if student
            else None,
            "data.path": _data(data, roots),
            "training.lora.enabled": lora,
            "training.max_steps": max_steps,
            "training.epochs": epochs,
            "training.max_seq_length": max_seq_length,
        }
        request = DistillRequest(
            config=recipe(values, overrides),
            teacher=confine_model_reference(teacher, "teacher", roots),
            mode=mode,
            alpha=alpha,
            temperature=temperature,
            top_k=top_k,
            student_layers=student_layers,
            student_mlp_ratio=student_mlp_ratio,
            eval_tasks=eval_tasks,
            eval_limit=eval_limit,
            name=name,
        )
        return await jobs.start_job("distill", request, wait, ctx)

    @mcp.tool(
        description="Align a model to preference pairs ({prompt, chosen, rejected} rows or "
        "chat-style pairs, JSONL): ORPO (no reference model; default) or DPO, with LoRA. Bad "
        "rows are reported by line. A job with progress (loss, reward margin, log-odds ratio); "
        "the result names the adapter and the held-out preference accuracy before and after. "
        "Calling again with the same settings resumes from the last checkpoint."
    )
    @tool_errors
    async def align_orpo(
        ctx: Context,
        data: Annotated[
            str, Field(description="Preference pairs: JSONL file, folder or dataset id.")
        ],
        model: Annotated[str, Field(description="Model to align.")] = DEFAULT_MODEL,
        method: Annotated[Literal["orpo", "dpo"], Field(description="orpo or dpo.")] = "orpo",
        beta: Annotated[float, Field(gt=0, le=10, description="ORPO lambda / DPO beta.")] = 0.1,
        lora: Annotated[
            bool | None, Field(description="LoRA adapters (default; false: all weights).")
        ] = None,
        learning_rate: Annotated[
            float | None, Field(gt=0, le=1, description="Peak rate (default: the recipe's).")
        ] = None,
        max_steps: Steps = None,
        epochs: Epochs = None,
        max_seq_length: SeqLen = None,
        validation_split: Annotated[
            float | None,
            Field(ge=0, le=0.5, description="Held-out pairs for preference accuracy."),
        ] = None,
        overrides: Overrides = None,
        name: Name = None,
        wait: Wait = False,
    ) -> JobOutcome:
        from lmfast.alignment.align import AlignRequest

        roots = await client_roots(ctx)
        values = {
            "model.reference": confine_model_reference(model, client_roots=roots),
            "data.path": _data(data, roots),
            "data.validation_split": validation_split,
            "training.lora.enabled": lora,
            "training.learning_rate": learning_rate,
            "training.max_steps": max_steps,
            "training.epochs": epochs,
            "training.max_seq_length": max_seq_length,
        }
        request = AlignRequest(
            config=recipe(values, overrides), method=method, beta=beta, name=name
        )
        return await jobs.start_job("align_orpo", request, wait, ctx)

    @mcp.tool(
        description="Quantize a model in one job: an adapter is merged, the model converted to "
        "GGUF and quantized by llama.cpp (q8_0, q6_k, q5_k_m, q4_k_m, q4_0, ...), with an Ollama "
        "Modelfile beside it; type='mixed' measures each tensor's sensitivity on calibration "
        "text and keeps the sensitive ones at higher precision within a size budget (default: "
        "the base mix's size); int8 / int4 stay in PyTorch (torchao on CPU). The result names "
        "the artifact (usable as a model everywhere), its lineage, size, held-out perplexity "
        "against f16 and decode speed."
    )
    @tool_errors
    async def quantize(
        ctx: Context,
        model: Annotated[str, Field(description="Adapter, model, .gguf or alias.")],
        type: Annotated[str, Field(description="GGUF type, 'mixed', 'int8' or 'int4'.")] = "q4_k_m",
        base: Annotated[str, Field(description="mixed: mix that sets the budget.")] = "q4_k_m",
        size_budget_mb: Annotated[
            float | None, Field(gt=0, description="mixed: tensor data budget in MB.")
        ] = None,
        calibration: Annotated[
            str | None, Field(description="mixed: calibration text / JSONL file.")
        ] = None,
        calibration_tokens: Annotated[
            int, Field(ge=128, le=65536, description="mixed: tokens measured.")
        ] = 512,
        measure: Annotated[bool, Field(description="Measure perplexity and speed.")] = True,
        eval_text: Annotated[
            str | None,
            Field(description="Held-out text file for the perplexity (default: 'prose')."),
        ] = None,
        name: Name = None,
        wait: Wait = False,
    ) -> JobOutcome:
        from lmfast.export.quantize import QuantizeRequest

        roots = await client_roots(ctx)
        request = QuantizeRequest(
            model=confine_model_reference(model, client_roots=roots),
            type=type,
            base=base,
            size_budget_mb=size_budget_mb,
            calibration=confine_input(calibration, "calibration", roots) if calibration else None,
            calibration_tokens=calibration_tokens,
            measure=measure,
            eval_text=confine_input(eval_text, "eval_text", roots) if eval_text else None,
            name=name,
        )
        return await jobs.start_job("quantize", request, wait, ctx)

    @mcp.tool(
        description="Export a model without quantizing it: float GGUF (f32/f16/bf16, with an "
        "Ollama Modelfile), merged safetensors, or ONNX (logits graph, validated in ONNX "
        "Runtime). A job; the result names the export artifact and its lineage."
    )
    @tool_errors
    async def export_model(
        ctx: Context,
        model: Annotated[str, Field(description="Adapter, model, .gguf or alias.")],
        format: Annotated[
            Literal["gguf", "safetensors", "onnx"], Field(description="Output format.")
        ] = "gguf",
        dtype: Annotated[
            Literal["f32", "f16", "bf16"] | None,
            Field(description="Weights (default f16; onnx: f32 only)."),
        ] = None,
        name: Name = None,
        wait: Wait = False,
    ) -> JobOutcome:
        from lmfast.export.export import ExportRequest

        roots = await client_roots(ctx)
        request = ExportRequest(
            model=confine_model_reference(model, client_roots=roots),
            format=format,
            dtype=dtype,
            name=name,
        )
        return await jobs.start_job("export", request, wait, ctx)
