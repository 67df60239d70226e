"""Which input tokens a model's chosen output token came from: saliency (gradient x input) and
attention rollout over the input, as data and as a PNG heatmap (a report artifact).

Saliency: |sum over the embedding of (d log p(token) / d embedding) x embedding| for each
input token (Simonyan et al.; Shrikumar et al.'s gradient x input). Rollout (Abnar & Zuidema
2020): each layer's attention averaged over heads, mixed half and half with the identity for
the residual stream, rows renormalised, multiplied through the layers; the row of the last
position says how much each input token reaches the prediction (the first token, where small
decoders sink most of their attention, is left out). Both sum to 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore
from lmfast.config import DEFAULT_MODEL
from lmfast.errors import LMFastError

SHOWN = 80  # input tokens drawn in the heatmap (the last ones; the data keeps them all)


class AttentionRequest(BaseModel):
    """Explain one output token of a model's reply to a prompt."""

    prompt: str = Field(min_length=1, max_length=20_000, description="The user message.")
    model: str = Field(DEFAULT_MODEL, min_length=1, description="Model reference.")
    system: str | None = Field(None, max_length=20_000, description="System message.")
    chat: bool = Field(True, description="Render with the chat template (when it has one).")
    target: str | None = Field(
        None,
        min_length=1,
        max_length=2_000,
        description="Explain this continuation instead of the model's greedy reply.",
    )
    token: int = Field(0, ge=0, le=255, description="Which output token (0: the first).")
    max_input_tokens: int = Field(1024, ge=2, le=8192, description="Longest input explained.")
    name: str | None = Field(None, max_length=200, description="Name for the report artifact.")


class AttentionResult(BaseModel):
    artifact_id: str
    png: str
    model: str
    input_tokens: list[str] = Field(description="The input as the model saw it, token by token.")
    output_token: str
    output_token_id: int
    probability: float = Field(description="The model's probability of the output token.")
    saliency: list[float] = Field(description="Gradient x input per input token (sums to 1).")
    rollout: list[float] = Field(
        description="Attention rollout per input token, the first (attention sink) excluded "
        "(sums to 1)."
    )


def _input_ids(request: AttentionRequest, tok: Any) -> list[int]:
    if request.chat and getattr(tok, "chat_template", None):
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": request.prompt})
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(tok(text, add_special_tokens=False)["input_ids"])
    text = f"{request.system}\n\n{request.prompt}" if request.system else request.prompt
    return list(tok(text)["input_ids"])


def rollout(attentions: Any, skip_first: bool = True) -> Any:
    """Attention rollout of the last position over all positions (a 1-D tensor).

    `skip_first`: small decoders park most attention on the first token (an "attention
    sink", Xiao et al. 2023) and through 30 layers the product then gives it everything; its
    column is dropped (rows renormalised) at each layer, so the rollout shows the content."""
    import torch

    result = None
    for layer in attentions:  # (1, heads, T, T) each
        a = layer[0].float().mean(0)
        if skip_first and a.shape[0] > 2:
            a = a.clone()
            a[:, 0] = 0
            a[0, 0] = 1  # the first row only attends to itself
            a = a / a.sum(-1, keepdim=True)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[0], device=a.device)
        a = a / a.sum(-1, keepdim=True)
        result = a if result is None else a @ result
    assert result is not None
    return result[-1]


def attention_map(
    request: AttentionRequest, *, store: ArtifactStore | None = None
) -> AttentionResult:
    """Saliency and attention rollout for one output token, saved as a PNG report."""
    import torch

    from lmfast.loading import load_transformers

    store = store or ArtifactStore()
    model, tok = load_transformers(request.model, dtype="float32")
    model.set_attn_implementation("eager")  # fused kernels do not return the weights
    ids = _input_ids(request, tok)
    if request.target is not None:
        continuation = list(tok(request.target, add_special_tokens=False)["input_ids"])
    else:
        with torch.no_grad():
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=request.token + 1,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        continuation = out[0, len(ids) :].tolist()
    if request.token >= len(continuation):
        raise LMFastError(
            f"token={request.token}: the continuation has {len(continuation)} token(s) "
            f"({tok.decode(continuation)!r}); choose 0 to {max(0, len(continuation) - 1)}"
        )
    inputs = ids + continuation[: request.token]
    if len(inputs) > request.max_input_tokens:
        raise LMFastError(
            f"prompt: {len(inputs)} input tokens, more than max_input_tokens="
            f"{request.max_input_tokens}; shorten the prompt or raise the limit"
        )
    chosen = continuation[request.token]
    embeds = model.get_input_embeddings()(torch.tensor([inputs])).detach().requires_grad_(True)
    out = model(inputs_embeds=embeds, output_attentions=True, use_cache=False)
    log_probs = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
    log_probs[chosen].backward()
    probability = float(log_probs[chosen].detach().exp())
    assert embeds.grad is not None
    saliency = (embeds.grad[0] * embeds[0]).sum(-1).abs().detach()
    saliency = saliency / saliency.sum().clamp(min=1e-12)
    reach = rollout([a.detach() for a in out.attentions])
    tokens = [tok.decode([i]) for i in inputs]
    shown = tok.decode([chosen])
    data = {
        "model": request.model,
        "input_tokens": tokens,
        "output_token": shown,
        "output_token_id": int(chosen),
        "probability": round(probability, 6),
        "saliency": [round(float(x), 6) for x in saliency],
        "rollout": [round(float(x), 6) for x in reach],
    }
    with store.create("report", name=request.name, config=request.model_dump(mode="json")) as draft:
        png = heatmap(
            tokens, data["saliency"], data["rollout"], shown, draft.path / "attention.png"
        )
        (draft.path / "attention.json").write_text(json.dumps(data, indent=2))
        draft.metrics = {"probability": probability}
        draft.extra = {"kind": "attention", "model": request.model, "output_token": shown}
    assert draft.artifact is not None
    return AttentionResult(
        artifact_id=draft.artifact.id, png=str(draft.artifact.path / png.name), **data
    )


def heatmap(
    tokens: list[str], saliency: list[float], reach: list[float], output: str, path: Path
) -> Path:
    """Two rows (saliency, rollout) over the input tokens, the last SHOWN of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    start = max(0, len(tokens) - SHOWN)
    labels = [repr(t)[1:-1] or "∅" for t in tokens[start:]]
    grid = np.array([saliency[start:], reach[start:]])
    grid = grid / grid.max(axis=1, keepdims=True).clip(min=1e-12)  # each row to its own max
    fig, ax = plt.subplots(figsize=(max(6.0, 0.32 * len(labels) + 2), 2.8), dpi=110)
    image = ax.imshow(grid, aspect="auto", cmap="magma_r", vmin=0, vmax=1)
    ax.set_yticks(
        [0, 1], ["saliency\n(grad x input)", "attention rollout\n(sink excluded)"], fontsize=8
    )
    ax.set_xticks(range(len(labels)), labels, rotation=70, fontsize=7, ha="right")
    skipped = f" (last {SHOWN} of {len(tokens)} input tokens)" if start else ""
    ax.set_title(f"input tokens behind the output token {output!r}{skipped}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.025, pad=0.01, label="relative to the row's max")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
