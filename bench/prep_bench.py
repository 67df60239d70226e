"""Data-preparation benchmark: LMFast prep vs datatrove and datasketch, in one run.

    uv sync --group bench && uv run python bench/prep_bench.py [--mb 110] [--peer-mb 8]

1. Builds a real-text corpus from the documentation Debian packages install (/usr/share/doc,
   decompressed), cut into ~2-8 KB documents, and injects exact duplicates (5 %) and near
   duplicates (5 %, about 1.5 % of words replaced) with known sources.
2. LMFast: the full pipeline (normalize, Gopher / C4 / FineWeb filters, exact + MinHash LSH
   near dedup, 112 permutations as 14 x 8, 5-gram shingles) over the whole corpus.
3. datatrove with the same filters and MinHash parameters, and datasketch's MinHashLSH for
   the near-dedup step alone, on a slice (they are too slow for the whole corpus here), each
   beside LMFast on the same slice.
4. Near-duplicate recall (injected pairs caught) and precision (removals that really are
   near duplicates: true 5-gram Jaccard >= 0.7 with the kept document, and separately the
   share of removals that were injected).
5. Tokenize-and-pack: LMFast's Rust BPE vs `tokenizers` encode_batch_fast on the same text
   and cores, ids compared document by document; the whole pipeline with the tokenizer.
6. Peak memory and MB/s at 1x and 4x the corpus (copies with fresh ids).
7. The Ray engine (2 local workers) against the local engine: wall time and kept ids.
Each tool runs in its own process so peak memory (max RSS) is its own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
WORK = Path(os.environ.get("LMFAST_BENCH_DIR", "/tmp/lmfast-prep-bench"))


# -- corpus -------------------------------------------------------------------------------
def _doc_files() -> list[Path]:
    out = []
    for root, _, files in os.walk("/usr/share/doc"):
        for f in sorted(files):
            p = Path(root, f)
            if not p.is_symlink() and p.is_file():
                out.append(p)
    return sorted(out)


def _read(p: Path) -> str | None:
    try:
        if p.suffix == ".gz":
            with gzip.open(p) as f:
                raw = f.read()
        else:
            raw = p.read_bytes()
    except OSError:
        return None
    if b"\x00" in raw[:4096]:
        return None
    return raw.decode("utf-8", "replace")


def build(target_mb: float) -> dict[str, object]:
    rng = random.Random(0)
    docs: list[str] = []
    size = 0
    for p in _doc_files():
        text = _read(p)
        if not text:
            continue
        chunk: list[str] = []
        for para in text.split("\n\n"):
            chunk.append(para)
            if sum(len(c) for c in chunk) > rng.randint(2000, 8000):
                docs.append("\n\n".join(chunk))
                size += len(docs[-1])
                chunk = []
        if chunk:
            docs.append("\n\n".join(chunk))
            size += len(docs[-1])
        if size > target_mb * 1e6 / 1.1:
            break
    base = len(docs)
    records = [{"id": f"d{i}", "text": t} for i, t in enumerate(docs)]
    vocab = [w for t in docs[:200] for w in t.split()][:20000]
    truth = {"exact": [], "near": []}
    for kind in ("exact", "near"):
        for _ in range(base // 20):
            src = rng.randrange(base)
            text = docs[src]
            if kind == "near":
                words = text.split(" ")
                for _ in range(max(1, round(0.015 * len(words)))):
                    words[rng.randrange(len(words))] = rng.choice(vocab)
                text = " ".join(words)
            new_id = f"{kind}{len(truth[kind])}"
            records.append({"id": new_id, "text": text})
            truth[kind].append([new_id, f"d{src}"])
    rng.shuffle(records)
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "corpus.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    (WORK / "truth.json").write_text(json.dumps(truth))
    total = sum(len(r["text"].encode()) for r in records)
    return {
        "documents": len(records),
        "base_documents": base,
        "text_mb": total / 1e6,
        "exact_injected": len(truth["exact"]),
        "near_injected": len(truth["near"]),
    }


def _jsonl(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def slice_corpus(mb: float) -> Path:
    out = WORK / f"slice-{mb:g}mb.jsonl"
    size = 0
    with open(WORK / "corpus.jsonl") as src, open(out, "w") as dst:
        for line in src:
            dst.write(line)
            size += len(line)
            if size > mb * 1e6:
                break
    return out


# -- tools (each run as `python prep_bench.py --run NAME`) ---------------------------------
def run_lmfast(path: str, dedup_only: bool, tokenizer: str | None = None) -> dict[str, object]:
    os.environ.setdefault("LMFAST_HOME", str(WORK / "home"))
    from lmfast.data import PrepRequest, prep_dataset
    from lmfast.data.settings import FilterSettings

    filters = FilterSettings.preset("off" if dedup_only else "auto")
    t = time.perf_counter()
    result = prep_dataset(PrepRequest(inputs=[path], filters=filters, tokenizer=tokenizer))
    wall = time.perf_counter() - t
    r = result.report
    return {
        "seconds": wall,
        "mb": r.bytes_in / 1e6,
        "input_mb": Path(path).stat().st_size / 1e6,
        "mb_per_s": r.bytes_in / 1e6 / wall,
        "input_mb_per_s": Path(path).stat().st_size / 1e6 / wall,
        "kept": r.documents_out,
        "documents": r.documents_in,
        "dropped": r.dropped,
        "tokens": r.tokens,
        "tokenizer_path": r.tokenizer_path,
        "path": result.path,
    }


def run_ray(path: str) -> dict[str, object]:
    """The Ray engine on a local runtime with 2 worker CPUs: start-up, a cold run (workers
    import LMFast) and a warm one, on the same corpus as the local run."""
    os.environ.setdefault("LMFAST_HOME", str(WORK / "home"))
    import ray

    from lmfast.data import PrepRequest, prep_dataset

    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    init = time.perf_counter() - t
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        result = prep_dataset(PrepRequest(inputs=[path], engine="ray"))
        runs.append(time.perf_counter() - t)
    ray.shutdown()
    return {"init_seconds": init, "cold_seconds": runs[0], "warm_seconds": runs[1],
            "path": result.path}  # fmt: skip


def _kept_ids(folder: object) -> list[str]:
    with open(Path(str(folder)) / "data.jsonl") as f:
        return [json.loads(line)["id"] for line in f]


def scaled_corpus(times: int) -> Path:
    """The corpus `times` times over, each copy with fresh ids (so sizes, not contents, grow;
    the copies are exact duplicates of each other and dedup removes them)."""
    out = WORK / f"corpus-x{times}.jsonl"
    with open(WORK / "corpus.jsonl") as src, open(out, "w") as dst:
        lines = src.readlines()
        for k in range(times):
            for line in lines:
                rec = json.loads(line)
                rec["id"] = f"{rec['id']}-copy{k}"
                dst.write(json.dumps(rec) + "\n")
    return out


def run_datatrove(path: str) -> dict[str, object]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    base = WORK / "datatrove"
    import shutil

    shutil.rmtree(base, ignore_errors=True)
    src = Path(path)
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    t = time.perf_counter()
    steps = [
        [
            JsonlReader(str(src.parent), glob_pattern=src.name),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(),
            FineWebQualityFilter(),
            JsonlWriter(str(base / "filtered")),
        ],
        [
            JsonlReader(str(base / "filtered")),
            MinhashDedupSignature(output_folder=str(base / "sigs"), config=cfg),
        ],
        [
            MinhashDedupBuckets(
                input_folder=str(base / "sigs"), output_folder=str(base / "buckets"), config=cfg
            )
        ],
        [
            MinhashDedupCluster(
                input_folder=str(base / "buckets"), output_folder=str(base / "ids"), config=cfg
            )
        ],
        [
            JsonlReader(str(base / "filtered")),
            MinhashDedupFilter(input_folder=str(base / "ids")),
            JsonlWriter(str(base / "out")),
        ],
    ]
    for i, pipeline in enumerate(steps):
        tasks = 14 if i == 2 else 1
        LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=min(tasks, 2),
            logging_dir=str(base / f"logs{i}"),
        ).run()
    wall = time.perf_counter() - t
    mb = sum(len(r["text"].encode()) for r in _jsonl(src)) / 1e6
    return {"seconds": wall, "mb": mb, "mb_per_s": mb / wall}


def run_datasketch(path: str) -> dict[str, object]:
    from datasketch import MinHash, MinHashLSH

    docs = [r["text"] for r in _jsonl(path)]
    t = time.perf_counter()
    lsh = MinHashLSH(num_perm=112, params=(14, 8))
    removed = 0
    for i, text in enumerate(docs):
        words = [w.lower() for w in text.split()]
        grams = {" ".join(words[j : j + 5]).encode() for j in range(max(1, len(words) - 4))}
        m = MinHash(num_perm=112)
        m.update_batch(list(grams))
        if lsh.query(m):
            removed += 1
        else:
            lsh.insert(str(i), m)
    wall = time.perf_counter() - t
    mb = sum(len(d.encode()) for d in docs) / 1e6
    return {"seconds": wall, "mb": mb, "mb_per_s": mb / wall, "removed": removed}


def run_tokenize(path: str) -> dict[str, object]:
    """LMFast's Rust BPE vs `tokenizers` encode_batch on the same texts and cores, ids
    compared; then LMFast's whole tokenize-and-pack from the JSONL file."""
    os.environ.setdefault("LMFAST_HOME", str(WORK / "home"))
    from lmfast.data.fast_tokenizer import encode_text_file, fast_bpe
    from lmfast.data.tokenize import load_tokenizer, pack_flat

    tok = load_tokenizer("smollm2-135m-instruct")
    bpe, why = fast_bpe(tok)
    assert bpe is not None, why
    texts = [r["text"] for r in _jsonl(path)]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    best_raw = best_fast = best_ours = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        ref = tok.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        best_raw = min(best_raw, time.perf_counter() - t)
        t = time.perf_counter()
        ours = bpe.encode_batch(texts)
        best_fast = min(best_fast, time.perf_counter() - t)
        t = time.perf_counter()
        flat, lengths, which = encode_text_file(tok, Path(path), "text")
        pack_flat(flat, lengths, tok.eos_token_id, 2048, tok.eos_token_id)
        best_ours = min(best_ours, time.perf_counter() - t)
    same = sum(a.ids == b for a, b in zip(ref, ours, strict=True))
    return {
        "mb": mb,
        "documents": len(texts),
        "identical_documents": same,
        "raw_mb_per_s": mb / best_raw,
        "fast_bpe_mb_per_s": mb / best_fast,
        "lmfast_mb_per_s": mb / best_ours,
        "path": which,
    }


