"""Data preparation: readers, quality filters and dedup (Rust core), formatting, packing."""

from lmfast.data.audit import Explanation, explain_document
from lmfast.data.prep import PrepReport, PrepResult, prep_dataset
from lmfast.data.settings import PrepRequest

__all__ = [
    "Explanation",
    "PrepReport",
    "PrepRequest",
    "PrepResult",
    "explain_document",
    "prep_dataset",
]
