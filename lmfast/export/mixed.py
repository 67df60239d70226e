"""Calibrated mixed-precision GGUF: measure how much each tensor alone hurts the model when
quantized, then spend a size budget where it buys the most.

1. llama.cpp quantizes the f32 GGUF once per candidate type with `pure` (every tensor at that
   type, or llama.cpp's fallback where a row does not fit the block), so each candidate is
   exactly what llama.cpp would store.
2. On calibration text, each weight tensor alone is replaced in the float model by its
   dequantized lowest-size candidate and the KL divergence of the next-token distribution
   from the float model's is measured: the tensor's sensitivity.
3. The other candidates' cost is predicted from that measurement scaled by their weight
   error, weighted by the tensor's input activation energy (the second-order view: output
   change grows with the activation-weighted weight error).
4. A greedy allocation starts every tensor at its smallest candidate and repeatedly upgrades
   the tensor with the best error reduction per byte that still fits the budget (by default
   the size of llama.cpp's own `base` mix, e.g. q4_k_m).
The plan is applied with llama.cpp per-tensor overrides.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from lmfast.export.gguf_convert import check_supported
from lmfast.export.llama_quantize import QuantizeError, quantize_gguf, tensor_bytes
from lmfast.progress import ProgressFn, no_progress

# Candidate tensor type -> the llama.cpp file type that yields it under `pure`.
LADDER: dict[str, str] = {
    "q3_k": "q3_k_s", "q4_0": "q4_0", "q4_k": "q4_k_s", "q5_0": "q5_0", "q5_k": "q5_k_s",
    "q6_k": "q6_k", "q8_0": "q8_0",
}  # fmt: skip


class TensorDecision(BaseModel):
    name: str
    type: str
    bits_per_weight: float
    sensitivity: float = Field(
        description="KL (nats/token) when only this tensor is at its smallest type."
    )
    predicted_kl: float = Field(description="Predicted KL contribution at the chosen type.")


class MixedPlan(BaseModel):
    base: str
    budget_bytes: int
    planned_bytes: int
    calibration_tokens: int
    decisions: list[TensorDecision]

    @property
    def overrides(self) -> dict[str, str]:
        return {d.name: d.type for d in self.decisions}

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.decisions:
            counts[d.type] = counts.get(d.type, 0) + 1
        return dict(sorted(counts.items()))


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    return (
        w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def _candidates(
    f32: Path, work: Path, progress: ProgressFn
) -> dict[str, dict[str, tuple[int, Any]]]:
    """gguf tensor name -> {stored type: (bytes, ReaderTensor)} over the ladder."""
    from gguf import GGUFReader

    out: dict[str, dict[str, tuple[int, Any]]] = {}
    for i, (kind, ftype) in enumerate(LADDER.items()):
        progress(i, len(LADDER), f"llama.cpp: every tensor at {kind}")
        path = work / f"pure-{kind}.gguf"
        if not path.is_file():
            quantize_gguf(f32, path, ftype, pure=True)
        for t in GGUFReader(str(path), "r").tensors:
            if len(t.shape) < 2:
                continue
            stored = t.tensor_type.name.lower()
            out.setdefault(t.name, {}).setdefault(stored, (int(t.n_bytes), t))
    return out


def _calibration_ids(tokenizer: Any, text: str, tokens: int, seq: int) -> Any:
    import torch

    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = max(1, min(tokens, len(ids)) // seq)
    if len(ids) < seq:
        raise QuantizeError(
            f"calibration: the text has {len(ids)} tokens, at least {seq} are needed"
        )
    return torch.tensor([ids[r * seq : (r + 1) * seq] for r in range(rows)])


def plan_mixed(
    hf_folder: Path,
    f32_gguf: Path,
    calibration_text: str,
    budget_bytes: int,
    work: Path,
    base: str = "q4_k_m",
    calibration_tokens: int = 512,
    seq: int = 128,
    progress: ProgressFn = no_progress,
) -> MixedPlan:
    """Measure sensitivities and allocate types within `budget_bytes` of tensor data."""
    import gguf
    import torch
    from gguf.quants import dequantize
    from transformers import AutoModelForCausalLM, AutoTokenizer

    arch, permute, config = check_supported(hf_folder)
    candidates = _candidates(f32_gguf, work, progress)
    fixed = sum(b for n, b in tensor_bytes(f32_gguf).items() if n not in candidates)
    # An impossible budget is refused before the model loads and the sensitivity sweep runs.
    _check_budget(
        budget_bytes - fixed, sum(min(s for s, _ in c.values()) for c in candidates.values())
    )

    model = AutoModelForCausalLM.from_pretrained(str(hf_folder), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(hf_folder))
    ids = _calibration_ids(tokenizer, calibration_text, calibration_tokens, seq)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch], config["num_hidden_layers"])
    params = {}
    for key, p in model.named_parameters():
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name in candidates:
            params[name] = (key, p)
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads

    # Input activation energy per linear layer, for the activation-weighted weight error.
    energy: dict[str, torch.Tensor] = {}
    hooks = []
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):

            def hook(mod: Any, args: Any, _out: Any, key: str = module_name + ".weight") -> None:
                x = args[0].detach().reshape(-1, args[0].shape[-1])
                energy[key] = (x * x).mean(0)

            hooks.append(module.register_forward_hook(hook))
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
    out_logits = out.logits.float()
    reference = torch.log_softmax(out_logits, -1)
    layer_inputs = out.hidden_states  # [i] is the input of decoder layer i
    del out
    for h in hooks:
        h.remove()
    decoder = model.model.layers

    def logits_from(layer: int | None) -> torch.Tensor:
        """Logits recomputed from decoder layer `layer` on (its cached input); the whole
        model when None. Layers before the changed tensor give the same output: skip them."""
        if layer is None:
            return model(ids).logits
        model.model.layers = decoder[layer:]
        try:
            return model(inputs_embeds=layer_inputs[layer]).logits
        finally:
            model.model.layers = decoder

    with torch.no_grad():  # the shortcut must reproduce the full forward pass
        middle = len(decoder) // 2
        drift = float((logits_from(middle).float() - out_logits).abs().max())
    if drift > 1e-3 * max(1.0, float(out_logits.abs().max())):
        raise QuantizeError(f"mixed precision: partial forward differs from the model ({drift})")
    del out_logits

    def weight(name: str, tensor: Any) -> torch.Tensor:
        w = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        key = params[name][0]
        if permute and key.endswith("q_proj.weight"):
            w = _unpermute(w, heads)
        elif permute and key.endswith("k_proj.weight"):
            w = _unpermute(w, kv_heads)
        return torch.from_numpy(np.ascontiguousarray(w)).reshape(params[name][1].shape)

    options: dict[str, list[tuple[str, int, float]]] = {}  # name -> [(type, bytes, error)]
    sensitivity: dict[str, float] = {}
    total = len(params)
    for i, (name, (key, p)) in enumerate(sorted(params.items())):
        progress(i, total, f"sensitivity of {name}")
        original = p.data.clone()
        e = energy.get(key)
        rows = []
        for kind, (size, tensor) in candidates[name].items():
            delta = weight(name, tensor) - original
            err = float(((delta * delta) * e).sum() if e is not None else (delta * delta).sum())
            rows.append((kind, size, err, tensor))
        rows.sort(key=lambda r: r[1])
        low = rows[0]
        with torch.no_grad():
            p.data.copy_(weight(name, low[3]))
            logq = torch.log_softmax(logits_from(_layer_of(name)).float(), -1)
            kl = float((reference.exp() * (reference - logq)).sum(-1).mean())
            p.data.copy_(original)
        sensitivity[name] = max(kl, 0.0)
        options[name] = [
            (kind, size, sensitivity[name] * (err / low[2] if low[2] > 0 else 0.0))
            for kind, size, err, _ in rows
        ]
    progress(total, total, "allocating the budget")
    choice = _allocate(options, budget_bytes - fixed)
    decisions = []
    for name in sorted(options, key=_tensor_order):
        kind, size, err = options[name][choice[name]]
        numel = int(np.prod(params[name][1].shape))
        decisions.append(
            TensorDecision(
                name=name,
                type=kind,
                bits_per_weight=round(size * 8 / numel, 3),
                sensitivity=sensitivity[name],
                predicted_kl=err,
            )
        )
    planned = fixed + sum(options[n][c][1] for n, c in choice.items())
    return MixedPlan(
        base=base, budget_bytes=budget_bytes, planned_bytes=planned,
        calibration_tokens=int(ids.numel()), decisions=decisions,
    )  # fmt: skip


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blk" else None


def _tensor_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    return (int(parts[1]) if parts[0] == "blk" else -1, name)


def _check_budget(budget: int, smallest: int) -> None:
    if smallest > budget:
        raise QuantizeError(
            f"size budget: {budget / 1e6:.1f} MB of tensor data is below the smallest plan "
            f"({smallest / 1e6:.1f} MB at the lowest types)"
        )


def _allocate(options: dict[str, list[tuple[str, int, float]]], budget: int) -> dict[str, int]:
    """Greedy marginal-gain allocation: upgrades in order of error removed per extra byte."""
    choice = {n: 0 for n in options}
    used = sum(o[0][1] for o in options.values())
    _check_budget(budget, used)
    while True:
        best: tuple[float, str, int] | None = None
        for name, opts in options.items():
            _, size0, err0 = opts[choice[name]]
            for j in range(choice[name] + 1, len(opts)):
                _, size, err = opts[j]
                extra = size - size0
                if err >= err0 or used + extra > budget:
                    continue
                gain = (err0 - err) / max(extra, 1)
                if best is None or gain > best[0]:
                    best = (gain, name, j)
        if best is None:
            return choice
        _, name, j = best
        used += options[name][j][1] - options[name][choice[name]][1]
        choice[name] = j


def plot_plan(plan: MixedPlan, out: Path) -> None:
    """Bits per weight per layer and tensor kind, as a heat map PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted(
        {int(d.name.split(".")[1]) for d in plan.decisions if d.name.startswith("blk.")}
    )
    kinds = sorted({d.name.split(".")[2] for d in plan.decisions if d.name.startswith("blk.")})
    grid = np.full((len(kinds), len(layers)), np.nan)
    for d in plan.decisions:
        if d.name.startswith("blk."):
            _, layer, kind, *_ = d.name.split(".")
            grid[kinds.index(kind), layers.index(int(layer))] = d.bits_per_weight
    fig, ax = plt.subplots(figsize=(max(6, len(layers) * 0.3), 3.2))
    im = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_xlabel("layer")
    others = ", ".join(
        f"{d.name}: {d.type}" for d in plan.decisions if not d.name.startswith("blk.")
    )
    ax.set_title(f"mixed precision, {plan.planned_bytes / 1e6:.1f} MB ({others})", fontsize=9)
    fig.colorbar(im, ax=ax, label="bits per weight")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def save_plan(plan: MixedPlan, out: Path) -> None:
    out.write_text(json.dumps(plan.model_dump(), indent=1))
