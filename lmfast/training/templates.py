"""Model templates: named architectures to pretrain from scratch, built with transformers' own
classes (LlamaForCausalLM, T5ForConditionalGeneration), never a hand-written transformer.

Templates live in `templates.yaml` beside this module (a file users copy); a recipe names one
(`model.template: small`) or one in their own file (`my.yaml:wide`). The tokenizer decides the
vocabulary and special token ids; `model.template_overrides` changes any config field (width
and depth for `lmfast tune`).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from lmfast.errors import ConfigError
from lmfast.modelspec import ModelSpec

BUILTIN = Path(__file__).with_name("templates.yaml")
# T5 marks corrupted spans with sentinel tokens; LMFast appends them past the tokenizer's
# vocabulary (as T5's own tokenizer does with <extra_id_N>), so any tokenizer works.
T5_SENTINELS = 100


class Template(BaseModel):
    """One architecture and size."""

    name: str
    description: str = ""
    architecture: Literal["llama", "t5"]
    parameters: int | None = Field(None, description="Stated count at the config's vocab_size.")
    config: dict[str, Any] = Field(description="Fields of transformers' config class.")

    @property
    def seq2seq(self) -> bool:
        return self.architecture == "t5"

    def hf_config(self, tokenizer: Any = None, overrides: dict[str, Any] | None = None) -> Any:
        """The transformers config, with the tokenizer's vocabulary and special ids."""
        from transformers import LlamaConfig, T5Config

        values = {**self.config, **(overrides or {})}
        if tokenizer is not None:
            vocab = len(tokenizer)
            values["vocab_size"] = vocab + (T5_SENTINELS if self.seq2seq else 0)
            eos = tokenizer.eos_token_id
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
            values.update(eos_token_id=eos, pad_token_id=pad)
            if self.seq2seq:
                values["decoder_start_token_id"] = pad
            elif tokenizer.bos_token_id is not None:
                values["bos_token_id"] = tokenizer.bos_token_id
        try:
            cfg = (T5Config if self.seq2seq else LlamaConfig)(**values)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                [("model.template_overrides", f"template {self.name!r}: {e}")]
            ) from None
        if not self.seq2seq and cfg.hidden_size % cfg.num_attention_heads:
            raise ConfigError(
                [
                    (
                        "model.template_overrides",
                        f"hidden_size={cfg.hidden_size} is not a multiple of "
                        f"num_attention_heads={cfg.num_attention_heads}",
                    )
                ]
            )
        if not self.seq2seq and cfg.num_attention_heads % cfg.num_key_value_heads:
            raise ConfigError(
                [
                    (
                        "model.template_overrides",
                        f"num_attention_heads={cfg.num_attention_heads} is not a multiple of "
                        f"num_key_value_heads={cfg.num_key_value_heads} (grouped-query "
                        "attention shares each key/value head among a whole number of heads)",
                    )
                ]
            )
        return cfg

    def build(self, tokenizer: Any = None, overrides: dict[str, Any] | None = None) -> Any:
        """A randomly initialised model (seed it first with transformers.set_seed)."""
        from transformers import LlamaForCausalLM, T5ForConditionalGeneration

        cfg = self.hf_config(tokenizer, overrides)
        return (T5ForConditionalGeneration if self.seq2seq else LlamaForCausalLM)(cfg)

    def count_parameters(
        self, tokenizer: Any = None, overrides: dict[str, Any] | None = None
    ) -> int:
        """Exact parameter count, built on the meta device (no memory, milliseconds)."""
        import torch

        with torch.device("meta"):
            model = self.build(tokenizer, overrides)
        return sum(p.numel() for p in model.parameters())

    def spec(self, tokenizer: Any = None, overrides: dict[str, Any] | None = None) -> ModelSpec:
        """The shape the hardware plan estimates memory and time from."""
        cfg = self.hf_config(tokenizer, overrides)
        n = self.count_parameters(tokenizer, overrides)
        if self.seq2seq:  # encoder and decoder stacks as layers of width d_model
            return ModelSpec(
                architecture="t5",
                parameters=n,
                num_layers=cfg.num_layers + cfg.num_decoder_layers,
                hidden_size=cfg.d_model,
                intermediate_size=cfg.d_ff,
                num_heads=cfg.num_heads,
                num_kv_heads=cfg.num_heads,
                vocab_size=cfg.vocab_size,
                context_length=int(self.config.get("n_positions", 512)),
                tied_embeddings=cfg.tie_word_embeddings,
            )
        return ModelSpec.from_hf_config(cfg.to_dict(), parameters=n)


