"""Which capabilities run as jobs: name -> (request model, function). Imported lazily."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from lmfast.errors import LMFastError


@dataclass(frozen=True)
class JobKind:
    name: str
    request: str  # "module:Class" of the pydantic request
    function: str  # "module:function" taking (request, progress=...) -> pydantic result
    description: str


KINDS: dict[str, JobKind] = {
    k.name: k
    for k in [
        JobKind(
            name="convert_model",
            request="lmfast.convert:ConvertRequest",
            function="lmfast.convert:convert_to_hf",
            description="Dequantize a GGUF (or copy any model) into a trainable HF artifact",
        ),
        JobKind(
            name="prep_dataset",
            request="lmfast.data.settings:PrepRequest",
            function="lmfast.data.prep:prep_dataset",
            description="Clean, filter, deduplicate, format, tokenize and pack a dataset",
        ),
        JobKind(
            name="fine_tune",
            request="lmfast.training.finetune:FineTuneRequest",
            function="lmfast.training.finetune:fine_tune",
            description="LoRA / QLoRA / full fine-tuning, continued pretraining or pretraining",
        ),
        JobKind(
            name="train_tokenizer",
            request="lmfast.training.tokenizer:TokenizerTrainRequest",
            function="lmfast.training.tokenizer:train_tokenizer",
            description="Train a byte-level BPE or Unigram tokenizer on a corpus",
        ),
        JobKind(
            name="tune",
            request="lmfast.training.tune:TuneRequest",
            function="lmfast.training.tune:tune",
            description="Hyper-parameter search over recipe fields (Optuna)",
        ),
        JobKind(
            name="merge_adapter",
            request="lmfast.training.merge:MergeRequest",
            function="lmfast.training.merge:merge_adapter",
            description="Fold a LoRA adapter into a full model artifact",
        ),
        JobKind(
            name="distill",
            request="lmfast.distillation.distill:DistillRequest",
            function="lmfast.distillation.distill:distill",
            description="Distil a teacher into a student (online or from stored top-k logits)",
        ),
        JobKind(
            name="align_orpo",
            request="lmfast.alignment.align:AlignRequest",
            function="lmfast.alignment.align:align",
            description="Align a model to preference pairs with ORPO or DPO",
        ),
        JobKind(
            name="specialize_agent",
            request="lmfast.agents.specialize:SpecializeRequest",
            function="lmfast.agents.specialize:specialize",
            description="Make a model good at given tools: tasks, trajectories, SFT, scoring",
        ),
        JobKind(
            name="quantize",
            request="lmfast.export.quantize:QuantizeRequest",
            function="lmfast.export.quantize:quantize",
            description="Quantize a model: GGUF types, calibrated mixed precision, int8 / int4",
        ),
        JobKind(
            name="export",
            request="lmfast.export.export:ExportRequest",
            function="lmfast.export.export:export",
            description="Export a model as float GGUF, merged safetensors or ONNX",
        ),
        JobKind(
            name="evaluate",
            request="lmfast.evaluation.evaluate:EvaluateRequest",
            function="lmfast.evaluation.evaluate:evaluate",
            description="Score models on tasks and write a comparison report",
        ),
    ]
}


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def resolve_kind(name: str) -> tuple[type[BaseModel], Callable[..., BaseModel]]:
    kind = KINDS.get(name)
    if kind is None:
        raise LMFastError(f"unknown job kind {name!r}; kinds: {', '.join(KINDS)}")
    return _load(kind.request), _load(kind.function)
