"""The Ray engine (`engine="ray"`) writes the artifact the local engine writes: same kept
ids, same duplicates and drops tables, same dataset version. Runs on a local Ray runtime on
loopback with 2 worker CPUs."""

from __future__ import annotations

import gzip
import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lmfast.data import PrepRequest, prep_dataset
from lmfast.data.readers import DataError
from tests.test_prep import prose


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="ERROR",
    )
    yield
    ray.shutdown()


def _rows(n_distinct: int = 120) -> list[dict[str, Any]]:
    """Distinct documents, exact copies, near copies (a few words changed), empty ones."""
    rng = random.Random(5)
    docs = [prose(1000 + i, sentences=12) for i in range(n_distinct)]
    rows = [{"id": f"d{i}", "text": t, "n": i} for i, t in enumerate(docs)]
    for j in range(25):
        rows.append({"id": f"e{j}", "text": docs[rng.randrange(n_distinct)]})
    for j in range(35):
        words = docs[rng.randrange(n_distinct)].split(" ")
        for _ in range(rng.choice([1, 2, 3])):
            words[rng.randrange(len(words))] = rng.choice(["zebra", "quartz", "violet"])
        rows.append({"id": f"n{j}", "text": " ".join(words)})
    rows += [{"id": "s0", "text": ""}, {"id": "m0", "body": "no text"}]
    rng.shuffle(rows)
    return rows


def _artifact(result: Any) -> dict[str, Any]:
    out = Path(result.path)

    def lines(name: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in (out / name).read_text().splitlines()]

    return {
        "kept": [r["id"] for r in lines("data.jsonl")],
        "records": (out / "data.jsonl").read_text(),
        "duplicates": lines("duplicates.jsonl"),
        "drops": lines("drops.jsonl"),
        "version": result.dataset_version,
    }


def test_ray_engine_keeps_the_same_documents_as_local(
    tmp_path: Path, local_ray: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _rows()
    half = len(rows) // 2
    plain = tmp_path / "a.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows[:half]))
    packed = tmp_path / "b.jsonl.gz"
    with gzip.open(packed, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[half:])
    base = {"inputs": [str(plain), str(packed)], "shard_bytes": 20_000}
    local = _artifact(prep_dataset(PrepRequest(**base)))
    # Fewer shards per Ray Data window than the run has, so windows follow one another.
    monkeypatch.setattr("lmfast.data.distributed.WINDOW_BYTES", 60_000)
    distributed = _artifact(prep_dataset(PrepRequest(**base, engine="ray")))
    assert distributed == local
    kinds = {d["kind"] for d in local["duplicates"]}
    assert kinds == {"exact", "near"}, "the corpus must exercise both kinds of duplicate"
    assert {d["id"] for d in local["drops"]} == {"s0", "m0"}


def test_ray_engine_runs_in_memory_records(local_ray: None) -> None:
    """Records from a datasets object (the Python shard path) go through Ray too."""
    rows = [r for r in _rows(40) if "text" in r]
    local = prep_dataset(PrepRequest(shard_size=30), dataset=rows)
    distributed = prep_dataset(PrepRequest(shard_size=30, engine="ray"), dataset=rows)
    assert _artifact(distributed)["kept"] == _artifact(local)["kept"]
    assert distributed.report.near_duplicates == local.report.near_duplicates > 0


def test_ray_engine_without_ray_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps({"text": prose(1)}) + "\n")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(DataError, match=r"lmfast\[distributed\]"):
        prep_dataset(PrepRequest(inputs=[str(src)], engine="ray"))
