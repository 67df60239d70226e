"""prep_dataset: filters, dedup, readers, bad input, resume, chat masks, packing, faces."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import lmfast_native
import numpy as np
import pytest

from lmfast.data import PrepRequest, prep_dataset
from lmfast.data.readers import DataError
from lmfast.data.settings import FilterSettings

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "have",
    "an",
    "they",
    "you",
    "were",
    "there",
    "been",
    "one",
    "all",
    "we",
    "their",
    "has",
    "would",
    "when",
    "if",
    "so",
    "will",
    "more",
    "river",
    "garden",
    "city",
    "council",
    "budget",
    "teacher",
    "winter",
    "summer",
    "library",
    "music",
    "story",
]


def prose(seed: int, sentences: int = 10) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        out.append(" ".join(rng.choice(WORDS) for _ in range(14)).capitalize() + ".")
    return " ".join(out[: sentences // 2]) + "\n" + " ".join(out[sentences // 2 :])


def write_jsonl(path: Path, records: list[Any], extra_lines: list[str] = ()) -> Path:  # type: ignore[assignment]
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")
    return path


def reasons(texts: list[str], filters: FilterSettings | None = None) -> list[str | None]:
    """Drop reasons under `filters` (default: the 'web' preset, every filter on)."""
    cfg = PrepRequest(inputs=["x"], filters=filters or FilterSettings()).filter_config(chat=False)
    return lmfast_native.process_batch(texts, cfg)[1]


# -- filters -------------------------------------------------------------------------------
def test_each_filter_names_its_reason() -> None:
    good = prose(1)
    cases = {
        "gopher_short_doc": "Only a few words here, not enough for a document.",
        "lorem_ipsum": good + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit sed.",
        "curly_bracket": good + "\nfunction main() { return the value of it; }",
        "gopher_too_many_hashes": good + " " + " ".join(f"#tag{i}" for i in range(40)),
        "bad_words": good + " Watch free porno videos here.",
        "too_long": good * 3000,
        "gopher_below_alpha_threshold": good + " " + " ".join(str(i) for i in range(200)),
        "empty": "   \n\t  ",
    }
    got = reasons([good, *cases.values()])
    assert got[0] is None
    assert dict(zip(cases, got[1:], strict=True)) == {k: k for k in cases}


def test_repetition_filter() -> None:
    only = FilterSettings(gopher_quality=None, c4=None, fineweb=None, bad_words=False)
    lines = "\n".join(["Buy cheap watches now at the best store in town."] * 30)
    paras = "\n\n".join([prose(5)] * 3)
    assert reasons([lines, paras, prose(6)], only) == ["dup_line_frac", "dup_para_frac", None]


def test_fineweb_and_script_filters() -> None:
    listing = "\n".join(f"Item number {i} of the list." for i in range(80))
    cyrillic = "Это длинный текст на русском языке о погоде и о жизни в большом городе. " * 10  # noqa: RUF001
    f = FilterSettings(
        gopher_quality=None,
        gopher_repetition=None,
        c4=None,
        script={"name": "latin", "min_fraction": 0.5},
    )
    assert reasons([listing, cyrillic, prose(2)], f) == [
        "short_line_ratio",
        "script_mismatch",
        None,
    ]


def test_c4_cleans_lines_and_thresholds_are_configurable() -> None:
    text = prose(3) + "\nHome | About | Contact\nAccept our cookie policy to continue."

    def cleaned(filters: FilterSettings) -> str:
        cfg = PrepRequest(inputs=["x"], filters=filters).filter_config(False)
        return lmfast_native.process_batch([text], cfg)[0][0]

    # FineWeb (the web preset) keeps lines without terminal punctuation, as datatrove does.
    web = cleaned(FilterSettings())
    assert "Home | About" in web and "cookie policy" not in web
    original_c4 = cleaned(FilterSettings(c4={"filter_no_terminal_punct": True}))
    assert (
        "Home | About" not in original_c4
        and "cookie policy" not in original_c4
        and original_c4.startswith(prose(3)[:30])
    )
    strict = FilterSettings(gopher_quality={"min_doc_words": 500})
    assert reasons([prose(3)], strict) == ["gopher_short_doc"]


# -- dedup --------------------------------------------------------------------------------
def _run(tmp: Path, records: list[Any], **kw: Any) -> Any:
    src = tmp / f"in-{random.random()}.jsonl"
    write_jsonl(src, records)
    return prep_dataset(PrepRequest(inputs=[str(src)], **kw))


def _kept(result: Any) -> list[str]:
    lines = Path(result.path, "data.jsonl").read_text().splitlines()
    field = result.report.text_field or "text"
    return [(r := json.loads(line)).get(field, r.get("text")) for line in lines]


def test_exact_and_near_duplicates(tmp_path: Path) -> None:
    base = [prose(i) for i in range(20)]
    exact = "  " + base[3].replace(" ", "   ") + "  "  # equal once normalized
    words = base[7].split()
    words[5] = "zebra"
    near = " ".join(words[:-2]) + " " + words[-1]  # one word changed, one removed
    unrelated = prose(999)
    result = _run(tmp_path, [{"text": t} for t in [*base, exact, near, unrelated]])
    kept = _kept(result)
    assert result.report.exact_duplicates == 1 and result.report.near_duplicates == 1
    assert result.report.duplicate_clusters == 2
    assert len(kept) == 21 and kept[:20] == [t for t in base] and kept[-1] == unrelated
    off = _run(
        tmp_path, [{"text": t} for t in [*base, exact, near]], dedup={"exact": False, "near": False}
    )
    assert off.report.documents_out == 22


def test_a_shared_system_prompt_does_not_make_chats_duplicates(tmp_path: Path) -> None:
    """Dedup compares what the conversations say, not the system prompt every row repeats
    (an agent's tool listing would otherwise make them all near duplicates)."""
    system = prose(1000) + " " + prose(1001)
    rows = [
        {"messages": [{"role": "system", "content": system},
                      {"role": "user", "content": f"What is {i} times {i + 7}?"},
                      {"role": "assistant", "content": f"It is {i * (i + 7)}."}]}
        for i in range(12)
    ]  # fmt: skip
    rows.append(rows[0])  # a real duplicate is still one
    result = _run(tmp_path, rows, format="messages")
    assert result.report.documents_out == 12 and result.report.exact_duplicates == 1
    assert result.report.near_duplicates == 0


# -- readers and bad input ----------------------------------------------------------------
def test_readers_all_formats(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import zstandard

    texts = [prose(i).replace("\n", " ") for i in range(6)]
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write(json.dumps({"content": texts[0]}) + "\n")
    (tmp_path / "b.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress((json.dumps({"content": texts[1]}) + "\n").encode())
    )
    pq.write_table(pa.table({"content": [texts[2]]}), tmp_path / "c.parquet")
    pcsv.write_csv(pa.table({"content": [texts[3]]}), tmp_path / "d.csv")
    (tmp_path / "e.txt").write_text(
        texts[4].replace("\n", " ") + "\n\n" + texts[5].replace("\n", " ")
    )
    result = prep_dataset(
        PrepRequest(
            inputs=[str(tmp_path)],
            text_files="blocks",
            text_field="content",
            filters=FilterSettings.minimal(),
        )
    )
    assert result.report.documents_in == 6  # the .txt file splits into its two blocks
    assert set(_kept(result)) == set(texts)


def test_hf_datasets_object() -> None:
    from datasets import Dataset

    ds = Dataset.from_dict({"text": [prose(i) for i in range(5)] + [prose(0)]})
    result = prep_dataset(PrepRequest(), dataset=ds)
    assert result.report.documents_out == 5 and result.report.exact_duplicates == 1


def test_bad_inputs_are_reported_not_fatal(tmp_path: Path) -> None:
    good = write_jsonl(
        tmp_path / "good.jsonl", [{"text": prose(i)} for i in range(3)], ["{not json", "[1, 2]"]
    )
    (tmp_path / "bin.jsonl").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.jsonl").write_bytes(
        json.dumps({"text": prose(9)}).encode().replace(b"the", b"th\xe9", 1) + b"\n"
    )
    (tmp_path / "empty.jsonl").write_text("")
    result = prep_dataset(PrepRequest(inputs=[str(tmp_path)]))
    issues = result.report.read_issues
    assert issues == {"malformed_json": 2, "binary_file": 1, "invalid_utf8": 1}
    assert any(f"{good}:4" in e for e in result.report.issue_examples)
    assert result.report.documents_out == 4
    with pytest.raises(DataError, match=r"good\.jsonl:4: malformed JSON"):
        prep_dataset(PrepRequest(inputs=[str(good)], strict=True))


def test_clear_errors_for_empty_and_unknown_fields(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no records found"):
        prep_dataset(PrepRequest(inputs=[str(empty)]))
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"body_html": "x", "lang": "en"}])
    with pytest.raises(DataError, match="fields present: body_html, lang"):
        prep_dataset(PrepRequest(inputs=[str(odd)]))
    with pytest.raises(DataError, match="'missing' is not in the records"):
        prep_dataset(PrepRequest(inputs=[str(odd)], text_field="missing"))
    with pytest.raises(DataError, match="matches no file"):
        prep_dataset(PrepRequest(inputs=[str(tmp_path / "*.parquet")]))


