"""The tokenizer half of a GGUF file: vocabulary, merges, special tokens and chat template,
read from a Hugging Face folder, and the llama.cpp pre-tokenizer that reproduces it.

llama.cpp's own converter recognises a pre-tokenizer by hashing one tokenization against a
table it ships; that table is not in the `gguf` package. LMFast instead tries llama.cpp's
pre-tokenizers on a check text and keeps the first whose token ids equal the Hugging Face
tokenizer's, so the choice is verified rather than looked up, and a tokenizer llama.cpp
cannot reproduce is refused instead of silently mis-tokenizing."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfast.errors import LMFastError


class TokenizerExportError(LMFastError):
    """The tokenizer cannot be written to GGUF so that llama.cpp reproduces it."""


# llama.cpp pre-tokenizer names for byte-level BPE ("gpt2") vocabularies, most common first.
GPT2_PRE_TOKENIZERS = (
    "smollm", "llama-bpe", "qwen2", "gpt-2", "default", "starcoder", "deepseek-llm",
    "deepseek-coder", "falcon", "mpt", "olmo", "dbrx", "refact", "command-r", "stablelm2",
    "gpt-4o", "tekken", "phi-2", "jais", "bloom",
)  # fmt: skip

# Digits, contractions, runs of spaces and newlines, code, accents, CJK, emoji and the
# ChatML markers: where pre-tokenizers differ.
CHECK_TEXT = (
    "Hello World!  How's it going? I'm fine, they'll see; we've 3 cats & 12345 dogs.\n\n\n"
    "   indented\tline\r\n def f(x):\n    return x**2 + 1_000_000.5  # ok\n"
    "Ünïcödé café naïve — “quotes” ‘single’ … 3.14159 1,234,567 0xFF\n"  # noqa: RUF001 (typographic quotes on purpose)
    "中文字符 日本語のテキスト 한국어 текст на русском عربى 🚀🔥👍🏽\n"
    "<|im_start|>user\nWhat is 7 * 8?<|im_end|>\n<|im_start|>assistant\n56<|im_end|>\n"
    "    \n\n \n   x  y   z    \u00a0nbsp 'll 's 've 're 'd 'm 't  AAA aaa ...!!! ???"
)


@dataclass
class GGUFVocab:
    """Everything the converter writes under `tokenizer.*`."""

    model: str  # "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE)
    tokens: list[bytes]
    scores: list[float]
    types: list[int]
    pre: str | None = None
    special: Any = None  # gguf.SpecialVocab: ids, add_bos/add_eos, merges, chat template
    extra: dict[str, Any] = field(default_factory=dict)

    def add_to(self, writer: Any) -> None:
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        if self.model == "llama":
            writer.add_add_space_prefix(bool(self.extra.get("add_space_prefix", False)))
        self.special.add_to_gguf(writer, quiet=True)


def read_vocab(folder: Path, vocab_size: int) -> GGUFVocab:
    """Read the tokenizer of a Hugging Face folder (tokenizer.json required)."""
    import gguf

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise TokenizerExportError(
            f"{folder} has no tokenizer.json: GGUF export needs the fast tokenizer file"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model", {})
    decoder = (data.get("decoder") or {}).get("type")
    if model.get("type") == "BPE" and model.get("byte_fallback"):
        vocab = gguf.LlamaHfVocab(folder)
        tokens, scores, types = [], [], []
        for text, score, kind in vocab.all_tokens():
            tokens.append(text)
            scores.append(score)
            types.append(int(kind))
        special = gguf.SpecialVocab(folder, load_merges=False, n_vocab=len(tokens))
        out = GGUFVocab("llama", tokens, scores, types, special=special)
        out.extra["add_space_prefix"] = _adds_space_prefix(data)
    elif model.get("type") == "BPE" and decoder == "ByteLevel":
        tokens, types = _bpe_tokens(data)
        special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
        out = GGUFVocab("gpt2", tokens, [0.0] * len(tokens), types, special=special)
    else:
        raise TokenizerExportError(
            f"tokenizer model {model.get('type')!r} (decoder {decoder!r}) is not supported for "
            "GGUF export; supported: byte-level BPE (SmolLM2, Qwen2, Llama 3) and "
            "SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral)"
        )
    # llama.cpp sizes the output layer from the vocabulary: pad like its converter does.
    while len(out.tokens) < vocab_size:
        out.tokens.append(f"[PAD{len(out.tokens)}]".encode())
        out.scores.append(-1000.0)
        out.types.append(int(gguf.TokenType.UNUSED))
    if len(out.tokens) > vocab_size:
        raise TokenizerExportError(
            f"the tokenizer has {len(out.tokens)} tokens but the model's vocab_size is "
            f"{vocab_size}: resize the embeddings before exporting"
        )
    return out


def _bpe_tokens(data: dict[str, Any]) -> tuple[list[bytes], list[int]]:
    import gguf

    by_id: dict[int, tuple[str, int]] = {
        i: (t, int(gguf.TokenType.NORMAL)) for t, i in data["model"]["vocab"].items()
    }
    for added in data.get("added_tokens", []):
        # Special tokens are parsed whole by llama.cpp only when typed CONTROL.
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], int(kind))
    size = max(by_id) + 1
    tokens, types = [], []
    for i in range(size):
        text, kind = by_id.get(i, (f"[PAD{i}]", int(gguf.TokenType.UNUSED)))
        tokens.append(text.encode("utf-8"))
        types.append(kind)
    return tokens, types


def _adds_space_prefix(data: dict[str, Any]) -> bool:
    normalizer = json.dumps(data.get("normalizer") or {})
    pre = json.dumps(data.get("pre_tokenizer") or {})
    return '"Prepend"' in normalizer or '"prepend_scheme": "always"' in pre


def choose_pre_tokenizer(
    folder: Path, vocab: GGUFVocab, write_header: Any, text: str = CHECK_TEXT
) -> str | None:
    """Set `vocab.pre` to the first llama.cpp pre-tokenizer whose ids equal Hugging Face's on
    `text`. `write_header(path, vocab)` writes a tensor-less GGUF to try one."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    expected = tokenizer.encode(text, add_special_tokens=False)
    candidates: tuple[str | None, ...] = (None,) if vocab.model == "llama" else GPT2_PRE_TOKENIZERS
    with tempfile.TemporaryDirectory(prefix="lmfast-vocab-") as tmp:
        for pre in candidates:
            vocab.pre = pre
            path = Path(tmp) / f"{pre}.gguf"
            write_header(path, vocab)
            got = _llama_tokenize(path, text)
            if got == expected:
                return pre
            if vocab.model == "llama":
                raise TokenizerExportError(
                    "llama.cpp tokenizes the check text differently from the Hugging Face "
                    f"tokenizer (first difference at token {_first_difference(got, expected)})"
                )
    raise TokenizerExportError(
        "no llama.cpp pre-tokenizer reproduces this tokenizer (tried "
        f"{', '.join(GPT2_PRE_TOKENIZERS)}); llama.cpp would tokenize its text differently"
    )


def _first_difference(a: list[int], b: list[int]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def _llama_tokenize(path: Path, text: str) -> list[int] | None:
    from llama_cpp import Llama

    from lmfast.export.llama_quantize import quiet_llama
    from lmfast.inference.selfcheck import load_known_backend

    load_known_backend()
    try:
        with quiet_llama():
            llm = Llama(str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError):
        return None  # llama.cpp does not know this pre-tokenizer name
    try:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    finally:
        llm.close()
