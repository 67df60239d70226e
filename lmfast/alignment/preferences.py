"""Preference pairs: checked line by line, cleaned and deduplicated by prep_dataset, and
rendered with the model's chat template for TRL.

Rows are {prompt, chosen, rejected} (strings or messages) or chat-style pairs (chosen and
rejected conversations sharing their prompt). A bad row stops the run before anything
loads, named by file and line; prep_dataset then normalises the rows, drops exact
duplicates, and the pairs become the strings TRL's ORPO and DPO trainers take: the prompt
rendered up to the assistant's turn, and each answer (the trainer appends the end token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from lmfast.artifacts import ArtifactStore
from lmfast.data.fields import to_preference
from lmfast.data.readers import DataError, expand_inputs
from lmfast.progress import ProgressFn, no_progress

SHOWN_PROBLEMS = 10


def check_preference_files(files: list[Path]) -> int:
    """Every row of these JSONL files is a usable preference pair; otherwise a DataError
    names the first problems by file and line. Returns the number of rows."""
    problems: list[str] = []
    rows = bad = 0
    for path in files:
        if not path.name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
            continue  # other formats (Parquet, Arrow) are checked by prep as records
        with open(path, "rb") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                rows += 1
                try:
                    record = orjson.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError(f"a JSON object is needed, got {type(record).__name__}")
                    to_preference(record)
                except (orjson.JSONDecodeError, ValueError) as e:
                    bad += 1
                    if len(problems) < SHOWN_PROBLEMS:
                        problems.append(f"{path.name}:{line_no}: {e}")
    if bad:
        more = f" (and {bad - len(problems)} more)" if bad > len(problems) else ""
        raise DataError(
            f"{bad} of {rows} preference rows are unusable{more}; each row needs prompt, "
            "chosen and rejected (strings or messages), with different answers:\n  "
            + "\n  ".join(problems)
        )
    return rows


def prepare_preferences(
    source: str, store: ArtifactStore, progress: ProgressFn = no_progress
) -> Any:
    """A preference dataset artifact for `source` (an artifact id, file, folder or glob)."""
    from lmfast.data import PrepRequest, prep_dataset

    if store.exists(source):
        art = store.get(source)
        report = art.manifest.extra.get("report", {})
        if art.manifest.kind != "dataset" or report.get("format") != "preference":
            raise DataError(
                f"data.path: {source!r} is not a preference dataset (format "
                f"{report.get('format')!r}); prepare pairs with `lmfast prep --format preference`"
            )
        return art
    files = expand_inputs([source])
    check_preference_files(files)
    progress(0, None, f"preparing preference pairs from {source} (prep_dataset)")
    result = prep_dataset(
        PrepRequest.model_validate(
            {
                "inputs": [source],
                "format": "preference",
                # Pairs built from one template differ in a few words: only exact copies go.
                "dedup": {"exact": True, "near": False},
            }
        ),
        store=store,
    )
    return store.get(result.artifact_id)


def render_pairs(dataset: Any, tokenizer: Any) -> list[dict[str, str]]:
    """The dataset's pairs as {prompt, chosen, rejected} strings in the chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the model's tokenizer has no chat template, so preference prompts cannot be "
            "rendered; align an instruct model (or one whose tokenizer carries a template)"
        )
    pairs = []
    with open(Path(dataset.path) / "data.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            prompt = tokenizer.apply_chat_template(
                rec["prompt"], tokenize=False, add_generation_prompt=True
            )
            pairs.append({"prompt": prompt, "chosen": rec["chosen"], "rejected": rec["rejected"]})
    return pairs
