"""Artifacts: atomic creation, manifests, listing and lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfast.artifacts import ArtifactStore
from lmfast.errors import ArtifactError
from lmfast.hashing import config_hash


def test_create_writes_manifest(lmfast_home: Path) -> None:
    store = ArtifactStore()
    assert store.root == lmfast_home / "artifacts"
    with store.create("dataset", name="tiny", config={"dedup": True}, dataset_version="v1") as d:
        (d.path / "data.txt").write_text("hello")
        d.metrics = {"documents": 1.0}
    art = d.artifact
    assert art is not None and art.id.startswith("dataset-")
    manifest = json.loads((art.path / "manifest.json").read_text())
    assert manifest["kind"] == "dataset"
    assert manifest["config_hash"] == config_hash({"dedup": True})
    assert manifest["dataset_version"] == "v1"
    assert manifest["metrics"] == {"documents": 1.0}
    assert (art.path / "data.txt").read_text() == "hello"
    assert store.get(art.id).manifest.name == "tiny"


def test_failure_leaves_nothing_behind() -> None:
    store = ArtifactStore()
    with pytest.raises(RuntimeError), store.create("model") as d:
        (d.path / "weights.bin").write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert list(store.root.iterdir()) == []
    assert store.list() == []


def test_list_lineage_and_bad_ids() -> None:
    store = ArtifactStore()
    with store.create("dataset") as ds:
        pass
    assert ds.artifact
    with store.create("adapter", parents=[ds.artifact.id, "smollm2-135m-instruct"]) as ad:
        pass
    assert ad.artifact
    assert [a.id for a in store.list("adapter")] == [ad.artifact.id]
    assert {a.id for a in store.list()} == {ds.artifact.id, ad.artifact.id}
    assert [m.id for m in store.lineage(ad.artifact.id)] == [ad.artifact.id, ds.artifact.id]
    for bad in ("nope", "../etc", ""):
        with pytest.raises(ArtifactError):
            store.get(bad)
    with pytest.raises(ArtifactError, match="kind='weights'"), store.create("weights"):  # type: ignore[arg-type]
        pass


def test_broken_manifest_is_skipped_in_listing() -> None:
    store = ArtifactStore()
    broken = store.root / "model-broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    assert store.list() == []
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        store.get("model-broken")
