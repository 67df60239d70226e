"""Configuration: one pydantic model per concern, a description on every field.

`load_config` reads YAML, applies `dotted.path=value` overrides and validates everything
before anything heavy is imported, so a typo fails in milliseconds with the field path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from lmfast.errors import ConfigError

DEFAULT_MODEL = "smollm2-135m-instruct"


class _Section(BaseModel):
    # Unknown keys are errors: a misspelt option must never be silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Which model to load and how to hold it in memory."""

    reference: str = Field(
        DEFAULT_MODEL,
        min_length=1,
        description="Model to use: an alias, a local Hugging Face folder, a .gguf file, "
        "an LMFast artifact id or a Hugging Face Hub id.",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description="Compute dtype. 'auto' lets the hardware plan choose "
        "(bfloat16 on Ampere or newer, float16 on older GPUs such as the T4; on a CPU bfloat16 "
        "autocast where it computes bf16 natively, AVX512-BF16 or AMX, else float32).",
    )
    quantization: Literal["auto", "none", "nf4", "int8"] = Field(
        "auto",
        description="Weight quantization while training. 'nf4' is 4-bit NormalFloat with double "
        "quantization (QLoRA); 'auto' picks it on GPUs with less than 24 GB and otherwise none.",
    )
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto",
        description="Attention kernel. 'auto' uses PyTorch SDPA; flash_attention_2 needs "
        "compute capability 8.0 or newer and the flash-attn package.",
    )
    gradient_checkpointing: bool | None = Field(
        None,
        description="Recompute activations in the backward pass to save memory. "
        "None lets the hardware plan decide (on for GPUs under 24 GB).",
    )
    trust_remote_code: bool = Field(
        False, description="Allow model code shipped with a Hub repository to run."
    )
    template: str | None = Field(
        None,
        min_length=1,
        description="training.method=pretrain: the architecture to initialise randomly, a "
        "built-in template (tiny, small, base, t5-small) or file.yaml[:name] "
        "(`lmfast templates list`).",
    )
    template_overrides: dict[str, int | float | str | bool] = Field(
        default_factory=dict,
        description="Fields of the template's transformers config to change, e.g. "
        "{num_hidden_layers: 8, hidden_size: 512}.",
    )
    tokenizer: str | None = Field(
        None,
        min_length=1,
        description="training.method=pretrain: the tokenizer of the new model, a tokenizer "
        "artifact (`lmfast tokenizer train`) or any model reference (default: the embedded "
        "model's tokenizer). Fine-tuning always uses the model's own.",
    )


class LoRAConfig(_Section):
    """Low-rank adapters (LoRA); with 4-bit base weights this is QLoRA."""

    enabled: bool = Field(True, description="Train LoRA adapters instead of all weights.")
    rank: int = Field(16, ge=1, le=1024, description="Adapter rank r.")
    alpha: int = Field(32, ge=1, description="Scaling numerator: updates are scaled by alpha/r.")
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout on the adapter input. Off by default: peft then keeps a dropped-out "
        "copy of every adapted layer's input (memory and ~18% speed on a 2-core CPU).",
    )
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear",
        description="Modules that get adapters: 'all-linear' (every linear projection of "
        "attention and MLP, as in the QLoRA paper) or explicit names such as q_proj.",
    )
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha/sqrt(r).")


# Rewards LMFast ships (lmfast.training.rewards); any other entry is the user's own function.
BUILTIN_REWARDS = ("exact_answer", "format", "json_valid", "tool_call", "length")
_USER_REWARD = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$|^.+\.py:[A-Za-z_]\w*$"


