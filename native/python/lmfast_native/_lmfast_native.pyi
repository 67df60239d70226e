from os import PathLike

__version__: str

def hash_bytes(data: bytes) -> str:
    """128-bit xxh3 of `data` as 32 lower-case hex characters."""

def hash_texts(texts: list[str]) -> list[int]:
    """64-bit xxh3 of each text's UTF-8 bytes, computed in parallel with the GIL released."""

def hash_files(paths: list[str | PathLike[str]]) -> list[tuple[str, int]]:
    """(hex digest, size in bytes) of each file, hashed in parallel; OSError names a bad path."""
