"""prep_dataset settings. Filter defaults are datatrove's published FineWeb thresholds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lmfast.data.fields import Format


class _S(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LengthSettings(_S):
    """Drop documents outside these sizes (reasons too_short / too_long)."""

    min_chars: int = Field(1, ge=0, description="Fewest characters.")
    max_chars: int = Field(1_000_000, ge=1, description="Most characters (huge documents).")
    min_words: int = Field(1, ge=0, description="Fewest words.")
    max_words: int = Field(200_000, ge=1, description="Most words.")


class GopherQualitySettings(_S):
    """Gopher quality rules (Rae et al. 2021, table A1)."""

    min_doc_words: int = Field(50, ge=0, description="Fewest non-symbol words.")
    max_doc_words: int = Field(100_000, ge=1, description="Most non-symbol words.")
    min_avg_word_length: float = Field(3, ge=0, description="Shortest mean word length.")
    max_avg_word_length: float = Field(10, ge=0, description="Longest mean word length.")
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="# or ellipsis per word.")
    max_bullet_lines_ratio: float = Field(0.9, ge=0, le=1, description="Lines starting bullets.")
    max_ellipsis_lines_ratio: float = Field(0.3, ge=0, le=1, description="Lines ending '...'.")
    min_alpha_words_ratio: float = Field(0.8, ge=0, le=1, description="Words with a letter.")
    min_stop_words: int = Field(2, ge=0, description="Fewest English stop words.")


class GopherRepetitionSettings(_S):
    """Gopher repetition rules: duplicated lines, paragraphs and n-grams."""

    dup_line_frac: float = Field(0.3, ge=0, le=1, description="Duplicate lines / lines.")
    dup_para_frac: float = Field(0.3, ge=0, le=1, description="Duplicate paragraphs / all.")
    dup_line_char_frac: float = Field(0.2, ge=0, le=1, description="Chars in duplicate lines.")
    dup_para_char_frac: float = Field(0.2, ge=0, le=1, description="Chars in duplicate paras.")
    top_n_grams: list[tuple[int, float]] = Field(
        default_factory=lambda: [(2, 0.2), (3, 0.18), (4, 0.16)],
        description="(n, max char fraction of the most frequent n-gram).",
    )
    dup_n_grams: list[tuple[int, float]] = Field(
        default_factory=lambda: [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)],
        description="(n, max char fraction covered by repeated n-grams).",
    )


class C4Settings(_S):
    """C4 rules: line cleaning, lorem ipsum, javascript, curly braces, too few sentences."""

    min_sentences: int = Field(5, ge=0, description="Fewest sentences left after cleaning.")
    min_words_per_line: int = Field(3, ge=0, description="Shorter lines are dropped.")
    max_word_length: int = Field(1000, ge=1, description="Lines with longer words dropped.")
    filter_no_terminal_punct: bool = Field(
        False,
        description="Drop lines not ending in terminal punctuation (original C4; off in "
        "FineWeb, as in datatrove's FineWeb pipeline).",
    )


class FineWebSettings(_S):
    """FineWeb rules (Penedo et al. 2024)."""

    line_punct_thr: float = Field(0.12, ge=0, le=1, description="Min lines ending punctuation.")
    short_line_thr: float = Field(0.67, ge=0, le=1, description="Max fraction of short lines.")
    short_line_length: int = Field(30, ge=0, description="Short means at most this many chars.")
    char_duplicates_ratio: float = Field(0.01, ge=0, le=1, description="Chars in dup lines.")
    new_line_ratio: float = Field(0.3, ge=0, description="Max newlines per word (lists).")


class ScriptSettings(_S):
    """A language/script hint: drop documents mostly in another script."""

    name: Literal["latin", "cyrillic", "greek", "arabic", "cjk"] = "latin"
    min_fraction: float = Field(0.5, ge=0, le=1, description="Letters in that script.")


class FilterSettings(_S):
    """Quality filters; a section set to null is off."""

    length: LengthSettings | None = Field(default_factory=LengthSettings)
    gopher_quality: GopherQualitySettings | None = Field(default_factory=GopherQualitySettings)
    gopher_repetition: GopherRepetitionSettings | None = Field(
        default_factory=GopherRepetitionSettings
    )
    c4: C4Settings | None = Field(default_factory=C4Settings)
    fineweb: FineWebSettings | None = Field(default_factory=FineWebSettings)
    bad_words: bool | str = Field(
        True,
        description="Drop documents with listed words: true (English default list), "
        "a path to a word-per-line file, or false.",
    )
    script: ScriptSettings | None = Field(None, description="Script hint (off by default).")

    @classmethod
    def minimal(cls) -> FilterSettings:
        """For instruction and chat data: only length and bad words."""
        return cls(gopher_quality=None, gopher_repetition=None, c4=None, fineweb=None)

    @classmethod
    def document(cls) -> FilterSettings:
        """For raw text that is not a web crawl (books, docs, notes, short paragraphs):
        length, repetition (boilerplate and spam) and bad words. The sentence-count, line
        and stop-word rules are tuned for web pages and drop ordinary short documents."""
        return cls(gopher_quality=None, c4=None, fineweb=None)

    @classmethod
    def preset(cls, name: str) -> FilterSettings | None:
        """'web' (datatrove's FineWeb filters), 'document', 'minimal', 'off', or 'auto'
        (None: 'document' for raw text, 'minimal' for chat and instruction data)."""
        presets = {
            "auto": None,
            "web": cls(),
            "document": cls.document(),
            "minimal": cls.minimal(),
            "off": cls(
                length=None,
                gopher_quality=None,
                gopher_repetition=None,
                c4=None,
                fineweb=None,
                bad_words=False,
            ),
        }
        if name not in presets:
            raise ValueError(f"filters={name!r} is not one of {', '.join(presets)}")
        return presets[name]


class DedupSettings(_S):
    """Exact (xxh3 of the normalized text) and near (MinHash LSH) deduplication."""

    exact: bool = Field(True, description="Drop exact duplicates (after normalization).")
    near: bool = Field(True, description="Drop near duplicates (MinHash LSH).")
    num_perm: int = Field(112, ge=8, le=1024, description="MinHash permutations.")
    bands: int = Field(14, ge=1, description="LSH bands.")
    rows: int = Field(8, ge=1, description="Rows per band (bands x rows <= num_perm).")
    ngram: int = Field(5, ge=1, le=32, description="Words per shingle.")
    seed: int = Field(1, ge=0, description="Permutation seed.")
    threshold: float = Field(
        0.7,
        ge=0,
        le=1,
        description="Estimated Jaccard a bucket collision must reach to count "
        "as a near duplicate (0: every collision counts, as in datatrove).",
    )

    @model_validator(mode="after")
    def _fits(self) -> DedupSettings:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands x rows = {self.bands * self.rows} exceeds num_perm={self.num_perm}"
            )
        return self


class ScrubSettings(_S):
    """Regex scrubbing of personal data in training text."""

    emails: bool = Field(False, description="Replace e-mail addresses with <EMAIL>.")
    ip_addresses: bool = Field(False, description="Replace IPv4 addresses with <IP>.")
    phone_numbers: bool = Field(False, description="Replace phone numbers with <PHONE>.")


class PrepRequest(_S):
    """Clean, filter, deduplicate, format, tokenize and pack a dataset."""

    inputs: list[str] = Field(default_factory=list, description="Files, folders or globs.")
    format: Format = Field("auto", description="Record layout; auto detects it.")
    text_field: str | None = Field(None, description="Field with raw text (else detected).")
    text_files: Literal["file", "blocks"] = Field(
        "file", description="Plain-text files: one document per file or per blank-line block."
    )
    normalization: Literal["nfc", "nfkc", "none"] = Field("nfc", description="Unicode form.")
    strip_markup: bool = Field(True, description="Remove HTML tags and entities.")
    filters: FilterSettings | None = Field(
        None,
        description="Quality filters; None means the 'document' preset for raw text "
        "(length, repetition, bad words) and 'minimal' for chat / instruction data.",
    )
    dedup: DedupSettings = Field(default_factory=DedupSettings, description="Deduplication.")
    scrub: ScrubSettings = Field(default_factory=ScrubSettings, description="PII scrubbing.")
    tokenizer: str | None = Field(
        None, description="Model whose tokenizer (and chat template) to use; None: no tokens."
    )
    seq_len: int = Field(2048, ge=8, le=131072, description="Tokens per packed sequence.")
    pack: bool = Field(True, description="Pack documents into seq_len blocks.")
    shard_size: int = Field(20_000, ge=1, description="Most documents per resumable shard.")
    shard_bytes: int = Field(
        16_000_000, ge=1_000, description="Most input bytes per JSONL shard (memory bound)."
    )
    id_field: str = Field(
        "id", description="Field naming each record in the audit tables (else file:line)."
    )
    strict: bool = Field(False, description="Stop at the first malformed record.")
    engine: Literal["local", "ray"] = Field(
        "local",
        description="Where shards and near dedup run: this machine, or Ray (needs "
        "lmfast[distributed]; the artifact is the same).",
    )
    ray_address: str | None = Field(
        None,
        max_length=500,
        description="Ray cluster to join with engine='ray' (e.g. ray://head:10001 or auto); "
        "None starts a local Ray runtime.",
    )
    warn_drop_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Warn (in the report and the terminal) when filters and dedup drop more "
        "than this share of the documents or of the text. A run that keeps nothing always "
        "fails.",
    )
    name: str | None = Field(None, max_length=200, description="Name for the dataset artifact.")

    def filter_config(self, chat: bool) -> dict[str, Any]:
        """The settings the Rust core takes."""
        from lmfast.data.badwords import load_bad_words

        filters = self.filters or (FilterSettings.minimal() if chat else FilterSettings.document())
        cfg: dict[str, Any] = {
            "normalization": self.normalization,
            "strip_markup": self.strip_markup,
            **{
                k: (getattr(filters, k).model_dump() if getattr(filters, k) else None)
                for k in (
                    "length",
                    "gopher_quality",
                    "gopher_repetition",
                    "c4",
                    "fineweb",
                    "script",
                )
            },
            "bad_words": load_bad_words(filters.bad_words),
        }
        if self.dedup.near:
            cfg["minhash"] = {
                "num_perm": self.dedup.num_perm,
                "ngram": self.dedup.ngram,
                "seed": self.dedup.seed,
            }
        return cfg
