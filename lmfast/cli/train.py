"""`lmfast train` (a recipe plus everyday flags) and `lmfast merge` (adapter -> full model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lmfast.cli.output import console


def train_command(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Recipe overrides such as training.lora.rank=8 (repeatable)."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML recipe.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Base model.")] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="Dataset artifact id, file, folder, glob.")
    ] = None,
    method: Annotated[str | None, typer.Option(help="sft, cpt, pretrain or grpo.")] = None,
    reward: Annotated[
        list[str] | None,
        typer.Option(
            help="GRPO reward (repeatable; implies --method grpo): exact_answer, format, "
            "json_valid, tool_call, length, or module:function / file.py:function."
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(help="Pretrain this template from scratch (implies --method pretrain)."),
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Pretraining: tokenizer artifact or model reference.")
    ] = None,
    streaming: Annotated[
        bool,
        typer.Option(
            "--streaming", help="Tokenize while training reads (large data; needs --max-steps)."
        ),
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Train all weights instead of LoRA adapters.")
    ] = False,
    epochs: Annotated[float | None, typer.Option(help="Passes over the data.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    seq_len: Annotated[int | None, typer.Option(help="Tokens per sequence.")] = None,
    name: Annotated[str | None, typer.Option(help="Name for the output artifact.")] = None,
    resume: Annotated[
        str | None,
        typer.Option(help="Resume this run id (LMFAST_HOME/runs) from its last checkpoint."),
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="Ignore earlier checkpoints of the same run.")
    ] = False,
    background: Annotated[bool, typer.Option("--background", help="Print the job id only.")] = (
        False
    ),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    num_processes: Annotated[
        int, typer.Option(min=1, help="Training processes in total (DDP through accelerate).")
    ] = 1,
    num_machines: Annotated[int, typer.Option(min=1, help="Machines taking part.")] = 1,
    machine_rank: Annotated[int, typer.Option(min=0, help="This machine's rank.")] = 0,
    main_process_ip: Annotated[str, typer.Option(help="Address of machine rank 0.")] = "127.0.0.1",
    main_process_port: Annotated[int, typer.Option(help="Port of machine rank 0.")] = 29500,
) -> None:
    """Fine-tune a model (LoRA by default; QLoRA on small GPUs; --full), or pretrain a template
    from scratch, as a job with progress; --num-processes N trains data-parallel."""
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.config import load_config
    from lmfast.training.finetune import FineTuneRequest
    from lmfast.training.launch import LaunchSettings

    items = list(overrides or [])
    launch = LaunchSettings(
        num_processes=num_processes,
        num_machines=num_machines,
        machine_rank=machine_rank,
        main_process_ip=main_process_ip,
        main_process_port=main_process_port,
    )
    if resume is not None:
        request = _resumed_request(resume)
    else:
        flags = {
            "model.reference": model,
            "data.path": data,
            "training.method": method or ("pretrain" if template else "grpo" if reward else None),
            "training.grpo.rewards": reward or None,
            "model.template": template,
            "model.tokenizer": tokenizer,
            "data.streaming": True if streaming else None,
            "training.lora.enabled": False if full else None,
            "training.epochs": epochs,
            "training.max_steps": max_steps,
            "training.learning_rate": learning_rate,
            "training.max_seq_length": seq_len,
        }
        cfg = load_config(config, items, values=flags)
        request = FineTuneRequest(config=cfg, name=name, fresh=fresh, launch=launch)
    result = run_job_for_people("fine_tune", request, background, json_out)
    if result is not None:
        show_result(result)


def _resumed_request(run_id: str) -> Any:
    from lmfast.errors import LMFastError
    from lmfast.home import lmfast_home
    from lmfast.training.finetune import FineTuneRequest

    saved = lmfast_home() / "runs" / run_id / "request.json"
    if not saved.is_file():
        raise LMFastError(f"--resume: no run {run_id!r} in {saved.parent.parent}")
    request = FineTuneRequest.model_validate_json(saved.read_text())
    return request.model_copy(update={"run_id": run_id, "fresh": False})


def show_result(result: dict[str, Any]) -> None:
    m = result["metrics"]
    table = Table(title="fine_tune", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("artifact", f"{result['artifact_id']} ({result['kind']})")
    table.add_row("backend", f"{result['backend']} ({result['backend_reason']})")
    table.add_row("run", f"{result['run_id']}" + (
        f" (resumed from step {result['resumed_from_step']})" if result["resumed_from_step"] else ""
    ))  # fmt: skip
    table.add_row("dataset", result["dataset_artifact"])
    table.add_row("steps", f"{m['steps']:.0f}")
    table.add_row("train loss", f"{m['train_loss']:.4f}")
    if "eval_loss" in m:
        table.add_row("eval loss", f"{m['eval_loss']:.4f}")
    table.add_row(
        "trainable", f"{m['trainable_parameters']:,.0f} ({m['trainable_ratio']:.2%} of the model)"
    )
    table.add_row("tokens/s", f"{m['tokens_per_second']:.1f}")
    table.add_row(
        "peak memory", f"{m['peak_memory_gb']:.2f} GB (planned {m['planned_peak_memory_gb']} GB)"
    )
    table.add_row("time", f"{m['seconds']:.0f} s")
    if result.get("loss_curve"):
        table.add_row("loss curve", result["loss_curve"])
    console.print(table)
    for warning in result.get("warnings", []):
        console.print(f"[yellow]warning: {escape(warning)}[/]")
    console.print(f"[green]saved[/] {result['artifact_id']} at {result['path']}")


def merge_command(
    adapter: Annotated[str, typer.Argument(help="Adapter artifact id or folder.")],
    dtype: Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16.")] = "auto",
    name: Annotated[str | None, typer.Option(help="Name for the model artifact.")] = None,
    background: Annotated[bool, typer.Option("--background", help="Print the job id only.")] = (
        False
    ),
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fold a LoRA adapter into its base model: a full Hugging Face model artifact."""
    from lmfast.cli.jobs import run_job_for_people
    from lmfast.training.merge import MergeRequest

    request = MergeRequest(adapter=adapter, dtype=dtype, name=name)  # type: ignore[arg-type]
    result = run_job_for_people("merge_adapter", request, background, json_out)
    if result is not None:
        console.print(
            f"[green]saved[/] {result['artifact_id']} ({result['parameters']:,} parameters)"
        )