# -- resume and versions ------------------------------------------------------------------
def test_interrupted_run_resumes_by_shard(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "big.jsonl", [{"text": prose(i)} for i in range(50)])
    request = PrepRequest(inputs=[str(src)], shard_size=10)

    def crash_after_two_shards(
        step: float, total: float | None = None, message: str = "", **_: float
    ) -> None:
        if message.startswith("shard 2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prep_dataset(request, crash_after_two_shards)
    resumed = prep_dataset(request)
    assert resumed.report.shards == 5 and resumed.report.resumed_shards == 2
    fresh = prep_dataset(PrepRequest(inputs=[str(src)], shard_size=10, name="again"))
    assert _kept(resumed) == _kept(fresh)
    assert resumed.dataset_version == fresh.dataset_version
    other = prep_dataset(PrepRequest(inputs=[str(src)], dedup={"near": False}))
    assert other.dataset_version != fresh.dataset_version


def test_pii_scrubbing(tmp_path: Path) -> None:
    text = prose(4) + " Mail jane.doe@example.com or call +1 (555) 010-9999 from 10.0.0.12."
    result = _run(
        tmp_path,
        [{"text": text}],
        scrub={"emails": True, "ip_addresses": True, "phone_numbers": True},
    )
    kept = _kept(result)[0]
    assert "<EMAIL>" in kept and "<PHONE>" in kept and "<IP>" in kept
    assert "example.com" not in kept and "10.0.0.12" not in kept


# -- formatting, tokenizing, packing ------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from lmfast.data.tokenize import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.mark.slow
def test_chat_labels_token_by_token(tokenizer: Any) -> None:
    """Exactly the answers and one <|im_end|> per answer are trained; nothing else."""
    from lmfast.data.tokenize import IGNORE, encode_chat

    conv = [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "It is 4."},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "It is 6."},
    ]
    ids, labels = encode_chat(tokenizer, conv)
    assert len(ids) == len(labels)
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(conv, tokenize=False)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    spans, current = [], []
    for t, lab in zip(ids, labels, strict=True):
        if lab == IGNORE:
            if current:
                spans.append(current)
            current = []
        else:
            assert lab == t
            current.append(t)
    if current:
        spans.append(current)
    expected = [tokenizer("It is 4.", add_special_tokens=False)["input_ids"] + [end],
                tokenizer("It is 6.", add_special_tokens=False)["input_ids"] + [end]]  # fmt: skip
    assert spans == expected
    assert sum(1 for t, lab in zip(ids, labels, strict=True) if lab == end) == 2


