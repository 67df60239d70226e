"""`lmfast doctor` and `lmfast plan`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lmfast.cli.output import console, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def doctor_command(
    json_out: JsonOpt = False,
    recheck: Annotated[
        bool,
        typer.Option(
            "--recheck",
            help="Run llama.cpp's first-run CPU check again now (on the embedded model).",
        ),
    ] = False,
) -> None:
    """Report Python, torch, CUDA/GPU, llama.cpp on this CPU, accelerators and the Rust core."""
    from lmfast.doctor import doctor

    report = doctor(recheck=recheck)
    if json_out:
        print_json(report)
        return
    hw = report.hardware
    table = Table(title=f"LMFast {report.lmfast_version}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("python", f"{report.python} on {report.platform}")
    table.add_row("rust core", report.native_core or "[red]not built[/]")
    table.add_row("hardware", hw.describe())
    table.add_row("torch", f"{hw.torch_version or 'missing'} (CUDA {hw.cuda_version or '-'})")
    table.add_row("cuda available", "yes" if report.cuda_available else "no")
    if hw.gpu:
        table.add_row("bf16", "yes" if hw.bf16 else f"no ({hw.gpu.name}: training uses float16)")
    else:
        table.add_row(
            "bf16",
            "yes (CPU bfloat16 instructions: mixed-precision training)"
            if hw.bf16
            else f"no ({hw.accelerator}: training uses float32)",
        )
    table.add_row(
        "training backend", f"{report.training_backend} ({report.training_backend_reason})"
    )
    table.add_row("environment", hw.environment)
    table.add_row("LMFAST_HOME", report.lmfast_home)
    hub = "offline (HF_HUB_OFFLINE)" if report.hub_offline else "online if reachable"
    table.add_row("hub", hub)
    console.print(table)
    lc = report.llama_cpu
    cpu = Table(title="llama.cpp on this CPU", show_header=False)
    cpu.add_column("what", style="bold")
    cpu.add_column("value")
    cpu.add_row("CPU", f"{lc.cpu_model} ({lc.cpu_class})")
    cpu.add_row("build", lc.build or "[red]llama-cpp-python not installed[/]")
    runnable = [f"{n} ({s})" for n, s in lc.variants.items() if s > 0]
    cpu.add_row("variants", ", ".join(runnable) or "one built-in CPU backend")
    cpu.add_row("check", lc.check)
    cpu.add_row("settings", lc.settings or "-")
    for attempt in lc.attempts:
        cpu.add_row("tried", attempt)
    if lc.features:
        cpu.add_row("features", lc.features)
    console.print(cpu)
    pkgs = Table(title="Packages")
    for col in ("package", "version", "purpose"):
        pkgs.add_column(col)
    for p in [*report.packages, *report.accelerators, *report.extras]:
        version = p.version or ("installed" if p.installed else "[dim]not installed[/]")
        pkgs.add_row(p.name, version, p.purpose)
    console.print(pkgs)


def plan_command(
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Overrides such as training.lora.rank=8.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML recipe.")] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="Plan for a simulated machine (t4, a100, h100, cpu), not this one."),
    ] = None,
    dataset_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="Training tokens per epoch, for the time estimate."),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Base model.")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Prepare this data (cached for the run) and derive the settings the recipe "
            "leaves open from it, as `lmfast train` would, without training.",
        ),
    ] = None,
    method: Annotated[str | None, typer.Option(help="sft, cpt or pretrain.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Resolve a config for this machine and show the plan with memory and time estimates;
    with --data, the settings `lmfast train` would derive from that data, with reasons."""
    from lmfast.config import load_config
    from lmfast.errors import ConfigError
    from lmfast.hardware import PROFILES, detect_hardware
    from lmfast.plan import plan_training

    values = {"model.reference": model, "data.path": data, "training.method": method}
    cfg = load_config(config, overrides or [], values=values)
    if profile is not None and profile not in PROFILES:
        raise ConfigError([("--profile", f"{profile!r} is not one of {', '.join(PROFILES)}")])
    if data is not None:
        from lmfast.training.finetune import FineTuneRequest, plan_run

        if dataset_tokens is not None:
            raise ConfigError([("--dataset-tokens", "give the data or its token count, not both")])
        with console.status("preparing the data and deriving the plan"):
            request = FineTuneRequest(config=cfg, profile=profile)  # type: ignore[arg-type]
            plan = plan_run(request).plan
    else:
        from lmfast.training.pretrain import recipe_spec

        hardware = PROFILES[profile] if profile else detect_hardware()
        plan = plan_training(cfg, hardware, recipe_spec(cfg), dataset_tokens)
    if json_out:
        print_json(plan)
        return
    table = Table(title=f"Plan for {plan.hardware}", show_header=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    rows = {
        "device": plan.device,
        "dtype": plan.dtype,
        "quantization": plan.quantization + (" (double)" if plan.double_quantization else ""),
        "method": "LoRA" if plan.lora else "full fine-tune",
        "gradient checkpointing": str(plan.gradient_checkpointing),
        "attention": plan.attn_implementation,
        "optimizer": plan.optimizer,
        "batch": f"{plan.micro_batch_size} x {plan.gradient_accumulation_steps} accumulation "
        f"= {plan.effective_batch_size} sequences of {plan.max_seq_length} tokens",
        "threads": str(plan.num_threads or "-"),
        "parameters": f"{plan.total_parameters / 1e6:.1f} M "
        f"({plan.trainable_parameters / 1e6:.2f} M trainable)",
        "peak memory (est.)": f"{plan.estimated_peak_memory_gb:.2f} GB of "
        f"{plan.memory_budget_gb:.1f} GB budget" + ("" if plan.fits else " [red]DOES NOT FIT[/]"),
        "throughput (est.)": f"{plan.estimated_tokens_per_second:,.0f} tokens/s",
        "steps": str(plan.total_steps or "unknown"),
        "training time (est.)": f"{plan.estimated_training_time_minutes} min"
        if plan.estimated_training_time_minutes is not None
        else "unknown",
    }
    for k, v in rows.items():
        table.add_row(k, v)
    console.print(table)
    if plan.choices:
        chosen = Table(title="Chosen from the data", show_header=True)
        for col in ("setting", "value", "why"):
            chosen.add_column(col)
        for c in plan.choices:
            chosen.add_row(c.setting, str(c.value), c.reason)
        console.print(chosen)
    if plan.summary:
        console.print(plan.summary)
    for note in plan.notes:
        console.print(f"[dim]- {note}[/]")
    for warning in plan.warnings:
        console.print(f"[yellow]warning: {warning}[/]")
