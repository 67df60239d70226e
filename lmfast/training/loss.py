"""Causal-LM loss computed only where there are labels.

The vocabulary projection of a small model is a large share of its compute and memory
(SmolLM2-135M: 28M of 135M parameters; the logits of 8 x 256 tokens are 400 MB in float32,
plus their gradient). SFT masks the prompt, so most positions need no logits at all: run the
decoder, keep the hidden states whose next token is a label, and project only those.
"""

from __future__ import annotations

from typing import Any

IGNORE = -100


def _parts(model: Any) -> tuple[Any, Any, Any] | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    # Logit soft-capping or scaling would need the model's own head code; encoder-decoders
    # compute their loss in their own forward.
    if (
        config is None
        or getattr(config, "is_encoder_decoder", False)
        or any(
            getattr(config, k, None) not in (None, 1.0)
            for k in ("final_logit_softcapping", "logit_scale")
        )
    ):
        return None
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings()
    if decoder is None or head is None:
        return None
    return base, decoder, head


def label_mask(labels: Any, positions: Any = None) -> Any:
    """Which next-token positions (of `labels[:, 1:]`) carry a loss: labelled ones, minus each
    packed document's first token (it is not predicted from the document before it)."""
    keep = labels[:, 1:] != IGNORE
    if positions is not None:
        keep &= positions[:, 1:] != 0
    return keep


def labelled_hidden(model: Any, inputs: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    """(final hidden states at the labelled positions, their target ids, the LM head), in
    row-major order; None when the architecture needs its own forward."""
    parts = _parts(model)
    if parts is None:
        return None
    _, decoder, head = parts
    hidden = decoder(
        input_ids=inputs["input_ids"], position_ids=inputs.get("position_ids"), use_cache=False
    ).last_hidden_state
    keep = label_mask(inputs["labels"], inputs.get("position_ids"))
    return hidden[:, :-1][keep], inputs["labels"][:, 1:][keep], head


def normalise(loss_sum: Any, count: Any, num_items: Any = None) -> Any:
    """A summed loss as the mean over this batch's labels, or over `num_items` when the
    Trainer counts labels across gradient accumulation."""
    import torch

    if num_items is None:
        return loss_sum / count.clamp(min=1) if torch.is_tensor(count) else loss_sum / max(1, count)
    if isinstance(num_items, torch.Tensor):
        num_items = num_items.to(loss_sum.device)
    return loss_sum / num_items


def masked_lm_loss(model: Any, inputs: dict[str, Any], num_items: Any = None) -> Any:
    """Mean next-token cross-entropy over labelled positions (summed and divided by
    `num_items` when the Trainer counts labels across gradient accumulation); None when the
    model's architecture needs its own forward."""
    import torch.nn.functional as F

    inner = model.module if wrapped(model) else model
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    if getattr(getattr(base, "config", None), "is_encoder_decoder", False):
        return seq2seq_loss(model, inputs, num_items)
    if wrapped(model):
        return _through_wrapper(model, inputs, num_items)
    found = labelled_hidden(model, inputs)
    if found is None:
        return None
    hidden, targets, head = found
    logits = head(hidden).float()
    loss = F.cross_entropy(logits, targets, reduction="sum")
    return normalise(loss, targets.numel(), num_items)


def seq2seq_loss(model: Any, inputs: dict[str, Any], num_items: Any = None) -> Any:
    """Cross-entropy of an encoder-decoder's labels (already aligned with its decoder, which
    shifts them itself), normalised like `masked_lm_loss`: the model's own loss is a mean per
    micro-batch, which gradient accumulation would then sum."""
    import torch.nn.functional as F

    logits = model(**inputs).logits.float()
    labels = inputs["labels"]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE,
        reduction="sum",
    )  # fmt: skip
    return normalise(loss, (labels != IGNORE).sum(), num_items)


def wrapped(model: Any) -> bool:
    """A DDP / FSDP wrapper (it has the model as .module, and no config of its own)."""
    return hasattr(model, "module") and not hasattr(model, "config")


def _through_wrapper(model: Any, inputs: dict[str, Any], num_items: Any = None) -> Any:
    """The same loss with the forward run through the wrapper: DDP and FSDP synchronise
    gradients (and gather shards) in their own forward, which calling the decoder directly
    would skip. Costs the full logits, the price of several processes."""
    import torch.nn.functional as F

    positions = inputs.get("position_ids")
    logits = model(input_ids=inputs["input_ids"], position_ids=positions, use_cache=False).logits
    keep = label_mask(inputs["labels"], positions)
    targets = inputs["labels"][:, 1:][keep]
    loss = F.cross_entropy(logits[:, :-1][keep].float(), targets, reduction="sum")
    return normalise(loss, targets.numel(), num_items)
