"""The Ray engine of prep_dataset (`lmfast[distributed]`, `engine="ray"`).

The same shard function the local engine runs (`run_shard`) runs as Ray Data tasks, and
near dedup is a group-by on LSH band keys: each worker hashes its signatures into band keys
(the Rust `band_keys`, the very keys the local clustering buckets on), the rows are
hash-shuffled so each bucket lands whole in one partition, and each partition pairs every
bucket's first document with the others. The driver checks the candidate pairs' estimated
Jaccard and joins them with union-find. Buckets, pairs and clusters are those of
`lsh_clusters`, so the artifact (kept ids, duplicates table) is the one the local engine
writes.

On a cluster, every node needs lmfast[distributed] installed and the inputs and LMFAST_HOME
(where shards write) at the same path, as with any shared-filesystem pipeline.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lmfast.artifacts import write_atomic
from lmfast.data.readers import DataError
from lmfast.data.shards import ShardContext, ShardSpec, run_shard

# Shards handed to Ray at a time: bounds the driver's memory (shard bytes travel through
# the object store) while keeping every worker busy.
WINDOW_BYTES = 512_000_000


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise DataError(
            "engine: 'ray' needs the distributed extra: pip install 'lmfast[distributed]'"
        ) from e
    return ray


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[Any]:
    """Join the cluster at `address` (None: a local runtime on this machine), quietly; a
    runtime this call started is shut down afterwards, one already running is left alone."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        _check_reachable(address)
        try:
            ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, ValueError, RuntimeError) as e:
            where = address or "a local runtime"
            raise DataError(f"ray_address: could not start or join Ray at {where}: {e}") from e
    from ray.data.context import ShuffleStrategy

    ctx = ray.data.DataContext.get_current()
    data_log = logging.getLogger("ray.data")
    saved = (ctx.enable_progress_bars, ctx.shuffle_strategy, data_log.level)
    ctx.enable_progress_bars = False  # prep reports its own progress
    # The sort-based shuffle needs no aggregator actors: on small clusters the default hash
    # shuffle spends seconds starting them (15 s vs 0.6 s for the bench corpus on 2 CPUs).
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    data_log.setLevel(logging.ERROR)
    try:
        yield ray
    finally:
        ctx.enable_progress_bars, ctx.shuffle_strategy, level = saved
        data_log.setLevel(level)
        if started:
            ray.shutdown()


def _check_reachable(address: str | None) -> None:
    """Ray retries an unreachable head for minutes; a host:port (or ray://host:port) that
    refuses connections is reported at once instead."""
    import socket

    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise DataError(f"ray_address: nothing answers at {address} ({e})") from e


def _cpus(ray: Any) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _shard_task(row: dict[str, Any], work: str, ctx: ShardContext) -> dict[str, Any]:
    spec: ShardSpec = pickle.loads(row["spec"])
    result = run_shard(Path(work), spec, ctx)
    return {"index": spec.index, "result": json.dumps(result)}


def run_shards_ray(
    work: Path,
    specs: Iterator[ShardSpec],
    ctx: ShardContext,
    done: Callable[[ShardSpec, dict[str, Any], bool], None],
) -> None:
    """`run_shards` on Ray Data: windows of shards run as tasks across the cluster; results
    come back in shard order, each saved as its resume marker."""
    ray = _ray()
    specs = iter(specs)
    while True:
        window: list[ShardSpec] = []
        size = 0
        for spec in specs:
            window.append(spec)
            size += len(spec.data) or 1_000_000
            if size >= WINDOW_BYTES:
                break
        if not window:
            return
        todo = []
        for spec in window:
            marker = work / f"shard-{spec.index:05d}.json"
            if marker.exists():
                done(spec, json.loads(marker.read_text()), True)
            else:
                todo.append(spec)
        if not todo:
            continue
        items = [{"spec": pickle.dumps(s)} for s in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items))  # a task per shard
        ds = ds.map(_shard_task, fn_kwargs={"work": str(work), "ctx": ctx})
        results = {r["index"]: json.loads(r["result"]) for r in ds.take_all()}
        for spec in todo:
            result = results[spec.index]
            write_atomic(work / f"shard-{spec.index:05d}.json", json.dumps(result).encode())
            done(spec, result, False)


def _band_rows(
    batch: dict[str, np.ndarray], num_perm: int, bands: int, rows: int, partitions: int
) -> dict[str, np.ndarray]:
    """One row per (document, band): the band key and the partition it hashes to."""
    import lmfast_native

    data = np.ascontiguousarray(batch["data"], dtype="<u4")
    doc, sigs = data[:, 0], np.ascontiguousarray(data[:, 1:])
    keys = np.frombuffer(
        lmfast_native.band_keys(sigs.tobytes(), num_perm, bands, rows), dtype="<u8"
    )
    return {
        "part": (keys % np.uint64(partitions)).astype(np.int64),
        "band": np.tile(np.arange(bands, dtype=np.int32), len(doc)),
        "key": keys,
        "doc": np.repeat(doc, bands),
    }


def _bucket_pairs(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Within one partition: for every (band, key) bucket, its first (lowest) document
    paired with each other document in it."""
    order = np.lexsort((batch["doc"], batch["key"], batch["band"]))
    band, key, doc = batch["band"][order], batch["key"][order], batch["doc"][order]
    starts = np.ones(len(doc), dtype=bool)
    starts[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1])
    first = doc[np.maximum.accumulate(np.where(starts, np.arange(len(doc)), 0))]
    others = ~starts
    return {"a": first[others].astype(np.int64), "b": doc[others].astype(np.int64)}


def ray_near_fn(
    num_perm: int, bands: int, rows: int, threshold: float
) -> Callable[[np.ndarray], np.ndarray]:
    """A `near_fn` for `deduplicate`: the LSH clustering as a Ray Data group-by."""

    def near(sigs: np.ndarray) -> np.ndarray:
        ray = _ray()
        n = len(sigs)
        if n == 0:
            return np.zeros(0, dtype=np.uint32)
        partitions = 4 * _cpus(ray)
        with_ids = np.hstack([np.arange(n, dtype="<u4")[:, None], sigs.astype("<u4")])
        blocks = np.array_split(with_ids, min(n, partitions))
        pairs = (
            ray.data.from_numpy(blocks)
            .map_batches(
                _band_rows,
                batch_format="numpy",
                fn_kwargs=dict(num_perm=num_perm, bands=bands, rows=rows, partitions=partitions),
            )
            .groupby("part", num_partitions=partitions)
            .map_groups(_bucket_pairs, batch_format="numpy")
            .to_numpy_refs()
        )
        a_parts, b_parts = [], []
        for part in ray.get(pairs):
            a_parts.append(part["a"])
            b_parts.append(part["b"])
        a = np.concatenate(a_parts) if a_parts else np.zeros(0, dtype=np.int64)
        b = np.concatenate(b_parts) if b_parts else np.zeros(0, dtype=np.int64)
        if threshold > 0 and len(a):
            agree = (sigs[a] == sigs[b]).sum(axis=1) / num_perm
            a, b = a[agree >= threshold], b[agree >= threshold]
        return _components(n, a, b)

    return near


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each node's representative: the lowest index in its connected component."""
    parent = np.arange(n, dtype=np.int64)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return int(root)

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return np.fromiter((find(i) for i in range(n)), dtype=np.uint32, count=n)
