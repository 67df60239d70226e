"""train_tokenizer: a byte-level BPE (GPT-2 / Llama-3 / SmolLM2 style) or a Unigram
(SentencePiece style) tokenizer trained with Hugging Face `tokenizers` on a local corpus.

The result is a tokenizer artifact: a `transformers` tokenizer folder with special tokens and
a ChatML chat template, which prep_dataset (`--tokenizer ID`) and pretraining
(`model.tokenizer: ID`) take like any model reference. The report compares its compression
(bytes per token) on held-out text with the embedded model's tokenizer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from lmfast.artifacts import ArtifactStore
from lmfast.config import DEFAULT_MODEL
from lmfast.data.readers import DataError
from lmfast.progress import ProgressFn, no_progress

# Byte-level BPE starts from all 256 byte symbols: a smaller vocabulary cannot hold them.
BYTE_ALPHABET = 256
EOS, IM_START, IM_END, PAD = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"
UNK = "<unk>"
# ChatML, the template SmolLM2 and Qwen2 use, so chat data renders the same way.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class TokenizerTrainRequest(BaseModel):
    """Train a tokenizer on local text."""

    corpus: list[str] = Field(
        min_length=1,
        description="Files, folders, globs (JSONL, Parquet, CSV, text) or dataset artifact ids.",
    )
    vocab_size: int = Field(
        8192, ge=1, le=1_000_000, description="Tokens in the vocabulary, special tokens included."
    )
    model: Literal["bpe", "unigram"] = Field(
        "bpe",
        description="'bpe': byte-level BPE, lossless on any text; 'unigram': SentencePiece-"
        "style Unigram over whitespace-marked pieces (unseen characters become <unk>).",
    )
    text_field: str | None = Field(None, description="Field holding the text (auto-detected).")
    min_frequency: int = Field(2, ge=1, description="BPE: merges seen fewer times are skipped.")
    special_tokens: list[str] = Field(
        default_factory=list, max_length=1000, description="More special tokens to reserve."
    )
    held_out: float = Field(
        0.05, ge=0.0, lt=0.5, description="Fraction of documents kept out to measure compression."
    )
    compare_with: str | None = Field(
        DEFAULT_MODEL, description="Model whose tokenizer the compression is compared with."
    )
    name: str | None = Field(None, max_length=200, description="Name for the artifact.")

    @model_validator(mode="after")
    def _absolute_paths(self) -> TokenizerTrainRequest:
        """Local files become absolute, so the job worker reads the same ones from any folder
        (globs and artifact ids stay as given)."""
        self.corpus = [
            str(Path(c).expanduser().resolve()) if Path(c).expanduser().exists() else c
            for c in self.corpus
        ]
        return self

    @model_validator(mode="after")
    def _fits(self) -> TokenizerTrainRequest:
        specials = len(self.specials())
        if self.model == "bpe" and self.vocab_size < BYTE_ALPHABET + specials + 1:
            raise ValueError(
                f"vocab_size={self.vocab_size} is smaller than the byte alphabet: a byte-level "
                f"BPE needs the {BYTE_ALPHABET} bytes plus {specials} special tokens plus at "
                f"least one merge; use at least {BYTE_ALPHABET + specials + 1}"
            )
        if self.model == "unigram" and self.vocab_size < specials + 2:
            raise ValueError(
                f"vocab_size={self.vocab_size} leaves no room beside {specials} special tokens"
            )
        return self

    def specials(self) -> list[str]:
        base = [EOS, IM_START, IM_END, PAD] + ([UNK] if self.model == "unigram" else [])
        return list(dict.fromkeys(base + self.special_tokens))


class TokenizerTrainResult(BaseModel):
    artifact_id: str
    path: str
    model: str
    vocab_size: int
    documents: int = Field(description="Documents trained on.")
    held_out_documents: int
    bytes_per_token: float | None = Field(
        description="Held-out UTF-8 bytes per token (higher compresses better)."
    )
    reference_bytes_per_token: float | None = Field(
        description="The same for compare_with's tokenizer."
    )
    reference: str | None
    seconds: float


def corpus_texts(corpus: list[str], text_field: str | None, store: ArtifactStore) -> Iterator[str]:
    """Every document's text: files through prep's readers, dataset artifacts' kept data."""
    from lmfast.data.fields import detect_format, record_text
    from lmfast.data.readers import ReadIssues, expand_inputs, read_records

    inputs: list[str] = []
    for ref in corpus:
        if store.exists(ref):
            art = store.get(ref)
            if art.manifest.kind != "dataset":
                raise DataError(f"corpus: {ref} is a {art.manifest.kind} artifact, not a dataset")
            inputs.append(str(art.path / "data.jsonl"))
        else:
            inputs.append(ref)
    files = expand_inputs(inputs)
    fmt = field = None
    for record in read_records(files, ReadIssues(), text_mode="paragraph"):
        if fmt is None:
            fmt, field = detect_format(record, text_field)
        text = record_text(record, fmt, field)
        if text and text.strip():
            yield text


