"""The first-run check: does llama.cpp decode on this CPU with these settings?

The first time a llama.cpp build meets a CPU, a child process loads the model and decodes one
token with the fastest settings of `cpu_backend.settings_ladder`. A child that dies by a
signal (the Sapphire Rapids AMX segfault, an illegal instruction) costs a child, not the
caller: the next rung is tried, and the outcome is recorded under LMFAST_HOME keyed by build
and CPU, so later runs load the recorded settings at once. A crash of a running engine
(`engine_process`) is recorded the same way through `record_crash`.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel, Field

from lmfast.errors import BackendError
from lmfast.inference.cpu_backend import (
    FORCE_ENV,
    CpuSettings,
    build_id,
    cpu_identity,
    load_backends,
    settings_ladder,
)

# Read only by the check's child (tests): 'repack' kills the child with SIGSEGV when weight
# repack is on, 'all' always; the same failure the AMX bug produces, on any machine.
CRASH_ENV = "LMFAST_SELFCHECK_CRASH"
CHECK_TIMEOUT_S = 180.0


class Attempt(BaseModel):
    settings: CpuSettings
    outcome: str = Field(description="'ok', 'signal SIGSEGV', 'exit 1: ...', 'timed out'.")
    seconds: float


class CheckRecord(BaseModel):
    """What the check found for one (build, CPU) pair."""

    build: str
    cpu_model: str
    cpu_class: str
    settings: CpuSettings | None = Field(description="What loads use; None: nothing worked.")
    attempts: list[Attempt]
    model: str = Field(description="The GGUF the check decoded.")
    checked_at: float

    @property
    def fell_back(self) -> bool:
        return any(a.outcome != "ok" for a in self.attempts)


def _record_path() -> Path:
    from lmfast.home import lmfast_home

    ident = cpu_identity()
    forced = os.environ.get(FORCE_ENV, "")  # a forced variant is checked on its own
    key = hashlib.sha256(f"{build_id()}\n{ident.key()}\n{forced}".encode()).hexdigest()[:16]
    folder = lmfast_home() / "llama-cpu"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.json"


def load_record() -> CheckRecord | None:
    path = _record_path()
    try:
        return CheckRecord.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def _save(record: CheckRecord) -> None:
    from lmfast.artifacts import write_atomic

    write_atomic(_record_path(), record.model_dump_json(indent=2))


def forget() -> None:
    """Drop the record, so that the next load checks again (`lmfast doctor --recheck`)."""
    _record_path().unlink(missing_ok=True)


_lock = threading.Lock()


def checked_settings(model_path: str | Path, *, announce: bool = True) -> CpuSettings:
    """Settings that decode on this CPU: the record's, or those a new check finds."""
    with _lock:
        record = load_record()
        if record is not None and record.settings is not None:
            return record.settings
        record = run_check(model_path)
        if record.settings is None:
            tried = "; ".join(f"{a.settings.describe()}: {a.outcome}" for a in record.attempts)
            raise BackendError(
                f"llama.cpp could not decode on this CPU ({record.cpu_model}) with any "
                f"setting ({tried}). Try another llama-cpp-python build "
                "(make install rebuilds it) or the transformers backend (--backend transformers)."
            )
        if announce and record.fell_back:
            failed = next(a for a in record.attempts if a.outcome != "ok")
            print(
                f"lmfast: llama.cpp died ({failed.outcome}) decoding with "
                f"{failed.settings.describe()} on this CPU ({record.cpu_model}); "
                f"using {record.settings.describe()} from now on (recorded under "
                f"{_record_path().parent}; `lmfast doctor` shows it).",
                file=sys.stderr,
            )
        return record.settings


def load_known_backend() -> CpuSettings:
    """For llama.cpp uses that decode nothing (vocabulary-only loads, quantization): register
    the recorded variant, or the first rung's when none is recorded, without a check."""
    record = load_record()
    settings = record.settings if record and record.settings else settings_ladder()[0]
    load_backends(settings.variant)
    return settings


def run_check(model_path: str | Path) -> CheckRecord:
    """Try `settings_ladder()` in child processes until one decodes."""
    ident = cpu_identity()
    attempts: list[Attempt] = []
    chosen = None
    for settings in settings_ladder():
        start = time.monotonic()
        outcome = _child_outcome(Path(model_path), settings)
        attempts.append(
            Attempt(settings=settings, outcome=outcome, seconds=time.monotonic() - start)
        )
        if outcome == "ok":
            chosen = settings
            break
    record = CheckRecord(
        build=build_id(),
        cpu_model=ident.model,
        cpu_class=ident.cpu_class,
        settings=chosen,
        attempts=attempts,
        model=str(model_path),
        checked_at=time.time(),
    )
    _save(record)
    return record


def record_crash(settings: CpuSettings, outcome: str) -> CpuSettings | None:
    """A running engine died with `settings`: record it and return the next safer settings
    (None when there are none left)."""
    with _lock:
        record = load_record()
        ladder = settings_ladder()
        later = ladder[ladder.index(settings) + 1 :] if settings in ladder else ladder[-1:]
        nxt = later[0] if later else None
        attempts = [
            *(record.attempts if record else []),
            Attempt(settings=settings, outcome=outcome, seconds=0.0),
        ]
        ident = cpu_identity()
        _save(
            CheckRecord(
                build=build_id(),
                cpu_model=ident.model,
                cpu_class=ident.cpu_class,
                settings=nxt,
                attempts=attempts,
                model=record.model if record else "",
                checked_at=time.time(),
            )
        )
        return nxt


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"signal {name}"
    return f"exit {code}"


def _child_outcome(model_path: Path, settings: CpuSettings) -> str:
    cmd = [
        sys.executable,
        "-m",
        "lmfast.inference.selfcheck",
        str(model_path),
        settings.variant or "-",
        "1" if settings.extra_bufts else "0",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "timed out"
    if proc.returncode == 0:
        return "ok"
    tail = (proc.stderr.strip().splitlines() or [""])[-1][:200]
    return describe_exit(proc.returncode) + (f": {tail}" if proc.returncode > 0 and tail else "")


def _child(model_path: str, variant: str, extra_bufts: bool) -> None:
    """Load the model with these settings and decode one token (runs in the child)."""
    import llama_cpp
    from llama_cpp._internals import LlamaBatch, LlamaContext, LlamaModel

    load_backends(None if variant == "-" else variant)
    mparams = llama_cpp.llama_model_default_params()
    mparams.use_extra_bufts = extra_bufts
    model = LlamaModel(path_model=model_path, params=mparams, verbose=False)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch = 64, 32, 32
    ctx = LlamaContext(model=model, params=cparams, verbose=False)
    batch = LlamaBatch(n_tokens=32, embd=0, n_seq_max=1, verbose=False)
    tokens = model.tokenize(b"The capital of France is", add_bos=True, special=False)
    batch.set_batch(tokens, n_past=0, logits_all=False)
    crash = os.environ.get(CRASH_ENV, "")
    if crash == "all" or (crash == "repack" and extra_bufts):
        os.kill(os.getpid(), signal.SIGSEGV)
    ctx.decode(batch)
    logits = ctx.get_logits()
    n_vocab = model.n_vocab()
    if not any(logits[i] != 0.0 for i in range(min(n_vocab, 64))):
        sys.exit("the decode returned all-zero logits")


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3] == "1")
