"""How strongly a model prefers the chosen answer: log p(chosen | prompt) - log p(rejected |
prompt), each summed over the answer's tokens and its end token (as ORPO and DPO score it)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _answer_logprobs(
    model: Any, tokenizer: Any, prompts: list[str], answers: list[str]
) -> list[float]:
    import torch

    eos = tokenizer.eos_token or ""
    rows, starts = [], []
    for prompt, answer in zip(prompts, answers, strict=True):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + answer + eos, add_special_tokens=False)["input_ids"]
        rows.append(full)
        starts.append(len(p))
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    token_lp = logprobs.gather(-1, ids[:, 1:].to(device)[..., None])[..., 0].cpu()
    out = []
    for i, r in enumerate(rows):
        out.append(float(token_lp[i, starts[i] - 1 : len(r) - 1].sum()))
    return out


def preference_margins(
    model: Any, tokenizer: Any, pairs: list[dict[str, str]], batch_size: int = 8
) -> np.ndarray:
    """One margin per pair (positive: the chosen answer is the likelier one)."""
    import torch

    was_training = model.training
    model.eval()
    margins: list[float] = []
    try:
        with torch.inference_mode():
            for i in range(0, len(pairs), batch_size):
                chunk = pairs[i : i + batch_size]
                prompts = [p["prompt"] for p in chunk]
                chosen = _answer_logprobs(model, tokenizer, prompts, [p["chosen"] for p in chunk])
                rejected = _answer_logprobs(
                    model, tokenizer, prompts, [p["rejected"] for p in chunk]
                )
                margins += [c - r for c, r in zip(chosen, rejected, strict=True)]
    finally:
        model.train(was_training)
    return np.asarray(margins)


def margin_summary(margins: np.ndarray) -> dict[str, float]:
    return {
        "preference_accuracy": round(float((margins > 0).mean()), 4) if len(margins) else 0.0,
        "mean_margin": round(float(margins.mean()), 4) if len(margins) else 0.0,
    }
