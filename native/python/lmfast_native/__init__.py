"""LMFast's private Rust core. Import from `lmfast`, not from here: this API may change."""

from lmfast_native._lmfast_native import (
    Bpe,
    __version__,
    band_keys,
    hash_bytes,
    hash_files,
    hash_texts,
    lsh_clusters,
    process_batch,
    process_jsonl,
)

__all__ = [
    "Bpe",
    "__version__",
    "band_keys",
    "hash_bytes",
    "hash_files",
    "hash_texts",
    "lsh_clusters",
    "process_batch",
    "process_jsonl",
]
