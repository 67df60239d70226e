"""LMFast's Rust byte-level BPE gives the same ids as Hugging Face `tokenizers`, for each
tokenizer style it accepts, and falls back (saying why) for the others."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import lmfast_native
import pytest
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

VARIED = [
    "Hello world! It's a test, isn't it? We'll see; THEY'RE here.",
    "héllo wörld naïve café, Ångström, Œuvre, straße, İstanbul",
    "日本語のテキスト、中文文本。한국어 텍스트 ไทย עברית العربية",
    "emoji 👩‍👩‍👧‍👦 and flags 🇫🇷🇯🇵, hearts ❤️ ✨ 🚀💡",
    "numbers 1234567 3.14159 1,000,000 2026-11-22 0x1F ½ ² ٣ 10%",
    "def f(x):\n    return x ** 2  # square\n\n\tif x:\n\t\tpass\r\n}",
    "   leading spaces, trailing spaces   ",
    "a  b   c    d\n\n\ne\r\n\r\nf \n g\u00a0h\u3000i\u2028j\u2003k",
    "!!!???...;;; --- ___ ===>>> <<<",
    "<|endoftext|>between<|im_start|>special tokens<|endoftext|>",
    "x" * 5000,
    "ab" * 3000 + " " + "αβγ" * 1000,
    " ",
    "",
    "\n",
    "tab\tseparated\tvalues\t1\t2",
    "Mixed: \uff21\uff22\uff23 \uff46\uff55\uff4c\uff4c-width, e\u0301 combining, \ufb01 ligature",
]


def _corpus() -> list[str]:
    rng = random.Random(0)
    words = " ".join(VARIED).split()
    out = list(VARIED)
    for _ in range(300):
        out.append(
            "".join(
                rng.choice(words) + rng.choice([" ", "  ", "\n", "\t", ", ", ". ", "\n\n"])
                for _ in range(rng.randint(1, 60))
            )
        )
    return out


def _trained(style: str) -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=style == "llama3"))
    if style == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    elif style == "digits":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3 if style == "llama3" else QWEN2), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        if style == "qwen2":
            tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>", "<|im_start|>"],
        show_progress=False,
    )
    tok.train_from_iterator(_corpus() * 3, trainer)
    return tok


@pytest.mark.parametrize("style", ["gpt2", "digits", "llama3", "qwen2"])
def test_same_ids_as_tokenizers(style: str) -> None:
    tok = _trained(style)
    bpe = lmfast_native.Bpe(tok.to_str())
    texts = _corpus()
    expected = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    got = bpe.encode_batch(texts)
    for text, e, g in zip(texts, expected, got, strict=True):
        assert g == e, f"{style}: {text[:60]!r}"


@pytest.mark.slow
def test_same_ids_as_the_embedded_smollm2_tokenizer(tmp_path: Path) -> None:
    from lmfast.data.fast_tokenizer import encode_text_file, fast_bpe
    from lmfast.data.tokenize import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    bpe, why = fast_bpe(tok)
    assert bpe is not None, why
    texts = _corpus()
    expected = [e.ids for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert bpe.encode_batch(texts) == expected
    # The file path (what prep uses) gives the same ids and per-record lengths.
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    flat, lengths, which = encode_text_file(tok, path, "text")
    assert which == "lmfast rust bpe"
    assert lengths.tolist() == [len(e) for e in expected]
    assert flat.tolist() == [t for e in expected for t in e]
    # The second load comes from the cached conversion and is the same tokenizer.
    from lmfast.data.tokenize import tokenizer_fingerprint
    from lmfast.home import lmfast_home

    cached = list((lmfast_home() / "cache" / "gguf-tokenizers").glob("*/tokenizer.json"))
    assert len(cached) == 1
    again = load_tokenizer("smollm2-135m-instruct")
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(tok)
    assert again.chat_template == tok.chat_template
    assert (again.eos_token_id, again.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)
    assert again.backend_tokenizer.encode(texts[3], add_special_tokens=False).ids == expected[3]


def test_unsupported_tokenizers_fall_back_and_say_why(tmp_path: Path) -> None:
    from lmfast.data.fast_tokenizer import encode_text_file

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.pre_tokenizer = pre_tokenizers.Whitespace()
    wp.train_from_iterator(
        _corpus(), trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[UNK]"])
    )
    with pytest.raises(ValueError, match="model"):
        lmfast_native.Bpe(wp.to_str())
    meta = _trained("gpt2")
    spec: dict[str, Any] = json.loads(meta.to_str())
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always"}
    with pytest.raises(ValueError, match="Metaspace"):
        lmfast_native.Bpe(json.dumps(spec))

    path = tmp_path / "data.jsonl"
    texts = VARIED[:5]
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    flat, _lengths, which = encode_text_file(wp, path, "text")
    assert which.startswith("tokenizers (") and "WordPiece" in which
    assert flat.tolist() == [t for e in wp.encode_batch(texts) for t in e.ids]