@pytest.mark.slow
def test_end_of_turn_ids_are_the_vocabularys_own(tokenizer: Any) -> None:
    """Looked up token by token (not through the whole vocabulary per conversation): the same
    ids, and a token the vocabulary lacks is not mistaken for the unknown token."""
    from lmfast.data.tokenize import _EOT_TOKENS, end_of_turn_ids

    vocab = tokenizer.get_vocab()
    want = {tokenizer.eos_token_id} | {vocab[t] for t in _EOT_TOKENS if t in vocab}
    assert end_of_turn_ids(tokenizer) == want
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in want
    assert "<|eot_id|>" not in vocab and len(want) < len(_EOT_TOKENS)


@pytest.mark.slow
def test_chat_packing_keeps_conversations_whole(tmp_path: Path, tokenizer: Any) -> None:
    """Best-fit packing: no conversation is cut, no separator after <|im_end|>, padding is the
    pad token with no loss, and positions restart at each conversation."""
    from lmfast.data.tokenize import IGNORE, encode_chat, open_tokens

    records = [
        {"messages": [
            {"role": "user", "content": f"What is {i} + {i}? " + "Think. " * (i % 7)},
            {"role": "assistant", "content": f"{i} + {i} = {2 * i}."},
        ]}
        for i in range(60)
    ]  # fmt: skip
    result = _run(tmp_path, records, tokenizer="smollm2-135m-instruct", seq_len=256)
    assert result.report.documents_truncated == 0 and result.report.tokens_truncated == 0
    arr = open_tokens(Path(result.path, "tokens"))
    assert arr.input_ids.shape[1] == 256 and arr.input_ids.shape[0] < 60
    start = tokenizer("<|im_start|>", add_special_tokens=False)["input_ids"][0]
    pad = arr.index["pad_token_id"]
    convs = []
    for r in range(arr.input_ids.shape[0]):
        n = int(arr.lengths[r])
        assert (arr.labels[r, n:] == IGNORE).all() and (arr.input_ids[r, n:] == pad).all()
        starts = [j for j in range(n) if arr.positions[r, j] == 0]
        for a, b in zip(starts, [*starts[1:], n], strict=True):
            assert arr.input_ids[r, a] == start  # each conversation starts whole, at position 0
            assert list(arr.positions[r, a:b]) == list(range(b - a))
            convs.append((arr.input_ids[r, a:b].tolist(), arr.labels[r, a:b].tolist()))
    assert len(convs) == 60
    want = sorted(encode_chat(tokenizer, rec["messages"]) for rec in records)
    assert sorted(convs) == want  # every conversation, byte for byte, with its labels


