"""prep_dataset keeps records whole and can account for every document: provenance, the
duplicates and drops tables, `lmfast prep --explain`, `--json`, and damaged input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from lmfast.data import PrepRequest, prep_dataset
from tests.test_prep import prose


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _corpus(tmp_path: Path) -> Path:
    """12 documents: 0-5 distinct; e0, e1 exact copies of d0 (e1 with different spacing);
    n0 a near copy of d1 (one word changed); s0 too short; m0 without text."""
    docs = {f"d{i}": prose(100 + i, sentences=30) for i in range(6)}
    near = docs["d1"].split(" ")
    near[20] = "zebra"
    rows: list[dict[str, Any]] = [
        {"id": k, "text": v, "url": f"https://example.org/{k}", "meta": {"n": i, "tags": ["a"]}}
        for i, (k, v) in enumerate(docs.items())
    ]
    rows += [
        {"id": "e0", "text": docs["d0"], "url": "https://mirror.example.org/d0"},
        {"id": "e1", "text": "  " + docs["d0"].replace(" ", "   ")},
        {"id": "n0", "text": " ".join(near)},
        {"id": "s0", "text": ""},
        {"id": "m0", "body": "no text field here"},
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_records_keep_fields_and_provenance_and_tables_account_for_everything(
    tmp_path: Path,
) -> None:
    src = _corpus(tmp_path)
    result = prep_dataset(PrepRequest(inputs=[str(src)]))
    out = Path(result.path)
    kept = _lines(out / "data.jsonl")
    assert [r["id"] for r in kept] == ["d0", "d1", "d2", "d3", "d4", "d5"]
    by_id = {r["id"]: r for r in kept}
    d3 = by_id["d3"]
    # Every field survives, in order, with provenance added.
    assert list(d3) == ["id", "text", "url", "meta", "_source"]
    assert d3["url"] == "https://example.org/d3" and d3["meta"] == {"n": 3, "tags": ["a"]}
    assert d3["_source"] == {"file": str(src), "line": 4}
    dups = {r["id"]: r for r in _lines(out / "duplicates.jsonl")}
    assert set(dups) == {"e0", "e1", "n0"}
    assert dups["e0"]["kind"] == "exact" and dups["e0"]["kept_id"] == "d0"
    assert dups["e1"]["kind"] == "exact" and dups["e1"]["kept_source"] == f"{src}:1"
    assert dups["n0"]["kind"] == "near" and dups["n0"]["kept_id"] == "d1"
    assert 0.7 <= dups["n0"]["similarity"] < 1.0
    drops = {r["id"]: r["reason"] for r in _lines(out / "drops.jsonl")}
    assert drops == {"s0": "empty", "m0": "no_text"}
    r = result.report
    assert r.documents_in == 11 and r.documents_out == 6
    assert r.duplicates_table == 3 and r.drops_table == 2
    assert r.documents_out + r.duplicates_table + r.drops_table == r.documents_in

    from lmfast.data.audit import explain_document as explain

    assert explain("n0").status == "duplicate" and explain("n0").kept_id == "d1"
    assert explain("s0").reason == "empty"
    kept_d2 = explain("d2", result.artifact_id)
    assert kept_d2.status == "kept" and by_id["d2"] == _lines(out / "data.jsonl")[kept_d2.line - 1]
    assert explain(f"{src}:12").status == "not_found"


def test_chat_records_keep_their_other_fields(tmp_path: Path) -> None:
    rows = [
        {
            "id": f"c{i}",
            "instruction": f"Name the colour of item {i}.",
            "input": "",
            "output": f"Item {i} is blue.",
            "source": "synthetic",
        }
        for i in range(5)
    ]
    src = tmp_path / "alpaca.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = prep_dataset(PrepRequest(inputs=[str(src)]))
    kept = _lines(Path(result.path, "data.jsonl"))
    assert len(kept) == 5
    assert set(kept[0]) == {"id", "source", "messages", "_source"}
    assert kept[0]["messages"][1] == {"role": "assistant", "content": "Item 0 is blue."}
    assert kept[2]["_source"] == {"file": str(src), "line": 3}


def test_damaged_corpus_completes_and_reports_each_problem(tmp_path: Path) -> None:
    good = [{"id": f"g{i}", "text": prose(200 + i)} for i in range(4)]
    huge = "word " * 10_000_000  # a 50 MB single document
    src = tmp_path / "damaged.jsonl"
    with open(src, "wb") as f:
        f.write(json.dumps(good[0]).encode() + b"\n")
        f.write(b'{"id": "broken", "text": "unterminated\n')
        f.write(json.dumps(good[1]).encode() + b"\n")
        f.write(
            b'{"id": "latin1", "text": "caf\xe9 ' + json.dumps(prose(7))[1:-1].encode() + b'"}\n'
        )
        f.write(b"[1, 2, 3]\n")
        f.write(json.dumps({"id": "huge", "text": huge}).encode() + b"\n")
        f.write(json.dumps(good[2]).encode() + b"\n")
        f.write(json.dumps(good[3]).encode())  # no final newline
    result = prep_dataset(PrepRequest(inputs=[str(src)], shard_bytes=4096))
    r = result.report
    assert r.read_issues == {"malformed_json": 2, "invalid_utf8": 1}
    assert any(f"{src}:2:" in e for e in r.issue_examples)
    assert any(f"{src}:4:" in e and "invalid_utf8" in e for e in r.issue_examples)
    assert r.dropped.get("too_long") == 1
    kept = {d["id"]: d for d in _lines(Path(result.path, "data.jsonl"))}
    assert set(kept) == {"g0", "g1", "g2", "g3", "latin1"}
    assert kept["latin1"]["text"].startswith("caf\ufffd ")
    assert kept["g3"]["_source"]["line"] == 8
    drops = _lines(Path(result.path, "drops.jsonl"))
    assert drops == [{"id": "huge", "source": f"{src}:6", "reason": "too_long"}]


def test_cli_json_and_explain(tmp_path: Path) -> None:
    src = _corpus(tmp_path)
    cli = [sys.executable, "-m", "lmfast"]
    out = subprocess.run(
        [*cli, "prep", str(src), "--json"], capture_output=True, text=True, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["report"]["documents_out"] == 6 and result["artifact_id"].startswith("dataset-")
    explained = subprocess.run(
        [*cli, "prep", "--explain", "e1", "--json"], capture_output=True, text=True
    )
    assert explained.returncode == 0, explained.stderr
    e = json.loads(explained.stdout)
    assert e["status"] == "duplicate" and e["kind"] == "exact" and e["kept_id"] == "d0"
    said = subprocess.run([*cli, "explain", "n0"], capture_output=True, text=True)
    assert said.returncode == 0, said.stderr
    assert "near duplicate of d1" in " ".join(said.stdout.split())
    dropped = subprocess.run([*cli, "explain", "s0", "--json"], capture_output=True, text=True)
    assert json.loads(dropped.stdout)["reason"] == "empty"
    missing = subprocess.run([*cli, "prep", "--explain", "nope"], capture_output=True, text=True)
    assert missing.returncode == 1 and "not in" in missing.stdout
    bare = subprocess.run([*cli, "prep"], capture_output=True, text=True)
    assert bare.returncode == 2 and "INPUTS" in bare.stdout + bare.stderr


def test_mcp_explain_document(tmp_path: Path) -> None:
    import anyio
    from lmfast.mcp_server import build_server
    from mcp import Client

    result = prep_dataset(PrepRequest(inputs=[str(_corpus(tmp_path))]))

    async def ask() -> tuple[Any, Any, Any]:
        async with Client(build_server()) as client:
            dup = await client.call_tool("explain_document", {"doc_id": "e0"})
            kept = await client.call_tool(
                "explain_document", {"doc_id": "d4", "dataset": result.artifact_id}
            )
            bad = await client.call_tool(
                "explain_document", {"doc_id": "d4", "dataset": "dataset-nope"}
            )
            return dup, kept, bad

    dup, kept, bad = anyio.run(ask)
    assert not dup.is_error and dup.structured_content["kept_id"] == "d0"
    assert dup.structured_content["kind"] == "exact"
    assert kept.structured_content["status"] == "kept" and kept.structured_content["line"] == 5
    assert bad.is_error and "dataset-nope" in bad.content[0].text
