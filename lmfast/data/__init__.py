"""Data preparation: readers, quality filters and dedup (Rust core), formatting, packing."""

from lmfast.data.prep import PrepReport, PrepResult, prep_dataset
from lmfast.data.settings import PrepRequest

__all__ = ["PrepReport", "PrepRequest", "PrepResult", "prep_dataset"]
