"""Pretraining from scratch (training.method: pretrain): the same fine_tune run (data path,
trainer, checkpoints, resume, evaluation, tracking, artifacts) with a randomly initialised
model from a template in place of a loaded base.

Decoder-only templates train on next-token prediction over prep_dataset's packed rows; the
encoder-decoder (T5) template trains on T5's span corruption built from the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lmfast.config import LMFastConfig
from lmfast.errors import PlanError
from lmfast.modelspec import ModelSpec
from lmfast.plan import TrainingPlan
from lmfast.training.model import TrainableModel
from lmfast.training.templates import T5_SENTINELS, Template, load_template

IGNORE = -100


@dataclass
class FromScratch:
    """The template, the tokenizer it takes its vocabulary from, and its shape."""

    template: Template
    tokenizer: Any
    spec: ModelSpec
    overrides: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.template.name} template"

    def check_plan(self, plan: TrainingPlan) -> None:
        """A model that cannot train here fails before any memory is allocated."""
        if not plan.fits:
            raise PlanError(
                f"model.template={self.template.name!r} has {self.spec.parameters:,} parameters "
                f"and needs about {plan.estimated_peak_memory_gb} GB to train at micro-batch "
                f"{plan.micro_batch_size} x {plan.max_seq_length} tokens; this machine's budget "
                f"is {plan.memory_budget_gb} GB. Use a smaller template or template_overrides "
                "(hidden_size, num_hidden_layers), or a lower training.max_seq_length."
            )

    def build(self, config: LMFastConfig, plan: TrainingPlan) -> TrainableModel:
        """Randomly initialised (the recipe's seed is set by the caller), all weights trained;
        float32 master weights, 16-bit compute through autocast."""
        model = self.template.build(self.tokenizer, self.overrides)
        model.config.use_cache = False
        if plan.gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model.to(plan.device)
        model.train()
        n = sum(p.numel() for p in model.parameters())
        return TrainableModel(
            model,
            self.tokenizer,
            "transformers",
            f"random initialisation from the {self.template.name} template "
            f"({self.template.architecture})",
            n,
            n,
        )


def from_scratch(config: LMFastConfig) -> FromScratch:
    from lmfast.data.tokenize import load_tokenizer

    assert config.model.template is not None
    template = load_template(config.model.template)
    tokenizer = load_tokenizer(config.tokenizer_reference)
    if tokenizer.eos_token_id is None:
        raise PlanError(
            f"model.tokenizer={config.tokenizer_reference!r} has no end-of-text token; packing "
            "separates documents with it (train one with `lmfast tokenizer train`)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    overrides = dict(config.model.template_overrides)
    spec = template.spec(tokenizer, overrides)
    return FromScratch(template, tokenizer, spec, overrides)


def noise_spans(length: int, rng: np.random.Generator, density: float, mean_span: float) -> Any:
    """T5's random span mask: a boolean mask of `length` with about `density` of it noise,
    in spans of mean length `mean_span`, starting with a non-noise span."""
    noise = min(max(round(length * density), 1), length - 1)
    spans = min(max(round(noise / mean_span), 1), T5_SENTINELS, noise, length - noise)

    def partition(total: int) -> np.ndarray:  # `spans` positive parts summing to total
        cuts = np.sort(rng.choice(np.arange(1, total), spans - 1, replace=False))
        return np.diff(np.concatenate([[0], cuts, [total]]))

    noise_len, keep_len = partition(noise), partition(length - noise)
    mask = np.zeros(length, dtype=bool)
    at = 0
    for keep, drop in zip(keep_len, noise_len, strict=True):
        at += keep
        mask[at : at + drop] = True
        at += drop
    return mask


class SpanCorruption:
    """Collator: packed token rows -> (encoder input with a sentinel per corrupted span,
    decoder labels: each sentinel followed by the tokens it hid). Deterministic per row and
    seed, so a resumed run and the held-out loss see the same corruption."""

    def __init__(
        self, vocab: int, eos: int, pad: int, seed: int, density: float = 0.15, span: float = 3.0
    ) -> None:
        self.sentinel0, self.eos, self.pad = vocab, eos, pad
        self.seed, self.density, self.span = seed, density, span

    def corrupt(self, ids: np.ndarray, row: int) -> tuple[list[int], list[int]]:
        rng = np.random.default_rng([self.seed, row])
        mask = noise_spans(len(ids), rng, self.density, self.span)
        source: list[int] = []
        target: list[int] = []
        k = -1
        for i, token in enumerate(ids.tolist()):
            if mask[i]:
                if i == 0 or not mask[i - 1]:
                    k += 1
                    source.append(self.sentinel0 + k)
                    target.append(self.sentinel0 + k)
                target.append(token)
            else:
                source.append(token)
        return [*source, self.eos], [*target, self.eos]

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        pairs = [
            self.corrupt(
                np.asarray(it["input_ids"][: max(2, int(it["length"]))]), int(it.get("row", i))
            )
            for i, it in enumerate(items)
        ]
        width = max(len(s) for s, _ in pairs)
        out = max(len(t) for _, t in pairs)
        input_ids = torch.full((len(pairs), width), self.pad, dtype=torch.long)
        attention = torch.zeros((len(pairs), width), dtype=torch.long)
        labels = torch.full((len(pairs), out), IGNORE, dtype=torch.long)
        for i, (s, t) in enumerate(pairs):
            input_ids[i, : len(s)] = torch.tensor(s)
            attention[i, : len(s)] = 1
            labels[i, : len(t)] = torch.tensor(t)
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def seq2seq_feed(feed: Any, scratch: FromScratch, seed: int) -> Any:
    """The same prepared rows, batched as span corruption for an encoder-decoder."""
    from dataclasses import replace

    from lmfast.data.tokenize import pad_id

    tok = scratch.tokenizer
    return replace(
        feed, collator=SpanCorruption(len(tok), int(tok.eos_token_id), pad_id(tok), seed)
    )


def recipe_spec(config: LMFastConfig) -> ModelSpec:
    """The shape a recipe trains: its template's (pretraining) or its model's."""
    if config.training.method == "pretrain":
        return from_scratch(config).spec
    from lmfast.registry import model_spec

    return model_spec(config.model.reference)