def _parse(data: Any, origin: str) -> dict[str, Template]:
    if not isinstance(data, dict) or not data:
        raise ConfigError([("model.template", f"{origin} holds no templates (a YAML mapping)")])
    found = {}
    for name, body in data.items():
        if not isinstance(body, dict):
            raise ConfigError([("model.template", f"{origin}: template {name!r} is not a mapping")])
        try:
            found[str(name)] = Template(name=str(name), **body)
        except Exception as e:
            raise ConfigError([("model.template", f"{origin}: template {name!r}: {e}")]) from None
    return found


@cache
def builtin_templates() -> dict[str, Template]:
    return _parse(yaml.safe_load(BUILTIN.read_text()), str(BUILTIN))


def template_file(reference: str) -> tuple[Path, str]:
    """(file, template name or '') of `file.yaml` or `file.yaml:name`."""
    found = re.fullmatch(r"(.+\.ya?ml):([^:/\\]+)", reference)
    return (Path(found[1]), found[2]) if found else (Path(reference), "")


def load_template(reference: str) -> Template:
    """`small`, `file.yaml` (one template) or `file.yaml:name`."""
    builtin = builtin_templates()
    if reference in builtin:
        return builtin[reference]
    path, name = template_file(reference)
    if not path.is_file():
        raise ConfigError(
            [
                (
                    "model.template",
                    f"{reference!r} is neither a built-in template ({', '.join(builtin)}) nor "
                    "a YAML file of templates (file.yaml or file.yaml:name)",
                )
            ]
        )
    found = _parse(yaml.safe_load(path.read_text()), str(path))
    if not name:
        if len(found) > 1:
            raise ConfigError(
                [
                    (
                        "model.template",
                        f"{path} holds {len(found)} templates ({', '.join(found)}); name one "
                        f"as {path}:NAME",
                    )
                ]
            )
        return next(iter(found.values()))
    if name not in found:
        raise ConfigError(
            [("model.template", f"{path} has no template {name!r}; it has {', '.join(found)}")]
        )
    return found[name]


class TemplateRow(BaseModel):
    """A template as `lmfast templates list` shows it, with its hardware plan."""

    name: str
    architecture: str
    description: str
    parameters: int
    stated_parameters: int | None
    layers: int
    width: int
    vocab_size: int
    hardware: str
    peak_memory_gb: float = Field(description="Planned peak memory to pretrain it.")
    fits: bool
    tokens_per_second: float = Field(description="Planned training throughput.")
    micro_batch_size: int


def template_table(
    tokenizer: str | None = None, seq_len: int = 512, profile: str | None = None
) -> list[TemplateRow]:
    """Each built-in template's size and plan (memory, throughput) for a machine."""
    from lmfast.config import LMFastConfig
    from lmfast.data.tokenize import load_tokenizer
    from lmfast.hardware import PROFILES, detect_hardware
    from lmfast.plan import plan_training

    if profile is not None and profile not in PROFILES:
        raise ConfigError([("--profile", f"{profile!r} is not one of {', '.join(PROFILES)}")])
    hardware = PROFILES[profile] if profile else detect_hardware()
    tok = load_tokenizer(tokenizer) if tokenizer else None
    rows = []
    for name, template in builtin_templates().items():
        spec = template.spec(tok)
        config = LMFastConfig.model_validate(
            {
                "model": {"template": name, "tokenizer": tokenizer},
                "training": {"method": "pretrain", "max_seq_length": seq_len},
            }
        )
        plan = plan_training(config, hardware, spec)
        rows.append(
            TemplateRow(
                name=name,
                architecture=template.architecture,
                description=template.description,
                parameters=spec.parameters,
                stated_parameters=template.parameters,
                layers=spec.num_layers,
                width=spec.hidden_size,
                vocab_size=spec.vocab_size,
                hardware=plan.hardware,
                peak_memory_gb=plan.estimated_peak_memory_gb,
                fits=plan.fits,
                tokens_per_second=plan.estimated_tokens_per_second,
                micro_batch_size=plan.micro_batch_size,
            )
        )
    return rows
