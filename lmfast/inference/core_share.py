"""How many threads llama.cpp should decode with now: the cores other processes leave free.

llama.cpp's CPU threads meet at a spinning barrier after every operation of the graph, so a
thread the scheduler takes away stalls the others until it runs again. With the cores busy
elsewhere (a training job beside `lmfast serve` or `lmfast chat` on a laptop, an evaluation,
a second server) decoding with every core slows down far more than the lost share: beside an
`lmfast train` run on 2 cores, 41 against 60 tokens/s with one thread, and in a worse case
measured by hand 142.9 s against 1.7 s for 48 tokens (docs/cpus.md#sharing-the-cores).
llama-server and Ollama decode with a fixed count (the physical cores). The engine instead
measures, at most every `interval` seconds while it decodes, how much of its cores other
processes used, and decodes with the rest (at least one thread, at most the configured count).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple

import psutil

INTERVAL_S = 0.5


class CpuSample(NamedTuple):
    wall: float  # seconds, monotonic
    busy: float  # CPU seconds spent on this process's cores by anyone
    own: float  # CPU seconds spent by this process


def _allowed_cpus() -> list[int] | None:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS: every CPU
        return None


def sample_cpu(cpus: list[int] | None = None) -> CpuSample:
    """System CPU time on `cpus` (all when None) and this process's own, from /proc (psutil).
    Only the cores this process may run on count: in a container pinned to 2 of a host's
    64 cores, the other tenants' 62 are not competition."""
    per_cpu = psutil.cpu_times(percpu=True)
    chosen = per_cpu if cpus is None else [per_cpu[i] for i in cpus if i < len(per_cpu)]
    # idle and iowait are free time; user, system, irq, steal... are not; Linux counts guest
    # time inside user time already.
    free_or_counted = ("idle", "iowait", "guest", "guest_nice")
    busy = sum(sum(t) - sum(getattr(t, f, 0.0) for f in free_or_counted) for t in chosen)
    mine = psutil.Process().cpu_times()
    # The kernel counts in 10 ms ticks; rounding drops the float noise of the sums, which
    # could otherwise make a later sample read a hair below an earlier one.
    return CpuSample(time.monotonic(), round(busy, 4), round(mine.user + mine.system, 4))


class CoreShare:
    """Threads to decode with, re-measured at most every `interval` seconds.

    `limit` is the most threads to use (the configured count); `cores` how many cores the
    process may run on. `sampler` is injectable for tests.
    """

    def __init__(
        self,
        limit: int,
        cores: int,
        *,
        interval: float = INTERVAL_S,
        sampler: Callable[[], CpuSample] | None = None,
    ) -> None:
        cpus = _allowed_cpus()
        self.limit, self.cores, self.interval = max(1, limit), max(1, cores), interval
        self._sample = sampler or (lambda: sample_cpu(cpus))
        self._last = self._sample()
        self.current = self.limit
        self.others = 0.0  # cores other processes used over the last interval

    def threads(self) -> int:
        """The thread count for the next decode step (cheap when not yet due)."""
        if time.monotonic() - self._last.wall < self.interval:
            return self.current
        now = self._sample()
        elapsed = now.wall - self._last.wall
        if elapsed <= 0:
            return self.current
        used_by_others = (now.busy - self._last.busy) - (now.own - self._last.own)
        self.others = max(0.0, used_by_others / elapsed)
        self._last = now
        free = self.cores - self.others
        # Round: a core other processes use 40 % of the time is still worth a thread.
        self.current = max(1, min(self.limit, int(free + 0.5)))
        return self.current
