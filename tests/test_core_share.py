"""llama.cpp decodes with the cores other processes leave free (lmfast.inference.core_share)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lmfast.hardware import cpu_cores
from lmfast.inference.base import EngineRequest, Finished, SamplingParams
from lmfast.inference.core_share import CoreShare, CpuSample, sample_cpu


class FakeClock:
    """CPU samples scripted as (cores busy in total, cores busy with this process)."""

    def __init__(self) -> None:
        self.wall, self.busy, self.own = time.monotonic(), 0.0, 0.0

    def sample(self) -> CpuSample:
        return CpuSample(self.wall, self.busy, self.own)

    def advance(self, seconds: float, busy_cores: float, own_cores: float) -> None:
        self.wall += seconds
        self.busy += busy_cores * seconds
        self.own += own_cores * seconds


def test_threads_follow_what_other_processes_leave_free(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    monkeypatch.setattr(time, "monotonic", lambda: clock.wall)
    share = CoreShare(limit=4, cores=4, interval=0.5, sampler=clock.sample)
    assert share.threads() == 4  # nothing measured yet: the configured count

    clock.advance(0.2, busy_cores=4.0, own_cores=1.0)
    assert share.threads() == 4, "re-measured before the interval"

    clock.advance(0.8, busy_cores=4.0, own_cores=1.0)  # others hold 3 of 4 cores
    assert share.threads() == 1 and share.others == pytest.approx(3.0)

    clock.advance(1.0, busy_cores=4.0, own_cores=3.5)  # others 0.5: round up to a thread
    assert share.threads() == 4

    clock.advance(1.0, busy_cores=4.0, own_cores=0.0)  # everything elsewhere: still one
    assert share.threads() == 1

    clock.advance(1.0, busy_cores=1.6, own_cores=0.0)  # 2.4 cores free
    assert share.threads() == 2

    capped = CoreShare(limit=2, cores=8, interval=0.5, sampler=clock.sample)
    clock.advance(1.0, busy_cores=0.0, own_cores=0.0)
    assert capped.threads() == 2, "more threads than the configured count"


def test_sample_counts_only_this_process_cores() -> None:
    first = sample_cpu([0])
    start = time.process_time()
    while time.process_time() - start < 0.2:  # 0.2 s of this process's CPU, however crowded
        pass
    second = sample_cpu([0])
    assert second.wall > first.wall and second.own - first.own > 0.1
    assert second.busy >= first.busy
    everywhere = sample_cpu(None)
    assert everywhere.busy >= second.busy


@pytest.mark.slow
@pytest.mark.skipif(cpu_cores() < 2, reason="one core: there is nothing to give up")
def test_the_engine_gives_busy_cores_back_and_answers_the_same() -> None:
    from lmfast.inference.llamacpp import LlamaCppEngine
    from lmfast.registry import ALIASES, embedded_gguf

    engine = LlamaCppEngine(embedded_gguf(ALIASES["smollm2-135m-instruct"]), n_ctx=512)
    request = EngineRequest(
        prompt="The capital of France is", params=SamplingParams(temperature=0, max_tokens=24)
    )

    def generate() -> str:
        text = ""
        for event in engine.submit(request):
            if isinstance(event, Finished):
                assert event.finish_reason in ("stop", "length")
                return text
            text += event.text
        raise AssertionError("no Finished event")

    try:
        alone = generate()
        hogs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpu_cores())
        ]
        try:
            time.sleep(1.0)  # a window in which every core is busy elsewhere
            crowded = generate()
            assert engine.stats()["threads"] == 1, engine._share.others  # type: ignore[union-attr]
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        # A thread count changes who computes which rows, not the arithmetic: greedy text
        # is the same.
        assert crowded == alone
    finally:
        engine.close()
