"""The Rust core's hashing, and the version ids built on it."""

from __future__ import annotations

from pathlib import Path

import lmfast_native
import pytest

from lmfast.hashing import config_hash, content_version


def test_known_vectors() -> None:
    assert lmfast_native.hash_bytes(b"") == "99aa06d3014798d86001c324468d497f"
    # xxh3-64 of the empty string, from the xxHash reference suite.
    assert lmfast_native.hash_texts([""]) == [0x2D06800538D394C2]


def test_hash_texts_batch() -> None:
    hashes = lmfast_native.hash_texts(["a", "b", "a", "é"])
    assert len(hashes) == 4
    assert hashes[0] == hashes[2] != hashes[1]
    assert all(0 <= h < 2**64 for h in hashes)


def test_hash_files_names_the_bad_path(tmp_path: Path) -> None:
    good = tmp_path / "a.txt"
    good.write_bytes(b"hello")
    ((digest, size),) = lmfast_native.hash_files([str(good)])
    assert size == 5
    assert digest == lmfast_native.hash_bytes(b"hello")
    with pytest.raises(OSError, match=r"missing\.txt"):
        lmfast_native.hash_files([str(good), str(tmp_path / "missing.txt")])


def test_config_hash_ignores_key_order() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_content_version(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "x.jsonl").write_text('{"text": "one"}\n')
    (data / "sub" / "y.jsonl").write_text('{"text": "two"}\n')
    v1 = content_version([data], config={"dedup": True})
    moved = data.rename(tmp_path / "renamed")
    assert content_version([moved], config={"dedup": True}) == v1
    assert content_version([moved], config={"dedup": False}) != v1
    (moved / "sub" / "y.jsonl").write_text('{"text": "two!"}\n')
    assert content_version([moved], config={"dedup": True}) != v1


def test_stub_matches_the_extension() -> None:
    """The .pyi beside the extension names exactly what the compiled module exports."""
    import ast
    from pathlib import Path

    from lmfast_native import _lmfast_native

    stub = Path(_lmfast_native.__file__).with_name("_lmfast_native.pyi")
    if not stub.exists():  # editable installs keep the stub in the source tree
        stub = (
            Path(__file__).resolve().parents[1] / "native/python/lmfast_native/_lmfast_native.pyi"
        )
    tree = ast.parse(stub.read_text())
    stubbed = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    runtime = {
        n
        for n in dir(_lmfast_native)
        if not n.startswith("_") and callable(getattr(_lmfast_native, n))
    }
    assert stubbed == runtime
