"""A student built from its teacher: a subset of the teacher's layers (and optionally
narrower MLPs), initialised with the teacher's own weights (as DistilBERT does), so it
starts close to the teacher instead of from noise and shares its tokenizer by construction.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore
from lmfast.errors import ConfigError
from lmfast.hashing import config_hash
from lmfast.progress import ProgressFn, no_progress

LayerChoice = Literal["every_other"] | list[int]


class StudentReport(BaseModel):
    artifact_id: str
    path: str
    layers: list[int] = Field(description="Teacher layers kept, in order.")
    teacher_layers: int
    intermediate_size: int
    teacher_intermediate_size: int
    parameters: int
    teacher_parameters: int
    expected_speedup: float = Field(
        description="Teacher / student multiply-adds per decoded token (weights read)."
    )
    reused: bool = Field(False, description="An identical student already existed.")


def choose_layers(choice: LayerChoice, n: int) -> list[int]:
    """Teacher layer indices to keep. 'every_other' keeps 0, 2, 4, ... and always the last
    layer (it shapes the space the LM head reads)."""
    if choice == "every_other":
        keep = list(range(0, n, 2))
        if keep[-1] != n - 1:
            keep[-1] = n - 1
        return keep
    bad = [i for i in choice if not 0 <= i < n]
    if bad or not choice:
        raise ConfigError(
            [("student_layers", f"{choice} must be a non-empty list of layers in 0..{n - 1}")]
        )
    if sorted(set(choice)) != list(choice):
        raise ConfigError([("student_layers", f"{choice} must be increasing, without repeats")])
    return list(choice)


def _decode_cost(model: Any) -> int:
    """Weights multiplied per decoded token: every linear layer, the LM head included (the
    embedding lookup is free)."""
    import torch

    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def _mlp_keep(layer: Any, width: int) -> Any:
    """The `width` MLP neurons with the largest weight norms (gate x up x down)."""
    mlp = layer.mlp
    score = mlp.up_proj.weight.norm(dim=1) * mlp.down_proj.weight.norm(dim=0)
    if hasattr(mlp, "gate_proj"):
        score = score * mlp.gate_proj.weight.norm(dim=1)
    return score.topk(width).indices.sort().values


def build_student(
    teacher: str,
    layers: LayerChoice = "every_other",
    mlp_ratio: float | None = None,
    *,
    store: ArtifactStore | None = None,
    progress: ProgressFn = no_progress,
) -> StudentReport:
    """Make (or reuse) a student model artifact from `teacher`'s layers."""
    import torch
    from transformers import AutoModelForCausalLM

    from lmfast.loading import load_transformers
    from lmfast.registry import resolve_model

    store = store or ArtifactStore()
    resolved = resolve_model(teacher, store=store)
    key = config_hash({"teacher": str(resolved.path), "layers": layers, "mlp_ratio": mlp_ratio})
    progress(0, None, f"building a student from {resolved.name}")
    model, tokenizer = load_transformers(resolved, dtype="float32")
    base = getattr(model, "model", None)
    n = getattr(model.config, "num_hidden_layers", None)
    if base is None or not hasattr(base, "layers") or n is None:
        raise ConfigError(
            [
                (
                    "teacher",
                    f"{type(model).__name__} has no decoder layer list to take layers from; "
                    "students are built from Llama-style models (Llama, SmolLM2, Qwen2, "
                    "Mistral, Gemma)",
                )
            ]
        )
    keep = choose_layers(layers, n)
    width = model.config.intermediate_size
    if mlp_ratio is not None:
        if not 0 < mlp_ratio <= 1:
            raise ConfigError([("student_mlp_ratio", f"{mlp_ratio} must be in (0, 1]")])
        width = max(64, round(model.config.intermediate_size * mlp_ratio / 64) * 64)
    teacher_params = sum(p.numel() for p in model.parameters())
    for art in store.list("model"):
        if art.manifest.extra.get("student_key") == key:
            return StudentReport(
                artifact_id=art.id, path=str(art.path), **art.manifest.extra["student"], reused=True
            )

    config = copy.deepcopy(model.config)
    config.num_hidden_layers = len(keep)
    config.intermediate_size = width
    for name, value in list(vars(config).items()):  # per-layer lists (layer_types, ...)
        if isinstance(value, list) and len(value) == n:
            setattr(config, name, [value[i] for i in keep])
    student = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    narrow = width != model.config.intermediate_size
    neurons = {i: _mlp_keep(base.layers[i], width) for i in keep} if narrow else {}
    state = model.state_dict()
    new_state = {}
    for name in student.state_dict():
        parts = name.split(".")
        layer = None
        if "layers" in parts:  # student layer j is teacher layer keep[j]
            at = parts.index("layers") + 1
            layer = keep[int(parts[at])]
            parts[at] = str(layer)
        tensor = state[".".join(parts)]
        if narrow and layer is not None and ".mlp." in name:
            if name.endswith(("gate_proj.weight", "up_proj.weight")):
                tensor = tensor[neurons[layer]]
            elif name.endswith("down_proj.weight"):
                tensor = tensor[:, neurons[layer]]
        new_state[name] = tensor.clone()
    student.load_state_dict(new_state, strict=True)
    params = sum(p.numel() for p in student.parameters())
    speedup = round(_decode_cost(model) / max(1, _decode_cost(student)), 2)
    with store.create(
        "model",
        name=f"{resolved.name} student ({len(keep)}/{n} layers)",
        parents=[str(resolved.path)],
        config={"teacher": teacher, "layers": layers, "mlp_ratio": mlp_ratio},
    ) as draft:
        student.save_pretrained(str(draft.path))
        tokenizer.save_pretrained(str(draft.path))
        report: dict[str, Any] = {
            "layers": keep,
            "teacher_layers": n,
            "intermediate_size": width,
            "teacher_intermediate_size": model.config.intermediate_size,
            "parameters": params,
            "teacher_parameters": teacher_params,
            "expected_speedup": speedup,
        }
        draft.metrics = {"parameters": params, "expected_speedup": speedup}
        draft.extra = {"student_key": key, "student": report}
    art = draft.artifact
    assert art is not None
    progress(1, 1, f"student {art.id}: {params:,} parameters, {speedup}x fewer weights per token")
    return StudentReport(artifact_id=art.id, path=str(art.path), **report)
