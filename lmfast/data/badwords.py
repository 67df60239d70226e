"""The bad-words list: a shipped English default or a word-per-line file."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from lmfast.data.readers import DataError


@lru_cache(maxsize=8)
def _read(path: str) -> tuple[str, ...]:
    text = Path(path).read_text(encoding="utf-8")
    return tuple(
        w.strip().lower() for w in text.splitlines() if w.strip() and not w.startswith("#")
    )


def load_bad_words(setting: bool | str) -> list[str] | None:
    """None when off; the default English list when True; a file's words otherwise."""
    if setting is False:
        return None
    if setting is True:
        return list(_read(str(resources.files("lmfast.data") / "badwords_en.txt")))
    if not Path(setting).is_file():
        raise DataError(f"filters.bad_words: {setting!r} is not a file (one word per line)")
    return list(_read(str(setting)))
