from os import PathLike

__version__: str

def hash_bytes(data: bytes) -> str:
    """128-bit xxh3 of `data` as 32 lower-case hex characters."""

def hash_texts(texts: list[str]) -> list[int]:
    """64-bit xxh3 of each text's UTF-8 bytes, computed in parallel with the GIL released."""

def hash_files(paths: list[str | PathLike[str]]) -> list[tuple[str, int]]:
    """(hex digest, size in bytes) of each file, hashed in parallel; OSError names a bad path."""

def process_batch(
    texts: list[str], config: dict[str, object]
) -> tuple[list[str], list[str | None], list[int], bytes]:
    """Normalize, filter, exact-hash and MinHash-sign documents in parallel.

    Returns (final texts, drop reasons (None = kept), xxh3-64 of each kept text,
    signatures as little-endian u32, row-major by document)."""

def band_keys(signatures: bytes, num_perm: int, bands: int, rows: int) -> bytes:
    """LSH band keys (little-endian u64, `bands` per document, row-major): the buckets
    `lsh_clusters` groups on, for an engine that groups documents elsewhere."""

def lsh_clusters(
    signatures: bytes, num_perm: int, bands: int, rows: int, threshold: float = 0.0
) -> list[int]:
    """Each document's cluster representative: the lowest index it shares an LSH band bucket
    with, counting only pairs whose signatures agree on >= threshold of positions."""

def process_jsonl(
    buf: bytes,
    first_line: int,
    file: str,
    text_field: str,
    id_field: str,
    config: dict[str, object],
) -> dict[str, object]:
    """Parse, clean, filter, hash and sign whole JSONL lines in parallel without a Python
    string per document. Keys: records (kept records, every field kept, text cleaned,
    `_source` added, newline-terminated), kept_ids, kept_lines, exact (u64 LE), chars
    (u32 LE), signatures (u32 LE, row-major), drop_ids, drop_lines, drop_reasons, issues
    ((kind, line, message)), documents, text_bytes, text_chars."""

class Bpe:
    """Byte-level BPE with the same ids as Hugging Face `tokenizers` for GPT-2 / SmolLM2,
    Llama-3 and Qwen2 style tokenizer.json files; ValueError names what is unsupported."""

    def __init__(self, tokenizer_json: str) -> None: ...
    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text, in parallel (add_special_tokens=False)."""
    def encode_jsonl(self, path: str | PathLike[str], field: str) -> tuple[bytes, bytes]:
        """(ids as u32 LE, token count per non-blank line as u32 LE) of a JSONL text field."""
