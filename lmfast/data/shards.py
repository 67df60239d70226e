"""Shards: the unit of work of prep_dataset, resumable and runnable anywhere (a local thread,
a Ray task). Each shard writes its kept records whole, the exact hashes, MinHash signatures
and ids dedup needs, and the drops with their reasons.

Two ways in: raw-text JSONL goes to the Rust core as bytes (parse, clean, filter, hash, sign
and write the record, no Python string per document); every other layout and file type is
read by the Python readers and cleaned by the same Rust pass over a batch of texts.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmfast.artifacts import write_atomic
from lmfast.data.fields import Format, record_text, to_conversation, to_preference
from lmfast.data.readers import JSONL, ReadIssues, Sourced, open_bytes, suffixes

SOURCE_KEY = "_source"
# Fields a chat / instruction layout is made of; every other field of a record is kept.
LAYOUT_FIELDS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "input", "output"),
    "prompt_response": (
        "prompt",
        "response",
        "completion",
        "question",
        "answer",
        "input",
        "output",
    ),
    "preference": ("prompt", "chosen", "rejected"),
}


@dataclass(frozen=True)
class ShardSpec:
    """What one shard processes: a byte range of whole JSONL lines, or a batch of records."""

    index: int
    file: str = ""
    first_line: int = 1
    data: bytes = b""
    records: list[Sourced] | None = None


@dataclass(frozen=True)
class ShardContext:
    fmt: Format
    field: str | None
    id_field: str
    config: dict[str, Any]
    num_perm: int
    scrub: dict[str, bool]


def fast_path(path: Path, fmt: Format) -> bool:
    """Raw-text JSONL (plain or compressed) takes the Rust path."""
    return fmt == "text" and suffixes(path)[0] in JSONL


def jsonl_chunks(path: Path, size: int, max_lines: int, start_index: int) -> Iterator[ShardSpec]:
    """Whole lines of `path` in chunks of about `size` bytes and at most `max_lines` lines (a
    line longer than `size` is a chunk of its own). Deterministic, so a resumed run cuts the
    same shards."""
    line = 1
    index = start_index
    carry = b""
    with open_bytes(path) as f:
        while True:
            chunk = carry + f.read(max(0, size - len(carry)))
            if not chunk:
                return
            if not chunk.endswith(b"\n"):
                chunk += f.readline()
            lines = chunk.count(b"\n")
            carry = b""
            if lines > max_lines:
                cut = _nth_newline(chunk, max_lines)
                chunk, carry, lines = chunk[: cut + 1], chunk[cut + 1 :], max_lines
            yield ShardSpec(index=index, file=str(path), first_line=line, data=chunk)
            line += lines
            index += 1


def _nth_newline(data: bytes, n: int) -> int:
    """Offset of the n-th newline of `data`."""
    pos = -1
    for _ in range(n):
        pos = data.find(b"\n", pos + 1)
    return pos


def run_shard(work: Path, spec: ShardSpec, ctx: ShardContext) -> dict[str, Any]:
    """Process one shard and write its files atomically; returns its stats (the marker)."""
    import lmfast_native

    if spec.records is None:
        out = lmfast_native.process_jsonl(
            spec.data, spec.first_line, spec.file, ctx.field or "text", ctx.id_field, ctx.config
        )
        records: bytes = out["records"]
        if any(ctx.scrub.values()):
            records = _scrub_lines(records, ctx.field or "text", ctx.scrub)
        issues = [(kind, f"{spec.file}:{line}: {msg}") for kind, line, msg in out["issues"]]
        kept_src = [f"{spec.file}:{n}" for n in out["kept_lines"]]
        drop_src = [f"{spec.file}:{n}" for n in out["drop_lines"]]
        arrays = {
            "exact": np.frombuffer(out["exact"], dtype="<u8"),
            "chars": np.frombuffer(out["chars"], dtype="<u4"),
            "signatures": np.frombuffer(out["signatures"], dtype="<u4").reshape(-1, ctx.num_perm)
            if ctx.num_perm
            else np.zeros((len(kept_src), 0), dtype="<u4"),
        }
        stats = _write(work, spec.index, records, arrays, out["kept_ids"], kept_src,
                       out["drop_ids"], drop_src, out["drop_reasons"])  # fmt: skip
        stats.update(
            documents=out["documents"],
            bytes=out["text_bytes"],
            chars=out["text_chars"],
            issues=issues,
        )
        return stats
    return _run_records(work, spec, ctx)


def _run_records(work: Path, spec: ShardSpec, ctx: ShardContext) -> dict[str, Any]:
    import lmfast_native

    assert spec.records is not None
    texts: list[str] = []
    rows: list[tuple[dict[str, Any], str, str]] = []
    drop_ids: list[str] = []
    drop_src: list[str] = []
    drop_reasons: list[str] = []
    nbytes = nchars = 0
    for rec, source in spec.records:
        rid = record_id(rec, ctx.id_field, source)
        t = record_text(rec, ctx.fmt, ctx.field)
        if t is None:
            drop_ids.append(rid)
            drop_src.append(source)
            drop_reasons.append("no_text")
            continue
        texts.append(t)
        rows.append((rec, rid, source))
        nbytes += len(t.encode("utf-8", "replace"))
        nchars += len(t)
    out_texts, reasons, exact, sigs = lmfast_native.process_batch(texts, ctx.config)
    lines: list[str] = []
    kept: list[int] = []
    for i, reason in enumerate(reasons):
        rec, rid, source = rows[i]
        if reason is not None:
            drop_ids.append(rid)
            drop_src.append(source)
            drop_reasons.append(reason)
            continue
        kept.append(i)
        lines.append(json.dumps(_output_record(rec, out_texts[i], source, ctx),
                                ensure_ascii=False, default=str))  # fmt: skip
    sig = (
        np.frombuffer(sigs, dtype="<u4").reshape(-1, ctx.num_perm)[kept]
        if ctx.num_perm
        else np.zeros((len(kept), 0), dtype="<u4")
    )
    arrays = {
        "exact": np.asarray(exact, dtype=np.uint64)[kept],
        "chars": np.asarray([len(out_texts[i]) for i in kept], dtype=np.uint32),
        "signatures": sig,
    }
    body = ("\n".join(lines) + "\n").encode() if lines else b""
    stats = _write(work, spec.index, body, arrays, [rows[i][1] for i in kept],
                   [rows[i][2] for i in kept], drop_ids, drop_src, drop_reasons)  # fmt: skip
    stats.update(documents=len(spec.records), bytes=nbytes, chars=nchars, issues=[])
    return stats


def record_id(rec: dict[str, Any], id_field: str, source: str) -> str:
    """A record's `id_field` when it is a string or number, else its source (file:line)."""
    value = rec.get(id_field)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    return source