class GRPOSettings(_Section):
    """training.method=grpo: group-relative policy optimisation with reward functions."""

    rewards: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Reward functions, summed (weighted by reward_weights): built-in "
        f"{', '.join(BUILTIN_REWARDS)}; or your own as module:function or file.py:function, "
        "called as f(completions: list[str], prompts: list[str], **columns) -> list[float | "
        "None] (columns: the prompt rows' other fields, one value per completion).",
    )
    reward_weights: list[float] | None = Field(
        None, description="One weight per reward (None: all 1)."
    )
    num_generations: int = Field(
        4,
        ge=2,
        le=64,
        description="Completions sampled per prompt; each is scored against its group's mean "
        "(4 on a CPU: generation is most of a step's time).",
    )
    max_completion_length: int | None = Field(
        None,
        ge=4,
        le=32768,
        description="Longest completion in tokens. None: the p90 length of the model's own "
        "greedy answers to the prompts, as a power of two, 32 to 128 on a CPU (512 on a GPU).",
    )
    temperature: float = Field(
        1.0, gt=0.0, le=2.0, description="Sampling temperature of the completions."
    )
    beta: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="KL penalty against the starting model (0: no reference model kept, as "
        "in TRL and DAPO; LoRA's reference is the adapter switched off).",
    )
    pattern: str | None = Field(
        None,
        max_length=2000,
        description="The 'format' reward: a regular expression a completion must match in "
        "full (a row's own pattern field wins).",
    )
    target_length: int | None = Field(
        None,
        ge=1,
        le=32768,
        description="The 'length' reward: completions up to this many tokens score 1, longer "
        "ones less (target / length).",
    )

    @model_validator(mode="after")
    def _rewards_known(self) -> GRPOSettings:
        for name in self.rewards:
            if name not in BUILTIN_REWARDS and not re.match(_USER_REWARD, name):
                raise ValueError(
                    f"rewards: {name!r} is neither a built-in reward "
                    f"({', '.join(BUILTIN_REWARDS)}) nor module:function / file.py:function"
                )
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(
                f"reward_weights has {len(self.reward_weights)} values for "
                f"{len(self.rewards)} rewards; give one weight per reward"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern {self.pattern!r} is not a regex: {e}") from e
        if "length" in self.rewards and self.target_length is None:
            raise ValueError("rewards: 'length' needs target_length (tokens)")
        return self


class TrainingConfig(_Section):
    """Optimisation settings shared by SFT, continued pretraining, distillation, ORPO and
    GRPO."""

    method: Literal["sft", "cpt", "pretrain", "grpo"] = Field(
        "sft",
        description="'sft': supervised fine-tuning, loss on the assistant's answers of chat "
        "data (every token of raw text); 'cpt': continued pretraining, loss on every token; "
        "'pretrain': a randomly initialised model.template trained on every token; 'grpo': "
        "reinforcement learning on prompts scored by training.grpo.rewards.",
    )
    lora: LoRAConfig = Field(default_factory=LoRAConfig, description="Adapter settings.")
    grpo: GRPOSettings = Field(
        default_factory=GRPOSettings, description="method=grpo: rewards and sampling."
    )
    learning_rate: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="Peak learning rate. None: derived from the method, adapter and model size "
        "(LoRA SFT on a 135M model: 1e-3).",
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warm-up."
    )
    warmup_ratio: float | None = Field(
        None, ge=0.0, lt=1.0, description="Fraction of steps spent warming up (None: 0.05)."
    )
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay.")
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps to run. Set this or epochs, not both."
    )
    epochs: float | None = Field(
        None,
        gt=0.0,
        description="Passes over the data. None: derived from the data, so that a small set "
        "still gets enough optimizer steps (1 to 3).",
    )
    micro_batch_size: int | None = Field(
        None, ge=1, le=4096, description="Sequences per forward pass; None lets the plan pick."
    )
    gradient_accumulation_steps: int | None = Field(
        None, ge=1, le=4096, description="Micro-batches per optimizer step; None derives it."
    )
    effective_batch_size: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="Sequences per optimizer step (micro-batch x accumulation). None: "
        "micro-batch x accumulation when both are given, else derived from the data "
        "(about 100 steps a run, 1,024 to 65,536 tokens a step).",
    )
    max_seq_length: int | None = Field(
        None,
        ge=16,
        le=131072,
        description="Longest sequence in tokens; longer ones are cut. None: derived from the "
        "data (covers 99% of its documents, at most 1,024 on a CPU and 2,048 on a GPU).",
    )
    packing: bool = Field(
        True, description="Pack several short examples into each sequence (fewer pad tokens)."
    )
    optimizer: Literal["auto", "adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "sgd"] = (
        Field("auto", description="Optimizer; 'auto' picks paged 8-bit AdamW for QLoRA.")
    )
    max_grad_norm: float = Field(1.0, gt=0.0, description="Gradient clipping norm.")
    seed: int = Field(42, ge=0, description="Random seed for data order and initialisation.")
    logging_steps: int = Field(10, ge=1, description="Log loss every this many steps.")
    save_steps: int | None = Field(
        None, ge=1, description="Checkpoint every this many steps (None: only at the end)."
    )
    save_total_limit: int = Field(
        2, ge=1, le=1000, description="Checkpoints kept: the newest, plus the best by eval loss."
    )
    eval_steps: int | None = Field(
        None,
        ge=1,
        description="Evaluate on the held-out split every this many steps (None: at each "
        "checkpoint, or only at the end). Needs data.validation_split > 0.",
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="Stop after this many evaluations without a better eval loss (None: off).",
    )
    neftune_noise_alpha: float | None = Field(
        None, gt=0, le=100, description="NEFTune: noise on embeddings while training (e.g. 5)."
    )
    sample_prompts: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Prompts answered greedily at each evaluation, so you see the model learn.",
    )
    tracker: Literal["auto", "mlflow", "tensorboard", "wandb", "none"] = Field(
        "auto",
        description="Experiment tracker; 'auto' uses MLflow with a local store under "
        "LMFAST_HOME/mlflow.db (SQLite, no server); 'none' turns tracking off.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError("set either max_steps or epochs, not both")
        micro, accum, eff = (
            self.micro_batch_size,
            self.gradient_accumulation_steps,
            self.effective_batch_size,
        )
        if micro and accum and eff and micro * accum != eff:
            raise ValueError(
                f"effective_batch_size={eff} but micro_batch_size x gradient_accumulation_steps "
                f"= {micro} x {accum} = {micro * accum}; drop one of the three or make them agree"
            )
        if micro and eff and eff % micro:
            raise ValueError(
                f"effective_batch_size={eff} is not a multiple of micro_batch_size={micro}"
            )
        if self.method != "grpo" and self.grpo.rewards:
            raise ValueError(
                f"training.grpo.rewards only apply to method 'grpo' (method is {self.method!r})"
            )
        if self.method == "grpo" and not self.grpo.rewards:
            raise ValueError(
                "method 'grpo' needs training.grpo.rewards: built-in "
                f"{', '.join(BUILTIN_REWARDS)}, or module:function / file.py:function"
            )
        if self.early_stopping_patience and not (self.eval_steps or self.save_steps):
            raise ValueError(
                "early_stopping_patience needs periodic evaluation: set eval_steps or save_steps"
            )
        return self

    @property
    def target_effective_batch_size(self) -> int:
        """The effective batch asked for, or derived (16 before the data is known)."""
        return self.explicit_batch_size or 16

    @property
    def explicit_batch_size(self) -> int | None:
        """The effective batch the recipe fixes, if it does."""
        if self.effective_batch_size:
            return self.effective_batch_size
        if self.micro_batch_size and self.gradient_accumulation_steps:
            return self.micro_batch_size * self.gradient_accumulation_steps
        return None


class DataSource(_Section):
    """One streamed source and its share of the mix."""

    path: str = Field(min_length=1, description="A file, folder or glob (prep's readers).")
    weight: float = Field(1.0, gt=0, description="Relative sampling weight.")


class DataConfig(_Section):
    """Where training data comes from and how to read it."""

    path: str | None = Field(
        None, description="Dataset: a file, folder, glob or LMFast dataset artifact id."
    )
    format: Literal["auto", "text", "alpaca", "sharegpt", "messages", "prompt_response"] = Field(
        "auto", description="Record layout; 'auto' detects it from the fields present."
    )
    text_field: str | None = Field(
        None, description="Field holding raw text (detected when None: text, content, ...)."
    )
    filters: Literal["auto", "web", "document", "minimal", "off"] = Field(
        "auto",
        description="Quality filters applied as the data is prepared for training (lmfast prep's "
        "presets). 'auto': 'document' (length, repetition, bad words) when pretraining from "
        "scratch on raw text, else 'minimal' (length and bad words): a corpus or a chat set "
        "given to fine-tuning is what the user chose to learn.",
    )
    validation_split: float = Field(
        0.0, ge=0.0, le=0.5, description="Fraction held out for evaluation during training."
    )
    max_samples: int | None = Field(None, ge=1, description="Use at most this many records.")
    streaming: bool = Field(
        False,
        description="Tokenize and pack while training reads (datasets larger than memory; "
        "needs training.max_steps) instead of preparing the dataset first.",
    )
    sources: list[DataSource] = Field(
        default_factory=list,
        description="Streaming: several sources interleaved by weight (instead of data.path).",
    )
    shuffle_buffer: int = Field(
        10_000, ge=1, description="Streaming: records held for shuffling (memory vs. mixing)."
    )


class EvalConfig(_Section):
    """What to measure while and after training."""

    perplexity: bool = Field(True, description="Report perplexity on the held-out text.")
    tasks: list[str] = Field(
        default_factory=list,
        description="LMFast tasks (sample names or task files) scored at every evaluation "
        "during training (training.eval_steps) and at the end.",
    )
    metric: str | None = Field(
        None,
        pattern=r"^[^.]+\.[A-Za-z0-9_]+$",
        description="TASK.METRIC that picks the best checkpoint and drives early stopping, "
        "e.g. capitals.accuracy (default: the held-out loss).",
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Evaluation batch size.")
    limit: int | None = Field(None, ge=1, description="At most this many examples per task.")

    @model_validator(mode="after")
    def _metric_names_a_task(self) -> EvalConfig:
        if self.metric is not None:
            task = self.metric.split(".")[0]
            names = [Path(t).stem for t in self.tasks]
            if task not in names:
                raise ValueError(
                    f"metric={self.metric!r} names task {task!r}, which is not in eval.tasks "
                    f"({', '.join(names) or 'empty'})"
                )
        return self


ADAPTER_NAME = re.compile(r"[A-Za-z0-9][\w.:-]{0,63}")


class ServeConfig(_Section):
    """The OpenAI-compatible HTTP server."""

    host: str = Field("127.0.0.1", min_length=1, description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    api_key: SecretStr | None = Field(
        None,
        description="Bearer token clients must send. Required when host is not loopback.",
    )
    backend: Literal["auto", "llamacpp", "transformers", "vllm"] = Field(
        "auto", description="Inference engine; 'auto' uses llama.cpp for GGUF files."
    )
    context_length: int | None = Field(
        None, ge=128, le=1_048_576, description="Context window (None: the model's own)."
    )
    max_concurrency: int = Field(
        4, ge=1, le=1024, description="Requests generated at the same time."
    )
    queue_size: int = Field(
        64, ge=0, le=100_000, description="Requests allowed to wait; beyond this clients get 429."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty means CORS is off."
    )
    default_max_tokens: int = Field(
        1024,
        ge=1,
        le=131072,
        description="Tokens generated when a chat request gives no max_tokens (OpenAI clients "
        "often omit it; without a cap a small model may run to the end of its context).",
    )
    guard: str | None = Field(
        None,
        description="Guard policy for every request: strict, balanced, permissive, a YAML "
        "file, or off (default: env LMFAST_GUARD, else off).",
    )
    adapters: dict[str, str] = Field(
        default_factory=dict,
        description="LoRA adapters served over the base model, name -> adapter (artifact id, "
        "PEFT folder or GGUF LoRA file); a request's `model` picks one by name (llama.cpp).",
    )

    adapter_updates: bool = Field(
        False,
        description="Allow loading and unloading LoRA adapters while serving (POST "
        "/v1/load_lora_adapter and /v1/unload_lora_adapter, vLLM's routes): the server then "
        "reads adapter files a client names, so it is off unless asked for.",
    )
    kv_unified: bool = Field(
        True,
        description="The slots share one KV cache pool (llama-server's unified KV): each "
        "request may use a whole context window, all together at most kv_cache_tokens. Off: a "
        "private window per slot (parallel x context_length tokens of KV).",
    )
    kv_cache_tokens: int | None = Field(
        None, ge=128, le=4_194_304,
        description="Tokens the shared KV pool holds (default: one context window).",
    )  # fmt: skip
    cache_ram_mb: int = Field(
        1024, ge=0, le=1_048_576,
        description="RAM for the KV states of conversations that lost their slot, loaded back "
        "when they return instead of recomputed (0: off).",
    )  # fmt: skip
    draft: str | None = Field(
        None,
        description="Draft model for speculative decoding: a GGUF with the served model's "
        "vocabulary (a model id, path or artifact) that guesses tokens the model then checks "
        "in one batch; the output is unchanged (llama.cpp).",
    )
    draft_max: int = Field(
        8, ge=1, le=64, description="Most tokens the draft guesses per step."
    )
    draft_min: int = Field(
        0,
        ge=0,
        le=64,
        description="Fewest tokens the draft guesses per step; 0: as many as pay off on this "
        "machine (timed at start, weighed with the draft's acceptance so far), none where "
        "checking several tokens costs about as much as decoding them one by one.",
    )

    @field_validator("adapters")
    @classmethod
    def _adapter_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not ADAPTER_NAME.fullmatch(name):
                raise ValueError(
                    f"adapter name {name!r} must be letters, digits and . _ - : (at most 64, "
                    "starting with a letter or digit)"
                )
        return v

    @model_validator(mode="after")
    def _key_off_loopback(self) -> ServeConfig:
        if self.api_key is None and not is_loopback(self.host):
            raise ValueError(
                f"host={self.host!r} is reachable from other machines, so api_key is required "
                "(or bind to 127.0.0.1)"
            )
        return self


class LMFastConfig(_Section):
    """Everything one LMFast run needs; each section documents its own fields."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Model settings.")
    training: TrainingConfig = Field(
        default_factory=TrainingConfig, description="Training settings."
    )
    data: DataConfig = Field(default_factory=DataConfig, description="Data settings.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation settings.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="Serving settings.")

    @model_validator(mode="after")
    def _evaluation_needs_a_split(self) -> LMFastConfig:
        t = self.training
        if (t.eval_steps or t.early_stopping_patience) and self.data.validation_split == 0:
            raise ValueError(
                "training.eval_steps / early_stopping_patience need held-out data: set "
                "data.validation_split (for example 0.05)"
            )
        return self

    @model_validator(mode="after")
    def _pretraining_needs_a_template(self) -> LMFastConfig:
        m, t = self.model, self.training
        if t.method == "pretrain":
            if not m.template:
                raise ValueError(
                    "training.method='pretrain' needs model.template (tiny, small, base, "
                    "t5-small or file.yaml[:name]): the architecture to initialise"
                )
            # Whether the template exists is checked by FineTuneRequest: the catalogue is
            # training's, and the config imports no capability.
            if t.lora.enabled and "enabled" in t.lora.model_fields_set:
                raise ValueError(
                    "training.lora.enabled=true with method 'pretrain': adapters need trained "
                    "base weights; a model from scratch trains all of them"
                )
            if t.lora.enabled:  # the default: from scratch means every weight
                t.lora = LoRAConfig(enabled=False)
        elif m.template or m.template_overrides or m.tokenizer:
            raise ValueError(
                "model.template / template_overrides / tokenizer only apply to "
                "training.method='pretrain'; to fine-tune, name the model in model.reference"
            )
        return self

    @property
    def tokenizer_reference(self) -> str:
        """The tokenizer data is prepared with: the model's own, or for a model from scratch
        model.tokenizer (default: the embedded model's)."""
        if self.training.method == "pretrain":
            return self.model.tokenizer or DEFAULT_MODEL
        return self.model.reference

    @property
    def trains_every_token(self) -> bool:
        """Loss on every token (continued pretraining, pretraining) rather than answers."""
        return self.training.method in ("cpt", "pretrain")

    @model_validator(mode="after")
    def _quantization_needs_adapters(self) -> LMFastConfig:
        if self.model.quantization in ("nf4", "int8") and not self.training.lora.enabled:
            raise ValueError(
                f"model.quantization={self.model.quantization!r} needs training.lora.enabled=true:"
                " quantized weights cannot be trained directly"
            )
        return self


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validation_problems(err: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        path = f"{prefix}{loc}" if loc != "(root)" else (prefix.rstrip(".") or loc)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] not in ("missing", "extra_forbidden") and "input" in e and e["loc"]:
            got = repr(e["input"])
            # A 2 MB text must not come back whole in the error: the start says which it was.
            got = got if len(got) <= 200 else f"{got[:160]}... ({len(got):,} characters)"
            msg += f" (got {got})"
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append((path, msg))
    return problems


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ['training.lora.rank=8', ...] (the CLI's `key=value` strings) into a nested dict;
    values are parsed as YAML."""
    values: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([(item, "override must look like section.field=value")])
        values[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return nest_values(values, keep_none=True)


def nest_values(values: Mapping[str, Any], keep_none: bool = False) -> dict[str, Any]:
    """Turn {'training.lora.rank': 8, ...} into a nested dict. A None value means "not set"
    (the recipe's or the model's default stands) unless `keep_none`."""
    tree: dict[str, Any] = {}
    for key, value in values.items():
        if value is None and not keep_none:
            continue
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError([(key, "conflicts with another override")])
        node[parts[-1]] = value
    return tree


def merge_dicts(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = v
    return out


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> LMFastConfig:
    """Load a YAML recipe (optional), apply `values` (dotted keys -> Python values, None =
    unset: what faces pass), then `overrides` (`key=value` strings, what people type), and
    validate. Raises ConfigError."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError([("config", f"file not found: {p}")])
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError([("config", f"{p} is not valid YAML: {e}")]) from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([("config", f"{p} must hold a mapping, got {type(loaded).__name__}")])
        data = loaded or {}
    data = merge_dicts(data, nest_values(values or {}))
    data = merge_dicts(data, parse_overrides(overrides or []))
    try:
        return LMFastConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_problems(e)) from None