def quality(kept_path: str) -> dict[str, float]:
    """Recall: injected near duplicates whose pair did not survive whole (one was removed)."""

    truth = json.loads((WORK / "truth.json").read_text())
    with open(Path(kept_path, "data.jsonl")) as f:
        kept_ids = {json.loads(line)["id"] for line in f}  # records keep their ids
    pairs = truth["near"]
    caught = [(n, s) for n, s in pairs if not (n in kept_ids and s in kept_ids)]
    return {"near_recall": len(caught) / max(1, len(pairs)), "near_pairs": len(pairs)}


def _shingles(text: str) -> set[str]:
    w = [x.lower() for x in text.split()]
    return {" ".join(w[i : i + 5]) for i in range(max(1, len(w) - 4))}


def precision(run: dict[str, object]) -> dict[str, float]:
    """A near-duplicate removal is correct when the removed document's true 5-gram Jaccard
    with some other member of its cluster is >= 0.7 (clusters are transitive: A~B, B~C)."""
    import lmfast_native
    import numpy as np

    truth = json.loads((WORK / "truth.json").read_text())
    injected = {n for n, _ in truth["near"]} | {n for n, _ in truth["exact"]}
    recs = _jsonl(WORK / "corpus.jsonl")
    cfg = {
        "normalization": "nfc",
        "strip_markup": True,
        "minhash": {"num_perm": 112, "ngram": 5, "seed": 1},
    }
    out_texts, _, exact, sigs = lmfast_native.process_batch([r["text"] for r in recs], cfg)
    first: dict[int, int] = {}
    keep = []
    for i, h in enumerate(exact):
        if h not in first:
            first[h] = i
            keep.append(i)
    sig = np.frombuffer(sigs, dtype="<u4").reshape(-1, 112)[keep]
    reps = lmfast_native.lsh_clusters(sig.tobytes(), 112, 14, 8, 0.7)
    members: dict[int, list[int]] = {}
    for i, r in enumerate(reps):
        members.setdefault(r, []).append(keep[i])
    shingles: dict[int, set[str]] = {}

    def sh(d: int) -> set[str]:
        if d not in shingles:
            shingles[d] = _shingles(out_texts[d])
        return shingles[d]

    removed = [(keep[i], r) for i, r in enumerate(reps) if r != i]
    good = 0
    for d, rep in removed:
        group = members[rep]
        others = [m for m in group if m != d][:50]
        if any(_jaccard(sh(d), sh(m)) >= 0.7 for m in others):
            good += 1
    inj = sum(1 for d, _ in removed if recs[d]["id"] in injected)
    n = max(1, len(removed))
    return {
        "near_removed": len(removed),
        "near_precision_true_jaccard": good / n,
        "near_removed_injected_share": inj / n,
    }


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, len(a | b))


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM resets at exec; ru_maxrss would carry the
    parent's peak across fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sub(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=float, default=110)
    ap.add_argument("--peer-mb", type=float, default=8)
    ap.add_argument("--run")
    ap.add_argument("--path")
    ap.add_argument("--dedup-only", action="store_true")
    ap.add_argument("--tokenizer")
    args = ap.parse_args()
    if args.run:
        fn = {
            "lmfast": lambda: run_lmfast(args.path, args.dedup_only, args.tokenizer),
            "datatrove": lambda: run_datatrove(args.path),
            "datasketch": lambda: run_datasketch(args.path),
            "tokenize": lambda: run_tokenize(args.path),
            "ray": lambda: run_ray(args.path),
        }[args.run]
        result = fn()
        result["max_rss_mb"] = _peak_rss_mb()
        print(json.dumps(result))
        return

    corpus = build(args.mb)
    print("corpus", corpus, flush=True)
    full = _sub("--run", "lmfast", "--path", str(WORK / "corpus.jsonl"))
    print("lmfast full", {k: v for k, v in full.items() if k != "dropped"}, flush=True)
    # The first run of a GGUF's tokenizer converts it (about 5 s) and caches the result;
    # later runs load the cache. A fresh cache shows the first, a second run the usual.
    shutil.rmtree(WORK / "home" / "cache" / "gguf-tokenizers", ignore_errors=True)
    tok_args = ("--run", "lmfast", "--path", str(WORK / "corpus.jsonl"),
                "--tokenizer", "smollm2-135m-instruct")  # fmt: skip
    first_tok = _sub(*tok_args)
    with_tok = _sub(*tok_args)
    print("lmfast full + tokenizer", {k: v for k, v in with_tok.items() if k != "dropped"})
    on_ray = _sub("--run", "ray", "--path", str(WORK / "corpus.jsonl"))
    same_ids = _kept_ids(on_ray["path"]) == _kept_ids(full["path"])
    print("ray", on_ray, "same kept ids:", same_ids, flush=True)
    x4 = _sub("--run", "lmfast", "--path", str(scaled_corpus(4)))
    print("lmfast 4x", {k: v for k, v in x4.items() if k != "dropped"}, flush=True)
    dedup_only = _sub("--run", "lmfast", "--path", str(WORK / "corpus.jsonl"), "--dedup-only")
    q = {**quality(str(dedup_only["path"])), **precision(dedup_only)}
    print("quality", q, flush=True)
    piece = str(slice_corpus(args.peer_mb))
    ours_slice = _sub("--run", "lmfast", "--path", piece)
    ours_slice_dedup = _sub("--run", "lmfast", "--path", piece, "--dedup-only")
    dt = _sub("--run", "datatrove", "--path", piece)
    ds = _sub("--run", "datasketch", "--path", piece)
    print("slice", ours_slice["mb_per_s"], dt, ds, flush=True)
    tk = _sub("--run", "tokenize", "--path", str(slice_corpus(20)))
    print("tokenize", tk, flush=True)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    rows = [
        f"Prep benchmark, {date.today()}, {machine}; corpus: {corpus['text_mb']:.0f} MB of "
        f"/usr/share/doc text, {corpus['documents']} documents "
        f"({corpus['exact_injected']} exact + {corpus['near_injected']} near duplicates injected)",
        "",
        "| measure | LMFast | peer | ratio |",
        "|---|---|---|---|",
        f"| full pipeline, whole corpus (MB/s of text / of JSONL) | {full['mb_per_s']:.1f} / "
        f"{full['input_mb_per_s']:.1f} | | |",
        f"| full pipeline + tokenize and pack (SmolLM2), whole corpus (MB/s of text) | "
        f"{with_tok['mb_per_s']:.1f} ({with_tok['tokenizer_path']}; {with_tok['seconds']:.1f} s, "
        f"peak {with_tok['max_rss_mb']:.0f} MB; first use of the GGUF's tokenizer "
        f"{first_tok['seconds']:.1f} s) | | |",
        f"| 4x corpus ({x4['input_mb']:.0f} MB JSONL), MB/s of JSONL / peak memory (MB) | "
        f"{x4['input_mb_per_s']:.1f} / {x4['max_rss_mb']:.0f} | 1x: "
        f"{full['input_mb_per_s']:.1f} / {full['max_rss_mb']:.0f} | |",
        f"| Ray engine, 2 local workers, whole corpus (s; same kept ids: {same_ids}) | "
        f"{on_ray['cold_seconds']:.2f} cold, {on_ray['warm_seconds']:.2f} warm (+ "
        f"{on_ray['init_seconds']:.1f} start-up) | local engine {full['seconds']:.2f} | "
        f"{on_ray['warm_seconds'] / full['seconds']:.2f}x the time |",
        f"| full pipeline, {args.peer_mb:g} MB slice (MB/s) | {ours_slice['mb_per_s']:.1f} | "
        f"datatrove {dt['mb_per_s']:.2f} | {ours_slice['mb_per_s'] / dt['mb_per_s']:.0f}x |",
        f"| near dedup alone, {args.peer_mb:g} MB slice (MB/s) | "
        f"{ours_slice_dedup['mb_per_s']:.1f} | datasketch MinHashLSH {ds['mb_per_s']:.2f} | "
        f"{ours_slice_dedup['mb_per_s'] / ds['mb_per_s']:.0f}x |",
        f"| near-duplicate recall (injected pairs) | {q['near_recall']:.3f} | | |",
        f"| near-duplicate precision (true 5-gram Jaccard >= 0.7) | "
        f"{q['near_precision_true_jaccard']:.3f} | | |",
        f"| Rust BPE vs tokenizers encode_batch_fast, {tk['mb']:.0f} MB (MB/s; identical ids: "
        f"{tk['identical_documents']}/{tk['documents']} documents) | "
        f"{tk['fast_bpe_mb_per_s']:.1f} | {tk['raw_mb_per_s']:.1f} | "
        f"{tk['fast_bpe_mb_per_s'] / tk['raw_mb_per_s']:.2f}x |",
        f"| tokenize + pack from data.jsonl (MB/s) | {tk['lmfast_mb_per_s']:.1f} | "
        f"{tk['raw_mb_per_s']:.1f} | {tk['lmfast_mb_per_s'] / tk['raw_mb_per_s']:.2f}x |",
        f"| peak memory, whole corpus / slice (MB) | {full['max_rss_mb']:.0f} / "
        f"{ours_slice['max_rss_mb']:.0f} | datatrove {dt['max_rss_mb']:.0f}, datasketch "
        f"{ds['max_rss_mb']:.0f} | |",
    ]
    print("\n".join(rows))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "prep.json").write_text(
        json.dumps(
            {
                "corpus": corpus,
                "full": full,
                "full_with_tokenizer": with_tok,
                "x4": x4,
                "ray": {**on_ray, "same_kept_ids": same_ids},
                "quality": q,
                "slice": ours_slice,
                "slice_dedup": ours_slice_dedup,
                "datatrove": dt,
                "datasketch": ds,
                "tokenize": tk,
            },
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
