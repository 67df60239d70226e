"""MCP tools for pretraining from scratch and recipe search: train_tokenizer and tune. Thin
adapters: confine paths, build the request, start the job."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from lmfast.mcp_server import jobs
from lmfast.mcp_server.jobs import JobOutcome
from lmfast.mcp_server.paths import client_roots, confine_input, confine_model_reference
from lmfast.mcp_server.recipes import recipe, settable
from lmfast.mcp_server.tool_errors import tool_errors
from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from lmfast.config import DEFAULT_MODEL

Name = Annotated[str | None, Field(max_length=200, description="Artifact name.")]
Wait = Annotated[bool, Field(description="Follow the job to the end.")]


def add_pretrain_tools(mcp: MCPServer) -> None:
    @mcp.tool(
        description="Train a tokenizer on local text for a model pretrained from scratch: "
        "byte-level BPE (lossless on any text) or Unigram (SentencePiece-style), with special "
        "tokens and a ChatML chat template. A job; the result names the tokenizer artifact "
        "(give it to fine_tune as tokenizer=, with method='pretrain', or to prep_dataset) and "
        "its held-out bytes per token beside the embedded model's tokenizer."
    )
    @tool_errors
    async def train_tokenizer(
        ctx: Context,
        corpus: Annotated[
            list[str],
            Field(min_length=1, description="Files, folders, globs or dataset artifact ids."),
        ],
        vocab_size: Annotated[
            int, Field(ge=1, le=1_000_000, description="Tokens, special tokens included.")
        ] = 8192,
        model: Annotated[Literal["bpe", "unigram"], Field(description="Algorithm.")] = "bpe",
        text_field: Annotated[str | None, Field(description="Field holding the text.")] = None,
        min_frequency: Annotated[
            int, Field(ge=1, description="BPE: merges seen fewer times are skipped.")
        ] = 2,
        special_tokens: Annotated[
            list[str] | None, Field(max_length=1000, description="More special tokens.")
        ] = None,
        held_out: Annotated[
            float, Field(ge=0.0, lt=0.5, description="Documents kept out to measure compression.")
        ] = 0.05,
        compare_with: Annotated[
            str | None,
            Field(description="Model whose tokenizer the compression is compared with."),
        ] = DEFAULT_MODEL,
        name: Name = None,
        wait: Wait = False,
    ) -> JobOutcome:
        from lmfast.artifacts import ArtifactStore
        from lmfast.training.tokenizer import TokenizerTrainRequest

        roots = await client_roots(ctx)
        store = ArtifactStore()
        request = TokenizerTrainRequest(
            corpus=[
                c if store.exists(c) else confine_input(c, f"corpus.{i}", roots)
                for i, c in enumerate(corpus)
            ],
            vocab_size=vocab_size,
            model=model,
            text_field=text_field,
            min_frequency=min_frequency,
            special_tokens=special_tokens or [],
            held_out=held_out,
            compare_with=(
                confine_model_reference(compare_with, "compare_with", roots)
                if compare_with
                else None
            ),
            name=name,
        )
        return await jobs.start_job("train_tokenizer", request, wait, ctx)

    @mcp.tool(
        description="Search training settings with Optuna: each trial trains the recipe "
        "with sampled values of `space` (e.g. {'training.learning_rate': {'low': 1e-5, "
        "'high': 1e-3, 'log': true}, 'training.lora.rank': {'choices': [4, 8, 16]}}) and is "
        "scored on held-out loss (needs validation_split > 0) or other objectives. CMA-ES for "
        "one objective (poor trials pruned), NSGA-II for several (Pareto front). A job; the "
        "result gives the best recipe (YAML), every trial and a plot."
    )
    @tool_errors
    async def tune(
        ctx: Context,
        data: Annotated[str, Field(description="Dataset artifact id, or a JSONL file/folder.")],
        space: Annotated[
            dict[str, dict[str, Any]], Field(description="Recipe field -> range or choices.")
        ],
        model: Annotated[str, Field(description="Base model to train.")] = DEFAULT_MODEL,
        trials: Annotated[int, Field(ge=1, le=10000, description="Trials in total.")] = 10,
        objectives: Annotated[
            list[str] | None, Field(description="eval_loss (default), seconds, train_loss...")
        ] = None,
        sampler: Annotated[
            Literal["auto", "cmaes", "nsga2", "tpe", "random"], Field(description="Sampler.")
        ] = "auto",
        validation_split: Annotated[
            float, Field(gt=0, le=0.5, description="Held-out fraction.")
        ] = 0.1,
        overrides: Annotated[
            dict[str, Any] | None,
            Field(description="Other recipe settings, e.g. {'training.max_steps': 50}."),
        ] = None,
        prune: Annotated[
            bool, Field(description="Stop poor trials early (single objective).")
        ] = True,
        seed: Annotated[int, Field(ge=0, description="Sampler seed.")] = 0,
        study: Annotated[
            str | None,
            Field(
                pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$",
                description="Study name; the same name continues the study.",
            ),
        ] = None,
        name: Name = None,
        wait: Wait = False,
    ) -> JobOutcome:
        from lmfast.artifacts import ArtifactStore
        from lmfast.training.tune import TuneRequest

        roots = await client_roots(ctx)
        if not ArtifactStore().exists(data):
            data = confine_input(data, "data", roots)
        blocked = [k for k in space if not settable(k)]
        if blocked:
            raise ValueError(f"space: {blocked} cannot be searched (paths or unknown sections)")
        values = {
            "model.reference": confine_model_reference(model, client_roots=roots),
            "data.path": data,
            "data.validation_split": validation_split,
        }
        request = TuneRequest(
            config=recipe(values, overrides),
            space=space,  # type: ignore[arg-type]
            trials=trials,
            objectives=objectives or ["eval_loss"],
            sampler=sampler,
            prune=prune,
            seed=seed,
            study=study,
            name=name,
        )
        return await jobs.start_job("tune", request, wait, ctx)