@pytest.mark.slow
def test_no_pack_reports_truncation_and_masks_padding(tmp_path: Path, tokenizer: Any) -> None:
    from lmfast.data.tokenize import IGNORE, open_tokens

    texts = [prose(i, sentences=2 + 6 * (i % 2)) for i in range(10)]
    result = _run(
        tmp_path,
        [{"text": t} for t in texts],
        tokenizer="smollm2-135m-instruct",
        seq_len=64,
        pack=False,
        filters=FilterSettings.preset("off"),
    )
    r = result.report
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts]
    assert r.documents_truncated == sum(n > 64 for n in lengths) > 0
    assert r.tokens_truncated == sum(max(0, n - 64) for n in lengths)
    assert any("seq_len=64" in w for w in r.warnings)
    arr = open_tokens(Path(result.path, "tokens"))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    assert arr.index["pad_token_id"] == pad
    for row in range(10):
        n = int(arr.lengths[row])
        assert (arr.labels[row, :n] == arr.input_ids[row, :n]).all()
        assert (arr.labels[row, n:] == IGNORE).all() and (arr.input_ids[row, n:] == pad).all()


@pytest.mark.slow
def test_alpaca_to_packed_tokens_and_datasets_folder(tmp_path: Path) -> None:
    from datasets import load_from_disk

    from lmfast.data.tokenize import IGNORE, open_tokens

    records = [
        {"instruction": f"Say the number {i}.", "input": "", "output": f"The number {i}."}
        for i in range(40)
    ]
    result = _run(tmp_path, records, tokenizer="smollm2-135m-instruct", seq_len=64)
    assert result.report.format == "alpaca" and result.report.documents_out == 40
    folder = Path(result.path, "tokens")
    arr = open_tokens(folder)
    ids, labels = arr.input_ids, arr.labels
    assert ids.shape == (result.report.sequences, 64)
    assert (labels != IGNORE).any() and (labels == IGNORE).any()
    masked = np.where(labels != IGNORE, ids, -1)
    assert ((masked == ids) | (masked == -1)).all()
    ds = load_from_disk(str(folder / "hf"))
    assert len(ds) == ids.shape[0] and list(ds[0]["input_ids"]) == ids[0].tolist()
    assert list(ds[0]["position_ids"]) == arr.positions[0].tolist()


