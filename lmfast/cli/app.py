"""Root of the `lmfast` command. Sub-commands live in modules named after what they do."""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from lmfast.cli import (
    agent,
    attention,
    chat,
    distill,
    evaluate,
    export,
    generate,
    guard,
    jobs,
    mcp,
    models,
    prep,
    pretrain,
    serve,
    studio,
    system,
    train,
)
from lmfast.errors import LMFastError

# Every command `lmfast` registers; a test asserts the app matches this table exactly.
COMMANDS: dict[str, str] = {
    "doctor": "report Python, torch, GPU, optional accelerators and the Rust core",
    "plan": "show the hardware plan (dtype, quantization, batch, memory and time estimates)",
    "generate": "generate a reply from a model",
    "prep": "clean, filter, deduplicate, tokenize and pack a dataset",
    "explain": "why prep kept, dropped or deduplicated a document",
    "train": "fine-tune (LoRA, QLoRA, full; SFT or continued pretraining) or pretrain a "
    "template from scratch, on one process or several (DDP)",
    "tokenizer train": "train a byte-level BPE or Unigram tokenizer with a chat template",
    "templates list": "model templates for pretraining, with parameters and plan estimates",
    "tune": "search recipe fields with Optuna (CMA-ES / NSGA-II, pruning); best recipe as YAML",
    "merge": "fold a LoRA adapter into a full model artifact",
    "distill": "distil a teacher into a student (online, or from stored top-k teacher logits)",
    "align": "align a model to preference pairs with ORPO or DPO",
    "eval": "evaluate models on tasks (perplexity, accuracy, generation, lm-eval) and compare",
    "quantize": "quantize a model in one go: GGUF types, calibrated mixed precision, int8 / int4",
    "export": "export a model as float GGUF (with an Ollama Modelfile), merged safetensors or ONNX",
    "chat": "chat with a model in the terminal (or through a pipe)",
    "serve": "serve a model over an OpenAI-compatible HTTP API",
    "speculate": "measure a draft model for serve --draft: acceptance, speed-up, same output",
    "mcp": "serve LMFast's tools over MCP (stdio or streamable HTTP)",
    "studio": "the web app: data, training, evaluation, export, chat, lineage and jobs",
    "models list": "list model aliases and model artifacts",
    "models info": "describe a model without loading it",
    "models convert": "turn a model (e.g. a GGUF) into a trainable Hugging Face artifact",
    "jobs list": "recent jobs",
    "jobs status": "a job's state and progress",
    "jobs result": "a finished job's result",
    "jobs wait": "follow a job with a progress bar",
    "jobs cancel": "stop a job",
    "agent run": "run a tool-calling agent (ReAct or code) on a task, showing each step",
    "agent specialize": "make a model good at your tools: tasks and trajectories from the "
    "tools, SFT, a GGUF, held-out agent scores",
    "attention": "saliency and attention rollout of an output token over the input (PNG)",
    "guard check": "check a text against a guard policy: PII findings, injection risk, the verdict",
    "guard train": "build the learned prompt-injection classifier (otherwise built on first use)",
}


class _FriendlyErrors(TyperGroup):
    """Turn LMFast and validation errors into one clear message and exit code 2."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["lmfast.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LMFastError as e:
            message = str(e)
        except ValidationError as e:
            from lmfast.config import validation_problems

            lines = "\n  ".join(f"{p}: {m}" for p, m in validation_problems(e))
            message = f"invalid value:\n  {lines}"
        if ctx.meta.get("lmfast.json"):
            # Scripts asked for JSON: the error is JSON too, on standard output.
            print(json.dumps({"error": {"message": message}}, ensure_ascii=False))
            raise typer.Exit(2)
        from rich.console import Console

        # soft_wrap: long paths and ids stay on one line, so they can be copied.
        Console(stderr=True).print(
            f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(2)


app = typer.Typer(
    name="lmfast",
    cls=_FriendlyErrors,
    help="Fine-tune, evaluate, export and serve small language models on modest hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("doctor")(system.doctor_command)
app.command("plan")(system.plan_command)
app.command("generate")(generate.generate_command)
app.command("chat")(chat.chat_command)
app.command("prep")(prep.prep_command)
app.command("explain")(prep.explain_command)
app.command("train")(train.train_command)
app.command("merge")(train.merge_command)
app.command("distill")(distill.distill_command)
app.command("align")(distill.align_command)
app.command("eval")(evaluate.eval_command)
app.command("quantize")(export.quantize_command)
app.command("export")(export.export_command)
app.command("serve")(serve.serve_command)
app.command("speculate")(serve.speculate_command)
app.command("mcp")(mcp.mcp_command)
app.command("studio")(studio.studio_command)
app.add_typer(models.app, name="models")
app.add_typer(jobs.app, name="jobs")
app.add_typer(agent.app, name="agent")
app.add_typer(pretrain.tokenizer_app, name="tokenizer")
app.add_typer(pretrain.templates_app, name="templates")
app.command("tune")(pretrain.tune_command)
app.command("attention")(attention.attention_command)
app.add_typer(guard.app, name="guard")


def main() -> None:
    app()