def _source_field(source: str) -> dict[str, Any]:
    file, _, pos = source.rpartition(":")
    if file and pos.isdigit():
        return {"file": file, "line": int(pos)}
    return {"file": source}


def _output_record(
    rec: dict[str, Any], text: str, source: str, ctx: ShardContext
) -> dict[str, Any]:
    """The record whole: other fields kept, the layout normalised and cleaned-up, provenance."""
    fmt = ctx.fmt
    if fmt == "text":
        field = ctx.field or "text"
        if field not in rec and "text" in rec:
            field = "text"
        out = {k: v for k, v in rec.items() if k != SOURCE_KEY}
        out[field] = _scrub(text, ctx.scrub)
    else:
        layout = LAYOUT_FIELDS.get(fmt, ())
        out = {k: v for k, v in rec.items() if k not in layout and k != SOURCE_KEY}
        if fmt == "preference":
            pair = to_preference(rec)
            out["prompt"] = [{**m, "content": _scrub(m["content"], ctx.scrub)}
                             for m in pair["prompt"]]  # fmt: skip
            for side in ("chosen", "rejected"):
                out[side] = _scrub(pair[side], ctx.scrub)
        else:
            conv = to_conversation(rec, fmt) or []
            out["messages"] = [{**m, "content": _scrub(m["content"], ctx.scrub)} for m in conv]
    out[SOURCE_KEY] = _source_field(source)
    return out


def _write(
    work: Path,
    index: int,
    records: bytes,
    arrays: dict[str, np.ndarray],
    kept_ids: list[str],
    kept_src: list[str],
    drop_ids: list[str],
    drop_src: list[str],
    drop_reasons: list[str],
) -> dict[str, Any]:
    stem = work / f"shard-{index:05d}"
    write_atomic(stem.with_suffix(".jsonl"), records)
    bio = io.BytesIO()
    np.savez(
        bio,
        **arrays,
        kept_ids=np.asarray(kept_ids, dtype=str),
        kept_src=np.asarray(kept_src, dtype=str),
        drop_ids=np.asarray(drop_ids, dtype=str),
        drop_src=np.asarray(drop_src, dtype=str),
        drop_reasons=np.asarray(drop_reasons, dtype=str),
    )
    write_atomic(stem.with_suffix(".npz"), bio.getvalue())
    return {"dropped": dict(Counter(drop_reasons)), "kept": len(kept_ids)}


def merge_issues(issues: ReadIssues, stats: dict[str, Any]) -> None:
    for kind, where in stats.get("issues", []):
        issues.add(kind, where)


_SCRUB = {
    "emails": (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<EMAIL>"),
    "ip_addresses": (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "<IP>"),
    "phone_numbers": (re.compile(r"(?<!\w)\+?\d[\d ().-]{7,}\d(?!\w)"), "<PHONE>"),
}


def _scrub(text: str, scrub: dict[str, bool]) -> str:
    for key, (pattern, token) in _SCRUB.items():
        if scrub.get(key):
            text = pattern.sub(token, text)
    return text


def _scrub_lines(records: bytes, field: str, scrub: dict[str, bool]) -> bytes:
    """Scrubbing is Python regex; only kept records pay for it."""
    import orjson

    out = []
    for line in records.splitlines():
        rec = orjson.loads(line)
        rec[field] = _scrub(rec[field], scrub)
        out.append(orjson.dumps(rec))
    return b"\n".join(out) + b"\n" if out else b""