@pytest.mark.slow
def test_raw_text_packs_with_eos_between_documents(tmp_path: Path, tokenizer: Any) -> None:
    from lmfast.data.tokenize import open_tokens

    texts = [prose(i) for i in range(30)]
    result = _run(
        tmp_path, [{"text": t} for t in texts], tokenizer="smollm2-135m-instruct", seq_len=128
    )
    arr = open_tokens(Path(result.path, "tokens"))
    ids = arr.input_ids
    assert ids.shape[1] == 128 and (arr.labels[ids != arr.index["pad_token_id"]] >= 0).all()
    eos = tokenizer.eos_token_id
    total = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert int(arr.lengths.sum()) == result.report.tokens == total + 30
    assert int((ids == eos).sum()) >= 30
    assert result.report.documents_truncated == 0 and result.report.padding_tokens < 128


def test_everything_dropped_fails_with_reasons(tmp_path: Path) -> None:
    records = [{"text": "Too short."} for _ in range(5)]
    with pytest.raises(DataError, match=r"every one of the 5 documents was dropped.*too_short"):
        _run(tmp_path, records, filters=FilterSettings(length={"min_words": 50}))
    from lmfast.artifacts import ArtifactStore

    assert ArtifactStore().list() == []


def test_most_dropped_warns(tmp_path: Path) -> None:
    records = [{"text": prose(i)} for i in range(3)] + [{"text": "Hi."} for _ in range(7)]
    result = _run(
        tmp_path, records, filters=FilterSettings(length={"min_words": 5}), dedup={"exact": False}
    )
    assert result.report.documents_out == 3
    assert result.report.warnings and "70%" in result.report.warnings[0]
    assert "too_short" in result.report.warnings[0]


def test_most_of_the_text_dropped_warns_though_most_documents_are_kept(tmp_path: Path) -> None:
    """Three long pages dropped among eight short ones: 27 % of the documents but most of the
    text (pydoc pages lost to dup_line_frac did this unannounced). Shares are counted in
    characters, so accented text is not inflated by its UTF-8 bytes."""
    short = [{"text": prose(i).replace("a", "á")} for i in range(8)]
    long = [{"text": " ".join(prose(100 + i * 10 + j) for j in range(10))} for i in range(3)]
    result = _run(
        tmp_path,
        short + long,
        filters=FilterSettings(length={"max_words": 300}),
        dedup={"exact": False, "near": False},
    )
    r = result.report
    assert r.documents_out == 8 and r.dropped["too_long"] == 3
    assert r.characters_in == sum(len(d["text"]) for d in short + long) < r.bytes_in
    assert r.characters_out == sum(len(t) for t in _kept(result))
    share = 1 - r.characters_out / r.characters_in
    assert share > 0.7
    assert len(r.warnings) == 1 and f"{share:.0%} of the text" in r.warnings[0]
    assert "27% of the documents (3 of 11)" in r.warnings[0] and "too_long (3)" in r.warnings[0]


def test_default_filters_keep_ordinary_short_paragraphs(tmp_path: Path) -> None:
    """Four-sentence paragraphs of plain prose survive the default (auto) filters; the web
    preset (datatrove's FineWeb thresholds, C4 needs five sentences) still drops them."""
    records = [{"text": prose(i, sentences=4).replace("\n", " ")} for i in range(20)]
    kept = _run(tmp_path, records)
    assert kept.report.documents_out == 20 and not kept.report.warnings
    web = reasons([r["text"] for r in records], FilterSettings.preset("web"))
    assert set(web) == {"too_few_sentences"}


def test_manifest_parents_are_absolute_with_hashes(tmp_path: Path, monkeypatch: Any) -> None:
    import lmfast_native

    from lmfast.artifacts import ArtifactStore

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "rel.jsonl", [{"text": prose(1)}])
    result = prep_dataset(PrepRequest(inputs=["rel.jsonl"]))
    manifest = ArtifactStore().get(result.artifact_id).manifest
    path = str((tmp_path / "rel.jsonl").resolve())
    assert manifest.parents == [path]
    digest, size = lmfast_native.hash_files([path])[0]
    assert manifest.extra["inputs"] == [{"path": path, "xxh3": digest, "bytes": size}]
