"""prep_dataset: raw files in, a clean, deduplicated, versioned (and tokenized) dataset out.

Per shard (resumable, and the unit the Ray engine runs as a task; see shards.py): one Rust
call parses, normalizes, filters, exact-hashes and MinHash-signs the shard and writes its kept
records whole. Across shards (dedup.py): exact dedup on the hashes, near dedup by LSH over the
signatures (with Ray: a group-by on the band keys), then the kept records and the audit
tables. Finally tokenize and pack.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from lmfast.artifacts import ArtifactStore, write_atomic
from lmfast.data.dedup import DedupResult, NearFn, deduplicate, write_kept, write_tables
from lmfast.data.fields import Format, detect_format
from lmfast.data.readers import (
    DataError,
    ReadIssues,
    Sourced,
    dataset_records,
    expand_inputs,
    is_binary,
    read_sourced,
)
from lmfast.data.settings import PrepRequest
from lmfast.data.shards import (
    ShardContext,
    ShardSpec,
    fast_path,
    jsonl_chunks,
    merge_issues,
    run_shard,
)
from lmfast.hashing import config_hash, content_version
from lmfast.home import lmfast_home
from lmfast.progress import ProgressFn, no_progress


class PrepReport(BaseModel):
    """What happened to the data."""

    format: str
    text_field: str | None
    documents_in: int
    bytes_in: int
    documents_out: int
    characters_in: int = Field(description="Characters of text read, before cleaning.")
    characters_out: int = Field(description="Characters of text kept, after cleaning.")
    dropped: dict[str, int] = Field(description="Documents dropped, per reason.")
    read_issues: dict[str, int] = Field(description="Malformed lines, binary files, ...")
    issue_examples: list[str] = Field(description="Where the first read issues were.")
    exact_duplicates: int
    near_duplicates: int
    duplicate_clusters: int = Field(description="Groups of 2+ documents kept as one.")
    duplicates_table: int = Field(
        0, description="Rows of duplicates.jsonl: each removed duplicate and the kept one."
    )
    drops_table: int = Field(0, description="Rows of drops.jsonl: each filtered document.")
    length_histogram: dict[str, int] = Field(description="Kept documents by character count.")
    tokens: int | None = Field(None, description="Real (non-padding) tokens written.")
    trainable_tokens: int | None = Field(None, description="Tokens with a loss (labels).")
    sequences: int | None = None
    padding_tokens: int | None = Field(None, description="Pad tokens filling rows.")
    documents_truncated: int | None = Field(
        None, description="Documents longer than seq_len, cut to fit a row."
    )
    tokens_truncated: int | None = Field(None, description="Tokens cut off those documents.")
    document_tokens: dict[str, float] | None = Field(
        None,
        description="Tokens per document before packing: documents, mean, p50, p90, p99, max "
        "(what the training plan chooses the sequence length from).",
    )
    tokenizer_path: str | None = Field(
        None, description="Which encoder ran: LMFast's Rust BPE, or `tokenizers` and why."
    )
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


_NOT_IN_VERSION = {"inputs", "name", "shard_size", "shard_bytes", "strict", "engine", "ray_address"}


def _version(request: PrepRequest, files: list[Path], dataset: Any) -> str:
    # What the artifact's content depends on: not the name, where it ran or how it was cut.
    settings = request.model_dump(mode="json", exclude=_NOT_IN_VERSION)
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
    near_fn: NearFn | None = None,
) -> PrepResult:
    """Run the pipeline; `dataset` may be a Hugging Face Dataset instead of files. `near_fn`
    replaces the local LSH clustering (the Ray engine passes its band-key group-by)."""
    import lmfast_native

    start = time.perf_counter()
    if dataset is None and not request.inputs:
        raise DataError("inputs: give at least one file, folder or glob")
    store = store or ArtifactStore()
    files = [] if dataset is not None else expand_inputs(request.inputs)
    total_bytes = sum(f.stat().st_size for f in files) or 1
    version = _version(request, files, dataset)
    # Resume markers are per shard, so the folder is keyed by how the input is cut too.
    cuts = config_hash([request.shard_size, request.shard_bytes])[:8]
    work = lmfast_home() / "work" / f"prep-{version[:20]}-{cuts}"
    work.mkdir(parents=True, exist_ok=True)
    issues, probe_issues = ReadIssues(), ReadIssues()
    probe = (
        dataset_records(dataset)
        if dataset is not None
        else read_sourced(files, probe_issues, text_mode=request.text_files, strict=request.strict)
    )
    first = next(probe, None)
    if first is None:
        raise DataError(
            f"inputs: no records found in {', '.join(request.inputs or ['the dataset'])} "
            f"({dict(probe_issues.counts) or 'empty'})"
        )
    fmt, field = (
        (request.format, request.text_field)
        if request.format != "auto"
        else detect_format(first[0], request.text_field)
    )
    if fmt == "text" and field is None:
        field = "text"
    if fmt == "preference" and request.tokenizer:
        raise DataError(
            "tokenizer: preference pairs are not packed into token rows; prepare them without "
            "a tokenizer (align renders and tokenizes them with the model's chat template)"
        )
    chat = fmt != "text"
    ctx = ShardContext(
        fmt=fmt,
        field=field,
        id_field=request.id_field,
        config=request.filter_config(chat),
        num_perm=request.dedup.num_perm if request.dedup.near else 0,
        scrub=request.scrub.model_dump(),
    )
    if request.strict and files:
        # Fail before any work on the first malformed record, naming file and line.
        for _ in read_sourced(files, ReadIssues(), text_mode=request.text_files, strict=True):
            pass

    progress(0, 100, f"reading {len(files) or 'in-memory'} inputs ({fmt})")
    stats: list[dict[str, Any]] = []
    resumed = 0
    read_bytes = 0

    def done(spec: ShardSpec, result: dict[str, Any], was_resumed: bool) -> None:
        nonlocal resumed, read_bytes
        stats.append(result)
        resumed += was_resumed
        read_bytes += len(spec.data)
        merge_issues(issues, result)
        docs = sum(s["documents"] for s in stats)
        pct = min(69.0, 70.0 * read_bytes / total_bytes) if files else 50.0
        progress(pct, 100, f"shard {len(stats)}: {docs} documents read")

    specs = _shard_specs(files, dataset, request, fmt, issues)
    with ExitStack() as engine:
        if request.engine == "ray":
            from lmfast.data import distributed

            engine.enter_context(distributed.ray_session(request.ray_address))
            distributed.run_shards_ray(work, specs, ctx, done)
        else:
            run_shards(work, specs, ctx, done)
        dedup, dropped, docs_in, bytes_in, shards = _dedup(
            work, stats, request, ctx, near_fn, progress
        )
    _fail_if_nothing_kept(docs_in, int(dedup.keep.sum()), dropped)
    # Shards resumed from a run before characters were counted know only their bytes.
    chars_in = sum(s.get("chars", s["bytes"]) for s in stats)

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
        kept_docs, chars_out, hist = write_kept(work, shards, dedup, draft.path / "data.jsonl")
        warnings = _drop_warnings(docs_in, kept_docs, dropped, request, chars_in, chars_out)
        tables = write_tables(work, shards, dedup, draft.path)
        progress(85, 100, f"{kept_docs} documents kept")
        tok_report: dict[str, Any] = {}
        if request.tokenizer:
            progress(88, 100, f"tokenizing with {request.tokenizer}")
            tok_report = _tokenize(draft.path, request, chat, field)
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
            characters_in=chars_in,
            characters_out=chars_out,
            dropped=dict(dropped),
            read_issues=dict(issues.counts),
            issue_examples=issues.examples,
            exact_duplicates=dedup.exact_dups,
            near_duplicates=dedup.near_dups,
            duplicate_clusters=dedup.clusters,
            duplicates_table=tables["duplicates"],
            drops_table=tables["drops"],
            length_histogram=hist,
            **tok_report,
            warnings=warnings,
            shards=shards,
            resumed_shards=resumed,
            seconds=round(seconds, 3),
            mb_per_second=round(bytes_in / 1e6 / max(seconds, 1e-9), 2),
        )
        (draft.path / "report.json").write_text(report.model_dump_json(indent=2))
        draft.metrics = {
            "documents_in": docs_in,
            "documents_out": kept_docs,
            "bytes_in": bytes_in,
            "characters_in": chars_in,
            "characters_out": chars_out,
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


def _dedup(
    work: Path,
    stats: list[dict[str, Any]],
    request: PrepRequest,
    ctx: ShardContext,
    near_fn: NearFn | None,
    progress: ProgressFn,
) -> tuple[DedupResult, Counter[str], int, int, int]:
    """Exact and near dedup across the finished shards, on the engine the run uses."""
    import lmfast_native

    shards = len(stats)
    docs_in = sum(s["documents"] for s in stats)
    bytes_in = sum(s["bytes"] for s in stats)
    dropped: Counter[str] = Counter()
    for s in stats:
        dropped.update(s["dropped"])
    progress(70, 100, "deduplicating")
    d = request.dedup
    if near_fn is None and request.engine == "ray":
        from lmfast.data.distributed import ray_near_fn

        near_fn = ray_near_fn(d.num_perm, d.bands, d.rows, d.threshold)
    dedup = deduplicate(
        work,
        shards,
        exact=d.exact,
        near=d.near,
        num_perm=ctx.num_perm,
        near_fn=near_fn
        or (
            lambda sigs: lmfast_native.lsh_clusters(
                sigs.tobytes(), d.num_perm, d.bands, d.rows, d.threshold
            )
        ),
    )
    dropped["exact_duplicate"] += dedup.exact_dups
    dropped["near_duplicate"] += dedup.near_dups
    return dedup, dropped, docs_in, bytes_in, shards


def _shard_specs(
    files: list[Path],
    dataset: Iterable[dict[str, Any]] | None,
    request: PrepRequest,
    fmt: Format,
    issues: ReadIssues,
) -> Iterator[ShardSpec]:
    """Shards in a fixed order: raw-text JSONL as byte chunks (the Rust path), everything
    else as batches of records read in Python."""
    index = 0

    def batches(records: Iterator[Sourced]) -> Iterator[ShardSpec]:
        nonlocal index
        while batch := list(islice(records, request.shard_size)):
            yield ShardSpec(index=index, records=batch)
            index += 1

    if dataset is not None:
        yield from batches(dataset_records(dataset))
        return
    for path in files:
        if fast_path(path, fmt) and not is_binary(path):
            for spec in jsonl_chunks(path, request.shard_bytes, request.shard_size, index):
                index += 1
                yield spec
        else:
            yield from batches(read_sourced([path], issues, text_mode=request.text_files))


def run_shards(
    work: Path,
    specs: Iterator[ShardSpec],
    ctx: ShardContext,
    done: Callable[[ShardSpec, dict[str, Any], bool], None],
) -> None:
    """Two shards in flight: one in the Rust core (GIL released) while Python reads and
    writes the other. Finished shards (a marker file) are skipped on resume."""
    pending: deque[tuple[ShardSpec, Future[dict[str, Any]]]] = deque()
    with ThreadPoolExecutor(max_workers=2) as pool:

        def finish_one() -> None:
            spec, fut = pending.popleft()
            result = fut.result()
            write_atomic(work / f"shard-{spec.index:05d}.json", json.dumps(result).encode())
            done(spec, result, False)

        for spec in specs:
            marker = work / f"shard-{spec.index:05d}.json"
            if marker.exists() and not pending:
                done(spec, json.loads(marker.read_text()), True)
                continue
            pending.append((spec, pool.submit(run_shard, work, spec, ctx)))
            if len(pending) >= 2:
                finish_one()
        while pending:
            finish_one()


DROP_HINT = (
    "filters='minimal' keeps nearly everything, filters='document' suits non-web text, "
    "and any threshold can be relaxed with a setting such as filters.c4.min_sentences=1"
)


def _top_reasons(dropped: Counter[str]) -> str:
    return ", ".join(f"{r} ({n})" for r, n in dropped.most_common(3) if n)


def _fail_if_nothing_kept(docs_in: int, kept: int, dropped: Counter[str]) -> None:
    if docs_in and kept == 0:
        raise DataError(
            f"every one of the {docs_in} documents was dropped (top reasons: "
            f"{_top_reasons(dropped)}); nothing to save. {DROP_HINT}"
        )


def _drop_warnings(
    docs_in: int,
    kept: int,
    dropped: Counter[str],
    request: PrepRequest,
    chars_in: int,
    chars_out: int,
) -> list[str]:
    """Warn when most documents, or most of the text, was dropped, naming the top reasons.

    Both shares count: a filter that drops a few long documents (pydoc pages with repeated
    lines, say) can remove most of a corpus while most documents survive.
    """
    docs_share = 1 - kept / docs_in if docs_in else 0.0
    text_share = 1 - chars_out / chars_in if chars_in else 0.0
    if max(docs_share, text_share) <= request.warn_drop_fraction:
        return []
    return [
        f"{text_share:.0%} of the text ({chars_in - chars_out:,} of {chars_in:,} characters) "
        f"and {docs_share:.0%} of the documents ({docs_in - kept} of {docs_in}) were dropped "
        f"(top reasons: {_top_reasons(dropped)}). {DROP_HINT}"
    ]


def _tokenize(folder: Path, request: PrepRequest, chat: bool, field: str | None) -> dict[str, Any]:
    import numpy as np

    from lmfast.data.fast_tokenizer import encode_text_file
    from lmfast.data.tokenize import (
        encode_chat,
        length_profile,
        load_tokenizer,
        one_per_row,
        pack_flat,
        pack_whole,
        pad_id,
        tokenizer_fingerprint,
        write_tokens,
    )

    assert request.tokenizer is not None
    tok = load_tokenizer(request.tokenizer)
    pad, eos = pad_id(tok), tok.eos_token_id
    path = "chat template (transformers)"
    if chat:
        with open(folder / "data.jsonl", encoding="utf-8") as f:
            docs = [json.loads(line) for line in f]
        encoded = [encode_chat(tok, d["messages"]) for d in docs]
        ids = [e[0] for e in encoded]
        labels = [e[1] for e in encoded]
        profile = length_profile([len(i) for i in ids])
        if request.pack:
            packed = pack_whole(ids, labels, request.seq_len, pad)
        else:
            packed = one_per_row(ids, labels, request.seq_len, pad)
    else:
        flat, lengths, path = encode_text_file(tok, folder / "data.jsonl", field or "text")
        profile = length_profile(lengths + 1)  # each document ends with EOS
        if request.pack:
            packed = pack_flat(flat, lengths, eos, request.seq_len, pad)
        else:  # each document ends with EOS so the model learns where texts stop
            ends = np.cumsum(lengths)
            docs_ids = [
                [*flat[e - n : e].tolist(), eos] for e, n in zip(ends, lengths, strict=True)
            ]
            packed = one_per_row(docs_ids, None, request.seq_len, pad)
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
            "document_tokens": profile,
        },
    )
    return {
        "tokens": index["real_tokens"],
        "trainable_tokens": index["trainable_tokens"],
        "sequences": index["shape"][0],
        "padding_tokens": index["padding_tokens"],
        "documents_truncated": packed.documents_truncated,
        "tokens_truncated": packed.tokens_truncated,
        "tokenizer_path": path,
        "document_tokens": profile,
    }
