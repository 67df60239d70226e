"""Preference alignment: ORPO (TRL, no reference model) and DPO on {prompt, chosen,
rejected} pairs, with LoRA / QLoRA as in fine_tune. `align(AlignRequest)` is the capability."""

from __future__ import annotations

from lmfast.alignment.align import AlignRequest, AlignResult, align
from lmfast.alignment.preferences import check_preference_files

__all__ = ["AlignRequest", "AlignResult", "align", "check_preference_files"]
