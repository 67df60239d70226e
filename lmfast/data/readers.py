"""Read records from JSONL (plain, .gz, .zst), text, Parquet, CSV, Hugging Face datasets and
folders or globs of these. Bad input is counted and reported, never fatal unless strict."""

from __future__ import annotations

import glob
import gzip
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from lmfast.errors import LMFastError

JSONL = (".jsonl", ".json", ".ndjson")
TEXT = (".txt", ".md", ".rst", ".text")
SUPPORTED = (*JSONL, *TEXT, ".parquet", ".csv")


# A record and where it came from: "file:line" (JSONL), "file:row" (Parquet, CSV),
# "file:block" (text blocks) or "file" (a whole text file).
Sourced = tuple[dict[str, Any], str]


class DataError(LMFastError, ValueError):
    """Input data that cannot be read (named file, line and reason)."""


@dataclass
class ReadIssues:
    """What went wrong while reading, for the report."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, kind: str, where: str) -> None:
        self.counts[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {where}")


def suffixes(path: Path) -> tuple[str, str]:
    """(format suffix, compression) e.g. ('.jsonl', '.zst')."""
    sfx = [s.lower() for s in path.suffixes]
    comp = sfx[-1] if sfx and sfx[-1] in (".gz", ".zst") else ""
    fmt = sfx[-2] if comp and len(sfx) >= 2 else (sfx[-1] if sfx else "")
    return fmt, comp


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named by paths, folders (recursively) and globs, sorted, supported formats only."""
    files: list[Path] = []
    for item in inputs:
        s = str(item)
        matches = (
            [Path(m) for m in sorted(glob.glob(s, recursive=True))]
            if any(ch in s for ch in "*?[")
            else [Path(s)]
        )
        if not matches:
            raise DataError(f"inputs: {s!r} matches no file")
        for p in matches:
            if p.is_dir():
                files += sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file() and suffixes(f)[0] in SUPPORTED and not f.name.startswith(".")
                )
            elif p.is_file():
                files.append(p)
            else:
                raise DataError(f"inputs: {s!r} does not exist")
    if not files:
        raise DataError(
            f"inputs: no readable files in {[str(i) for i in inputs]}; "
            f"supported: {', '.join(SUPPORTED)} (optionally .gz / .zst)"
        )
    return sorted(dict.fromkeys(files))


def open_bytes(path: Path) -> IO[bytes]:
    _, comp = suffixes(path)
    if comp == ".gz":
        return gzip.open(path, "rb")
    if comp == ".zst":
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))  # noqa: SIM115
        return io.BufferedReader(raw)  # type: ignore[arg-type]  # adds line iteration
    return open(path, "rb")


def is_binary(path: Path) -> bool:
    with open_bytes(path) as f:
        head = f.read(8192)
    return b"\x00" in head


def read_records(
    files: list[Path], issues: ReadIssues, *, text_mode: str = "file", strict: bool = False
) -> Iterator[dict[str, Any]]:
    """Records as dicts. Text files give {"text": ...} per file or per blank-line block."""
    for record, _ in read_sourced(files, issues, text_mode=text_mode, strict=strict):
        yield record


def read_sourced(
    files: list[Path], issues: ReadIssues, *, text_mode: str = "file", strict: bool = False
) -> Iterator[Sourced]:
    """Records with their source ("file:line" and the like), for provenance."""
    for path in files:
        fmt, _ = suffixes(path)
        try:
            if fmt not in (".parquet",) and is_binary(path):
                issues.add("binary_file", str(path))
                if strict:
                    raise DataError(f"{path}: binary file (NUL bytes), not text")
                continue
            if fmt in JSONL:
                yield from _jsonl(path, issues, strict)
            elif fmt in TEXT or fmt == "":
                yield from _text(path, issues, text_mode)
            elif fmt == ".parquet":
                yield from _arrow_rows(path, "parquet")
            elif fmt == ".csv":
                yield from _arrow_rows(path, "csv")
            else:
                issues.add("unsupported_file", str(path))
        except (OSError, EOFError) as e:
            issues.add("unreadable_file", f"{path}: {e}")
            if strict:
                raise DataError(f"{path}: {e}") from e


def _decode(raw: bytes, issues: ReadIssues, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        issues.add("invalid_utf8", where)
        return raw.decode("utf-8", errors="replace")


def _jsonl(path: Path, issues: ReadIssues, strict: bool) -> Iterator[Sourced]:
    with open_bytes(path) as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)  # validates UTF-8 too; json is the fallback below
            except orjson.JSONDecodeError:
                line = _decode(raw, issues, f"{path}:{n}")
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    issues.add("malformed_json", f"{path}:{n}: {e.msg}")
                    if strict:
                        raise DataError(f"{path}:{n}: malformed JSON ({e.msg})") from None
                    continue
            if not isinstance(obj, dict):
                issues.add("malformed_json", f"{path}:{n}: not an object")
                if strict:
                    raise DataError(f"{path}:{n}: each line must be a JSON object")
                continue
            yield obj, f"{path}:{n}"


def _text(path: Path, issues: ReadIssues, mode: str) -> Iterator[Sourced]:
    with open_bytes(path) as f:
        text = _decode(f.read(), issues, str(path))
    if mode == "blocks":
        for n, block in enumerate(text.split("\n\n"), 1):
            if block.strip():
                yield {"text": block}, f"{path}:{n}"
    elif text.strip():
        yield {"text": text}, str(path)


def _arrow_rows(path: Path, kind: str) -> Iterator[Sourced]:
    if kind == "parquet":
        import pyarrow.parquet as pq

        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
    else:
        import pyarrow.csv as pcsv

        batches = iter(pcsv.read_csv(path).to_batches(4096))
    n = 0
    for batch in batches:
        for row in batch.to_pylist():
            n += 1
            yield row, f"{path}:{n}"


def dataset_records(dataset: Any) -> Iterator[Sourced]:
    """Records of a Hugging Face `datasets.Dataset` (or any iterable of dicts), sourced by
    row number ("dataset:N")."""
    for n, row in enumerate(dataset, 1):
        if isinstance(row, dict):
            yield row, f"dataset:{n}"
