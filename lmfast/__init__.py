"""LMFast: take a small language model through its whole life on modest hardware.

The public API is re-exported lazily so `import lmfast` (and `lmfast --help`) stays fast:
torch, transformers and llama.cpp load only when a capability that needs them runs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "LMFastConfig": "lmfast.config",
    "load_config": "lmfast.config",
    "HardwareProfile": "lmfast.hardware",
    "detect_hardware": "lmfast.hardware",
    "TrainingPlan": "lmfast.plan",
    "plan_training": "lmfast.plan",
    "resolve_model": "lmfast.registry",
    "model_spec": "lmfast.registry",
    "model_info": "lmfast.registry",
    "list_models": "lmfast.registry",
    "ArtifactStore": "lmfast.artifacts",
    "load_transformers": "lmfast.loading",
    "save_transformers": "lmfast.loading",
    "load_engine": "lmfast.inference",
    "GenerateRequest": "lmfast.generation",
    "generate": "lmfast.generation",
    "convert_to_hf": "lmfast.convert",
    "prep_dataset": "lmfast.data",
    "PrepRequest": "lmfast.data",
    "explain_document": "lmfast.data",
    "fine_tune": "lmfast.training",
    "FineTuneRequest": "lmfast.training",
    "SLMTrainer": "lmfast.training",
    "merge_adapter": "lmfast.training",
    "train_tokenizer": "lmfast.training",
    "TokenizerTrainRequest": "lmfast.training",
    "tune": "lmfast.training",
    "TuneRequest": "lmfast.training",
    "LaunchSettings": "lmfast.training",
    "distill": "lmfast.distillation",
    "DistillRequest": "lmfast.distillation",
    "build_student": "lmfast.distillation",
    "generate_teacher_labels": "lmfast.distillation",
    "align": "lmfast.alignment",
    "AlignRequest": "lmfast.alignment",
    "evaluate": "lmfast.evaluation",
    "EvaluateRequest": "lmfast.evaluation",
    "EvaluateResult": "lmfast.evaluation",
    "attention_map": "lmfast.observability.attention",
    "AttentionRequest": "lmfast.observability.attention",
    "guard_check": "lmfast.guardrails.check",
    "GuardCheckRequest": "lmfast.guardrails.check",
    "quantize": "lmfast.export",
    "QuantizeRequest": "lmfast.export",
    # `lmfast.export` is the sub-package, so the function is exported as export_model
    "export_model": "lmfast.export",
    "ExportRequest": "lmfast.export",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lmfast' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
