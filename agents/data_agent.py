"""DataAgent: a ReAct persona whose tools are LMFast's own data and evaluation capabilities.

Three tools, each a thin face over the capability the CLI and MCP server also use:
`inspect_file` (what a dataset file holds: format, fields, record count, samples),
`prep_dataset` (clean, filter, deduplicate; the dataset artifact's report comes back) and
`evaluate` (score models on LMFast tasks; the metrics come back). It is the first brick of
"an agent that improves its own model": look at the data, prepare it, measure.

Files are confined to `root` (default: the working directory): a model cannot ask to read
or prepare a file outside it, whatever the task text says.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Literal

from lmfast.agents.models import AgentError
from lmfast.agents.react import REACT_SYSTEM, Agent
from lmfast.agents.tools import Tool, tool

# The persona, then the ReAct format every agent uses.
DATA_SYSTEM = (
    "You are a data assistant for training small language models: you look at dataset "
    "files, prepare them (clean, filter, deduplicate) and evaluate models. Report numbers "
    "exactly as the tools give them.\n\n" + REACT_SYSTEM
)

FilterPreset = Literal["auto", "web", "document", "minimal", "off"]


class DataTools:
    """The DataAgent's tools, bound to a root folder."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or Path.cwd()).resolve()
        if not self.root.is_dir():
            raise AgentError(f"data: {root!s} is not a folder")

    def _path(self, path: str) -> Path:
        """`path` resolved inside the root; anything that escapes it is refused."""
        p = Path(path)
        resolved = (p if p.is_absolute() else self.root / p).resolve()
        if not resolved.is_relative_to(self.root):
            raise PermissionError(f"path: {path!r} is outside the allowed folder {self.root}")
        if not resolved.exists():
            raise FileNotFoundError(f"path: {path!r} does not exist under {self.root}")
        return resolved

    def tools(self) -> list[Tool]:
        root = self

        @tool
        def inspect_file(path: str, rows: int = 2) -> str:
            """Describe a dataset file: format, fields, number of records and a few samples.

            Args:
                path: The file (JSONL, CSV, Parquet or text), relative to the data folder.
                rows: How many sample records to show (at most 5).
            """
            return json.dumps(root.inspect(path, rows), ensure_ascii=False)

        @tool
        def prep_dataset(path: str, filters: FilterPreset = "auto", dedup: bool = True) -> str:
            """Clean, quality-filter and deduplicate a dataset into a new dataset artifact.

            Args:
                path: The file or folder to prepare, relative to the data folder.
                filters: Quality filter preset: auto, web, document, minimal or off.
                dedup: Remove exact and near duplicate documents.
            """
            return json.dumps(root.prep(path, filters, dedup), ensure_ascii=False)

        @tool
        def evaluate(model: str, tasks: list[str], limit: int | None = None) -> str:
            """Score a model on LMFast evaluation tasks and return its metrics.

            Args:
                model: Model reference (alias, .gguf file, model folder or artifact id).
                tasks: Task names, for example capitals, arithmetic or prose.
                limit: At most this many examples per task.
            """
            return json.dumps(root.evaluate(model, tasks, limit), ensure_ascii=False)

        return [inspect_file, prep_dataset, evaluate]

    # -- the capabilities behind the tools --------------------------------------------------
    def inspect(self, path: str, rows: int = 2, count_limit: int = 1_000_000) -> dict[str, Any]:
        from lmfast.data.fields import detect_format
        from lmfast.data.readers import ReadIssues, expand_inputs, read_records

        files = expand_inputs([str(self._path(path))])
        issues = ReadIssues()
        records = read_records(files, issues)
        head = list(itertools.islice(records, max(1, min(rows, 5))))
        if not head:
            return {"path": path, "records": 0, "read_issues": dict(issues.counts)}
        fmt, field = detect_format(head[0], None)
        count = len(head) + sum(1 for _ in itertools.islice(records, count_limit))
        fields = sorted({k for r in head for k in r})
        return {
            "path": path,
            "bytes": sum(f.stat().st_size for f in files),
            "records": count if count <= count_limit else f"more than {count_limit}",
            "format": fmt,
            "text_field": field,
            "fields": fields,
            "samples": [_shorten(r) for r in head],
            "read_issues": dict(issues.counts),
        }

    def prep(self, path: str, filters: str = "auto", dedup: bool = True) -> dict[str, Any]:
        from lmfast.data.prep import prep_dataset
        from lmfast.data.settings import DedupSettings, FilterSettings, PrepRequest

        request = PrepRequest(
            inputs=[str(self._path(path))],
            filters=FilterSettings.preset(filters),
            dedup=DedupSettings(exact=dedup, near=dedup),
        )
        result = prep_dataset(request)
        r = result.report
        return {
            "artifact_id": result.artifact_id,
            "format": r.format,
            "documents_in": r.documents_in,
            "documents_out": r.documents_out,
            "dropped": r.dropped,
            "exact_duplicates": r.exact_duplicates,
            "near_duplicates": r.near_duplicates,
            "warnings": r.warnings,
        }

    def evaluate(self, model: str, tasks: list[str], limit: int | None = None) -> dict[str, Any]:
        from lmfast.evaluation.evaluate import EvaluateRequest, evaluate

        report = evaluate(
            EvaluateRequest(
                models=[model], tasks=tasks, limit=limit, efficiency=False, tracker="none"
            )
        )
        scores = report.models[0]
        return {
            "report": report.artifact_id,
            "tasks": {t.task: {k: round(v, 4) for k, v in t.metrics.items()} for t in scores.tasks},
        }


def _shorten(record: dict[str, Any], limit: int = 200) -> dict[str, Any]:
    """A sample record small enough for a small model's context."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        out[k] = text if len(text) <= limit else text[:limit] + "..."
    return out


class DataAgent(Agent):
    """A ReAct agent with LMFast's data tools (plus any `extra_tools`), confined to `root`."""

    def __init__(
        self,
        model: Any = None,
        *,
        root: str | Path | None = None,
        extra_tools: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.data = DataTools(root)
        kwargs.setdefault("system", DATA_SYSTEM)
        super().__init__([*self.data.tools(), *(extra_tools or [])], model, **kwargs)