def _build(model: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    if model == "bpe":
        tok = Tokenizer(models.BPE())
        # GPT-2's byte-level split with Llama-3-style digit grouping, no added prefix space
        # (SmolLM2 and Qwen2 do the same): decoding gives back the exact input.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        return tok
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    return tok


def _trainer(request: TokenizerTrainRequest) -> Any:
    from tokenizers import pre_tokenizers, trainers

    specials = request.specials()
    if request.model == "bpe":
        return trainers.BpeTrainer(
            vocab_size=request.vocab_size,
            min_frequency=request.min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    return trainers.UnigramTrainer(
        vocab_size=request.vocab_size,
        special_tokens=specials,
        unk_token=UNK,
        show_progress=False,
    )


def bytes_per_token(tokenizer: Any, texts: list[str]) -> float | None:
    if not texts:
        return None
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    tokens = sum(len(x) for x in ids)
    return round(sum(len(t.encode("utf-8")) for t in texts) / max(1, tokens), 3)


def train_tokenizer(
    request: TokenizerTrainRequest,
    progress: ProgressFn = no_progress,
    *,
    store: ArtifactStore | None = None,
) -> TokenizerTrainResult:
    """Train, save as a tokenizer artifact, and report held-out compression."""
    from transformers import PreTrainedTokenizerFast

    store = store or ArtifactStore()
    started = time.perf_counter()
    every = max(2, round(1 / request.held_out)) if request.held_out else 0
    held: list[str] = []
    counted = {"train": 0, "chars": 0}

    def training_texts() -> Iterator[str]:
        for i, text in enumerate(corpus_texts(request.corpus, request.text_field, store)):
            if every and i % every == every - 1:
                held.append(text)
                continue
            counted["train"] += 1
            counted["chars"] += len(text)
            if counted["train"] % 5000 == 0:
                progress(counted["train"], None, f"{counted['chars'] / 1e6:.1f} M characters read")
            yield text

    progress(0, None, f"training a {request.model} tokenizer of {request.vocab_size} tokens")
    tok = _build(request.model)
    tok.train_from_iterator(training_texts(), trainer=_trainer(request))
    if counted["train"] == 0:
        raise DataError(
            f"corpus: {request.corpus} holds no text to train on (every document was empty"
            + (" or held out)" if held else ")")
        )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK if request.model == "unigram" else None,
        additional_special_tokens=[IM_START, IM_END, *request.special_tokens],
        model_max_length=1_000_000,
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHATML
    mine = bytes_per_token(hf, held)
    reference = None
    if request.compare_with and held:
        from lmfast.data.tokenize import load_tokenizer

        progress(0, None, f"comparing with {request.compare_with}'s tokenizer")
        reference = bytes_per_token(load_tokenizer(request.compare_with), held)
    with store.create(
        "tokenizer",
        name=request.name,
        parents=[r for r in request.corpus if store.exists(r)],
        config=request.model_dump(mode="json"),
    ) as draft:
        hf.save_pretrained(str(draft.path))
        draft.metrics = {
            "vocab_size": float(len(hf)),
            "documents": float(counted["train"]),
            **({"bytes_per_token": mine} if mine is not None else {}),
            **({"reference_bytes_per_token": reference} if reference is not None else {}),
        }
        draft.extra = {"model": request.model, "compared_with": request.compare_with}
    assert draft.artifact is not None
    return TokenizerTrainResult(
        artifact_id=draft.artifact.id,
        path=str(draft.artifact.path),
        model=request.model,
        vocab_size=len(hf),
        documents=counted["train"],
        held_out_documents=len(held),
        bytes_per_token=mine,
        reference_bytes_per_token=reference,
        reference=request.compare_with if reference is not None else None,
        seconds=round(time.perf_counter() - started, 1),
    )
