"""prep_dataset: raw files in, a clean, deduplicated, versioned (and tokenized) dataset out.

Per shard (resumable, and the unit a distributed engine would run as a task): read records,
then one Rust call normalizes, filters, exact-hashes and MinHash-signs the whole batch.
Across shards: exact dedup on the hashes, near dedup by LSH over the signatures (in a
distributed run: a shuffle on the band keys). Finally format, tokenize and pack.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore, write_atomic
from lmfast.data.fields import (
    Format,
    detect_format,
    record_text,
    to_conversation,
    to_preference,
)
from lmfast.data.readers import DataError, ReadIssues, dataset_records, expand_inputs, read_records
from lmfast.data.settings import PrepRequest
from lmfast.hashing import config_hash, content_version
from lmfast.home import lmfast_home
from lmfast.progress import ProgressFn, no_progress

HIST_EDGES = [0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000]


class PrepReport(BaseModel):
    """What happened to the data."""

    format: str
    text_field: str | None
    documents_in: int
    bytes_in: int
    documents_out: int
    bytes_out: int
    dropped: dict[str, int] = Field(description="Documents dropped, per reason.")
    read_issues: dict[str, int] = Field(description="Malformed lines, binary files, ...")
    issue_examples: list[str] = Field(description="Where the first read issues were.")
    exact_duplicates: int
    near_duplicates: int
    duplicate_clusters: int = Field(description="Groups of 2+ documents kept as one.")
    length_histogram: dict[str, int] = Field(description="Kept documents by character count.")
    tokens: int | None = Field(None, description="Real (non-padding) tokens written.")
    trainable_tokens: int | None = Field(None, description="Tokens with a loss (labels).")
    sequences: int | None = None
    padding_tokens: int | None = Field(None, description="Pad tokens filling rows.")
    documents_truncated: int | None = Field(
        None, description="Documents longer than seq_len, cut to fit a row."
    )
    tokens_truncated: int | None = Field(None, description="Tokens cut off those documents.")
    warnings: list[str] = Field(default_factory=list, description="What a user should check.")
    shards: int
    resumed_shards: int
    seconds: float
    mb_per_second: float


class PrepResult(BaseModel):
    artifact_id: str
    path: str
    dataset_version: str
    report: PrepReport


_SCRUB = {
    "emails": (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<EMAIL>"),
    "ip_addresses": (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "<IP>"),
    "phone_numbers": (re.compile(r"(?<!\w)\+?\d[\d ().-]{7,}\d(?!\w)"), "<PHONE>"),
}


def _scrub(text: str, request: PrepRequest) -> str:
    for key, (pattern, token) in _SCRUB.items():
        if getattr(request.scrub, key):
            text = pattern.sub(token, text)
    return text


def _version(request: PrepRequest, files: list[Path], dataset: Any) -> str:
    settings = request.model_dump(mode="json", exclude={"inputs", "name", "shard_size", "strict"})
    if dataset is not None:
        fingerprint = getattr(dataset, "_fingerprint", None) or config_hash(list(dataset))
        return config_hash({"dataset": fingerprint, "settings": settings})
    return content_version(files, config=settings)


def prep_dataset(
    request: PrepRequest,
    progress: ProgressFn = no_progress,
    *,
    dataset: Iterable[dict[str, Any]] | None = None,
    store: ArtifactStore | None = None,
) -> PrepResult:
    """Run the pipeline; `dataset` may be a Hugging Face Dataset instead of files."""
    import lmfast_native

    start = time.perf_counter()
    if dataset is None and not request.inputs:
        raise DataError("inputs: give at least one file, folder or glob")
    store = store or ArtifactStore()
    files = [] if dataset is not None else expand_inputs(request.inputs)
    total_bytes = sum(f.stat().st_size for f in files) or 1
    version = _version(request, files, dataset)
    work = lmfast_home() / "work" / f"prep-{version[:20]}"
    work.mkdir(parents=True, exist_ok=True)
    issues = ReadIssues()
    records: Iterator[dict[str, Any]] = (
        dataset_records(dataset)
        if dataset is not None
        else read_records(files, issues, text_mode=request.text_files, strict=request.strict)
    )
    first = next(records, None)
    if first is None:
        raise DataError(
            f"inputs: no records found in {', '.join(request.inputs)} "
            f"({dict(issues.counts) or 'empty'})"
        )
    fmt, field = (
        (request.format, request.text_field)
        if request.format != "auto"
        else detect_format(first, request.text_field)
    )
    if fmt == "text" and field is None:
        field = "text"
    if fmt == "preference" and request.tokenizer:
        raise DataError(
            "tokenizer: preference pairs are not packed into token rows; prepare them without "
            "a tokenizer (align renders and tokenizes them with the model's chat template)"
        )
    chat = fmt != "text"
    cfg = request.filter_config(chat)
    records = _chain(first, records)

    shard, resumed, docs_in, bytes_in = 0, 0, 0, 0
    dropped: Counter[str] = Counter()
    progress(0, 100, f"reading {len(files) or 'in-memory'} inputs ({fmt})")
    while batch := list(islice(records, request.shard_size)):
        marker = work / f"shard-{shard:05d}.json"
        if marker.exists():
            stats = json.loads(marker.read_text())
            resumed += 1
        else:
            stats = _process_shard(work, shard, batch, fmt, field, cfg, request, lmfast_native)
            write_atomic(marker, json.dumps(stats).encode())
        docs_in += stats["documents"]
        bytes_in += stats["bytes"]
        dropped.update(stats["dropped"])
        shard += 1
        done = min(99.0, 70.0 * bytes_in / total_bytes) if files else 50.0
        progress(done, 100, f"shard {shard}: {docs_in} documents read")

    progress(70, 100, "deduplicating")
    keep, exact_dups, near_dups, clusters = _dedup(work, shard, request, lmfast_native)
    dropped["exact_duplicate"] += exact_dups
    dropped["near_duplicate"] += near_dups
    warnings = _drop_warnings(docs_in, int(keep.sum()), dropped, request)

    params = request.model_dump(mode="json")
    digests = lmfast_native.hash_files([str(f) for f in files]) if files else []
    inputs = [
        {"path": str(f.resolve()), "xxh3": d, "bytes": n}
        for f, (d, n) in zip(files, digests, strict=True)
    ]
    with store.create(
        "dataset",
        name=request.name,
        parents=[i["path"] for i in inputs][:50],
        config=params,
        dataset_version=version,
    ) as draft:
        kept_docs, bytes_out, hist = _write_kept(work, shard, keep, draft.path / "data.jsonl")
        progress(85, 100, f"{kept_docs} documents kept")
        tok_report: dict[str, int] = {}
        if request.tokenizer:
            progress(88, 100, f"tokenizing with {request.tokenizer}")
            tok_report = _tokenize(draft.path, request, chat)
            if tok_report["documents_truncated"]:
                warnings.append(
                    f"{tok_report['documents_truncated']} documents were longer than "
                    f"seq_len={request.seq_len} and lost {tok_report['tokens_truncated']} "
                    "tokens; raise seq_len to keep them whole"
                )
        seconds = time.perf_counter() - start
        report = PrepReport(
            format=fmt,
            text_field=field,
            documents_in=docs_in,
            bytes_in=bytes_in,
            documents_out=kept_docs,
            bytes_out=bytes_out,
            dropped=dict(dropped),
            read_issues=dict(issues.counts),
            issue_examples=issues.examples,
            exact_duplicates=exact_dups,
            near_duplicates=near_dups,
            duplicate_clusters=clusters,
            length_histogram=hist,
            **tok_report,
            warnings=warnings,
            shards=shard,
            resumed_shards=resumed,
            seconds=round(seconds, 3),
            mb_per_second=round(bytes_in / 1e6 / max(seconds, 1e-9), 2),
        )
        (draft.path / "report.json").write_text(report.model_dump_json(indent=2))
        draft.metrics = {
            "documents_in": docs_in,
            "documents_out": kept_docs,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            **({"tokens": tok_report["tokens"]} if tok_report else {}),
        }
        draft.extra = {"report": report.model_dump(), "inputs": inputs[:1000]}
    assert draft.artifact is not None
    shutil.rmtree(work, ignore_errors=True)
    progress(100, 100, f"saved {draft.artifact.id}")
    return PrepResult(
        artifact_id=draft.artifact.id,
        path=str(draft.artifact.path),
        dataset_version=version,
        report=report,
    )


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def _process_shard(
    work: Path,
    shard: int,
    batch: list[dict[str, Any]],
    fmt: Format,
    field: str | None,
    cfg: dict[str, Any],
    request: PrepRequest,
    native: Any,
) -> dict[str, Any]:
    texts: list[str] = []
    convs: list[Any] = []
    dropped: Counter[str] = Counter()
    nbytes = 0
    for rec in batch:
        t = record_text(rec, fmt, field)
        if t is None:
            dropped["no_text"] += 1
            continue
        texts.append(t)
        nbytes += len(t.encode("utf-8", "replace"))
        if fmt == "preference":
            convs.append(to_preference(rec))
        elif fmt != "text":
            convs.append(to_conversation(rec, fmt))
    out_texts, reasons, exact, sigs = native.process_batch(texts, cfg)
    kept = [i for i, r in enumerate(reasons) if r is None]
    dropped.update(r for r in reasons if r is not None)
    lines = []
    for i in kept:
        if fmt == "text":
            lines.append(json.dumps({"text": _scrub(out_texts[i], request)}, ensure_ascii=False))
        elif fmt == "preference":
            pair = convs[i]
            pair["prompt"] = [{**m, "content": _scrub(m["content"], request)}
                              for m in pair["prompt"]]  # fmt: skip
            for side in ("chosen", "rejected"):
                pair[side] = _scrub(pair[side], request)
            lines.append(json.dumps(pair, ensure_ascii=False))
        else:
            conv = [{**m, "content": _scrub(m["content"], request)} for m in convs[i]]
            lines.append(json.dumps({"messages": conv}, ensure_ascii=False))
    write_atomic(
        work / f"shard-{shard:05d}.jsonl", ("\n".join(lines) + "\n").encode() if lines else b""
    )
    p = request.dedup.num_perm
    sig_arr = (
        np.frombuffer(sigs, dtype="<u4").reshape(-1, p)[kept]
        if request.dedup.near
        else np.zeros((len(kept), 0), dtype="<u4")
    )
    buf = _npz(exact=np.asarray(exact, dtype=np.uint64)[kept], signatures=sig_arr)
    write_atomic(work / f"shard-{shard:05d}.npz", buf)
    return {"documents": len(batch), "bytes": nbytes, "dropped": dict(dropped), "kept": len(kept)}


def _npz(**arrays: np.ndarray) -> bytes:
    import io

    bio = io.BytesIO()
    np.savez(bio, **arrays)
    return bio.getvalue()


def _dedup(
    work: Path, shards: int, request: PrepRequest, native: Any
) -> tuple[np.ndarray, int, int, int]:
    """Keep mask over all kept-by-filters documents in shard order, plus counts."""
    exact_parts, sig_parts = [], []
    for s in range(shards):
        with np.load(work / f"shard-{s:05d}.npz") as z:
            exact_parts.append(z["exact"])
            sig_parts.append(z["signatures"])
    exact = np.concatenate(exact_parts) if exact_parts else np.zeros(0, np.uint64)
    keep = np.ones(len(exact), dtype=bool)
    clusters = 0
    exact_dups = 0
    if request.dedup.exact and len(exact):
        _, first, counts = np.unique(exact, return_index=True, return_counts=True)
        keep[:] = False
        keep[first] = True
        exact_dups = int(len(exact) - len(first))
        clusters += int((counts > 1).sum())
    near_dups = 0
    if request.dedup.near and len(exact):
        d = request.dedup
        sigs = np.concatenate(sig_parts)
        idx = np.flatnonzero(keep)
        reps = np.asarray(
            native.lsh_clusters(
                np.ascontiguousarray(sigs[idx]).astype("<u4").tobytes(),
                d.num_perm,
                d.bands,
                d.rows,
                d.threshold,
            )
        )
        own = reps == np.arange(len(idx))
        near_dups = int((~own).sum())
        clusters += len(np.unique(reps[~own]))
        keep[idx[~own]] = False
    return keep, exact_dups, near_dups, clusters


def _write_kept(
    work: Path, shards: int, keep: np.ndarray, out: Path
) -> tuple[int, int, dict[str, int]]:
    kept = nbytes = 0
    hist: Counter[str] = Counter()
    labels = [f"<{e}" for e in HIST_EDGES[1:]] + [f">={HIST_EDGES[-1]}"]
    pos = 0
    with open(out, "w", encoding="utf-8") as f:
        for s in range(shards):
            with open(work / f"shard-{s:05d}.jsonl", encoding="utf-8") as shard:
                for line in shard:
                    if not line.strip():
                        continue
                    if keep[pos]:
                        f.write(line if line.endswith("\n") else line + "\n")
                        kept += 1
                        doc = json.loads(line)
                        size = _characters(doc)
                        nbytes += size
                        bucket = int(np.searchsorted(HIST_EDGES[1:], size, side="right"))
                        hist[labels[bucket]] += 1
                    pos += 1
    return kept, nbytes, {k: hist.get(k, 0) for k in labels}


def _characters(doc: dict[str, Any]) -> int:
    if "text" in doc:
        return len(doc["text"])
    if "chosen" in doc:
        prompt = sum(len(m["content"]) for m in doc["prompt"])
        return prompt + len(doc["chosen"]) + len(doc["rejected"])
    return sum(len(m["content"]) for m in doc["messages"])


def _drop_warnings(
    docs_in: int, kept: int, dropped: Counter[str], request: PrepRequest
) -> list[str]:
    """Fail when nothing is left, warn when most was dropped: both name the top reasons."""
    top = ", ".join(f"{r} ({n})" for r, n in dropped.most_common(3) if n)
    hint = (
        "filters='minimal' keeps nearly everything, filters='document' suits non-web text, "
        "and any threshold can be relaxed with a setting such as "
        "filters.c4.min_sentences=1"
    )
    if docs_in and kept == 0:
        raise DataError(
            f"every one of the {docs_in} documents was dropped (top reasons: {top}); "
            f"nothing to save. {hint}"
        )
    share = 1 - kept / docs_in if docs_in else 0.0
    if share > request.warn_drop_fraction:
        return [f"{share:.0%} of {docs_in} documents were dropped (top reasons: {top}). {hint}"]
    return []


def _tokenize(folder: Path, request: PrepRequest, chat: bool) -> dict[str, int]:
    from lmfast.data.tokenize import (
        encode_chat,
        encode_texts,
        load_tokenizer,
        one_per_row,
        pack_stream,
        pack_whole,
        pad_id,
        tokenizer_fingerprint,
        write_tokens,
    )

    assert request.tokenizer is not None
    tok = load_tokenizer(request.tokenizer)
    with open(folder / "data.jsonl", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    pad, eos = pad_id(tok), tok.eos_token_id
    if chat:
        encoded = [encode_chat(tok, d["messages"]) for d in docs]
        ids = [e[0] for e in encoded]
        labels = [e[1] for e in encoded]
        if request.pack:
            packed = pack_whole(ids, labels, request.seq_len, pad)
        else:
            packed = one_per_row(ids, labels, request.seq_len, pad)
    else:
        ids = encode_texts(tok, [d["text"] for d in docs])
        if request.pack:
            packed = pack_stream(ids, eos, request.seq_len, pad)
        else:  # each document ends with EOS so the model learns where texts stop
            packed = one_per_row([[*d, eos] for d in ids], None, request.seq_len, pad)
    index = write_tokens(
        folder / "tokens",
        packed,
        {
            "tokenizer": request.tokenizer,
            "tokenizer_fingerprint": tokenizer_fingerprint(tok),
            "vocab_size": len(tok),
            "seq_len": request.seq_len,
            "eos_token_id": eos,
            "pad_token_id": pad,
            "packed": request.pack,
            "chat": chat,
        },
    )
    return {
        "tokens": index["real_tokens"],
        "trainable_tokens": index["trainable_tokens"],
        "sequences": index["shape"][0],
        "padding_tokens": index["padding_tokens"],
        "documents_truncated": packed.documents_truncated,
        "tokens_truncated": packed.tokens_truncated,
    }
