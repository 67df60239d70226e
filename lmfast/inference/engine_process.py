"""The llama.cpp engine in a child process, so that a native crash never takes a face down.

As Ollama runs llama.cpp in a runner process, `EngineProcess` holds a `LlamaCppEngine` in a
child and speaks the `Engine` protocol over a socket pair: calls (tokenize, render_chat, ...)
are request / reply, and each generation's events stream back as they are decoded (one small
pickle per token, a few microseconds against milliseconds of decode).

When the child dies, every request in flight ends with an error that says how it died and
what happens next; a death by a signal is recorded with the settings it ran (see
`selfcheck.record_crash`), and the next request starts a new child with the next safer
settings. The server, the chat, MCP and agents stay up.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from lmfast.errors import EngineCrashedError
from lmfast.inference.base import (
    ChatMessage,
    EngineRequest,
    Finished,
    GenerationStream,
    ToolSpec,
)
from lmfast.inference.cpu_backend import CpuSettings
from lmfast.inference.selfcheck import checked_settings, describe_exit, record_crash

log = logging.getLogger("lmfast.engine")

# Read only by the engine child (tests): when this file exists, the child deletes it and
# kills itself with SIGSEGV at its next generation, as a native crash mid-request would.
CRASH_FILE_ENV = "LMFAST_ENGINE_CRASH_FILE"


class _Call:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class _RemoteStream(GenerationStream):
    """The parent's end of a generation: cancelling it cancels it in the child too."""

    def __init__(self, owner: EngineProcess, rid: int) -> None:
        super().__init__()
        self._owner, self._rid = owner, rid

    def cancel(self) -> None:
        super().cancel()
        self._owner._send_quiet(("cancel", self._rid))


class EngineProcess:
    """A `LlamaCppEngine` in a restartable child process (same arguments, same protocol).
    `engine_kwargs` go to `LlamaCppEngine` as given: its defaults stay its own."""

    name = "llama.cpp"

    def __init__(self, path: str | Path, **engine_kwargs: Any) -> None:
        self.path = Path(path)
        self._kwargs = engine_kwargs
        # The first-run check runs here, in its own child, before the engine's child starts.
        self.cpu_settings: CpuSettings | None = checked_settings(self.path)
        self._lock = threading.Lock()  # one writer on the socket; guards the tables below
        self._restart_lock = threading.Lock()
        self._ids = itertools.count()
        self._streams: dict[int, _RemoteStream] = {}
        self._calls: dict[int, _Call] = {}
        self._pieces: dict[int, bytes] = {}
        self._closed = False
        self._crash: str | None = None  # why the last child died, until a new one starts
        self.restarts = 0
        self._start()

    # -- child lifecycle ---------------------------------------------------------------------
    def _start(self) -> None:
        assert self.cpu_settings is not None
        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lmfast.inference.engine_process", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # stdout may be an MCP stdio stream: keep it clean
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(("init", str(self.path), self._kwargs, self.cpu_settings))
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError):
            code = self._proc.wait()
            self._conn.close()
            self._on_death(code, starting=True)
            raise EngineCrashedError(self._crash, self.cpu_settings is not None) from None
        if kind == "error":
            self._proc.wait()
            self._conn.close()
            raise payload
        self._info: dict[str, Any] = payload
        self.context_length: int = payload["context_length"]
        self.chat_template: str | None = payload["chat_template"]
        self.parallel: int = payload["parallel"]
        self.queue_size: int = payload["queue_size"]
        self.default_system: str | None = payload["default_system"]
        self._crash = None
        self._reader = threading.Thread(target=self._read, name="lmfast-engine-reader", daemon=True)
        self._reader.start()

    def _ensure_running(self) -> None:
        if self._closed:
            raise EngineCrashedError("the engine is closed")
        if self._crash is None:
            return
        with self._restart_lock:  # concurrent requests after a crash start one child
            if self._crash is None:
                return
            if self.cpu_settings is None:
                raise EngineCrashedError(self._crash, restartable=False)
            self.restarts += 1
            self._start()

    def _read(self) -> None:
        conn = self._conn
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "event":
                _, rid, event = msg
                with self._lock:
                    stream = self._streams.get(rid)
                    if isinstance(event, Finished):
                        self._streams.pop(rid, None)
                if stream is not None:
                    stream.put(event)
            else:
                _, cid, ok, value = msg
                with self._lock:
                    call = self._calls.pop(cid, None)
                if call is not None:
                    call.ok, call.value = ok, value
                    call.done.set()
        code = self._proc.wait()
        conn.close()
        if not self._closed:
            self._on_death(code)

    def _on_death(self, code: int, starting: bool = False) -> None:
        how = describe_exit(code)
        before = self.cpu_settings
        if code < 0 and before is not None:
            self.cpu_settings = record_crash(before, how)
        nxt = self.cpu_settings
        where = "while loading" if starting else "while generating"
        then = (
            f"LMFast recorded this and starts it again with {nxt.describe()} on the next request"
            if nxt is not None and code < 0
            else "no safer llama.cpp settings are left on this CPU: run `lmfast doctor`, or use "
            "--backend transformers"
            if nxt is None
            else "it starts again on the next request"
        )
        self._crash = (
            f"the llama.cpp engine process died ({how}) {where} {self.path.name} with "
            f"{before.describe() if before else 'no settings'}; {then}."
        )
        log.error("%s", self._crash)
        with self._lock:
            streams, self._streams = self._streams, {}
            calls, self._calls = self._calls, {}
        for stream in streams.values():
            stream.put(Finished("error", 0, 0, error=self._crash))
        for call in calls.values():
            call.ok, call.value = False, EngineCrashedError(self._crash, nxt is not None)
            call.done.set()

    # -- plumbing ------------------------------------------------------------------------------
    def _send_quiet(self, msg: tuple[Any, ...]) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._conn.send(msg)

    def _call(self, method: str, *args: Any) -> Any:
        self._ensure_running()
        call, cid = _Call(), next(self._ids)
        with self._lock:
            self._calls[cid] = call
            try:
                self._conn.send(("call", cid, method, args))
            except (OSError, ValueError):
                self._calls.pop(cid, None)
                raise EngineCrashedError(self._crash or "the engine process is gone") from None
        call.done.wait()
        if not call.ok:
            raise call.value
        return call.value

    # -- Engine protocol ---------------------------------------------------------------------
    def render_chat(self, messages: list[ChatMessage], tools: list[ToolSpec] | None = None) -> str:
        return self._call("render_chat", messages, tools)

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return self._call("tokenize", text, add_special)

    def detokenize(self, tokens: list[int]) -> str:
        return self._call("detokenize", tokens)

    def piece(self, token: int) -> bytes:
        cached = self._pieces.get(token)
        if cached is None:
            cached = self._pieces[token] = self._call("piece", token)
        return cached

    @property
    def bos_token(self) -> int | None:
        return self._info["bos_token"]

    @property
    def eos_token(self) -> int:
        return self._info["eos_token"]

    @property
    def vocab_size(self) -> int:
        return self._info["vocab_size"]

    def special_tokens(self) -> dict[str, str | None]:
        return dict(self._info["special_tokens"])

    def submit(self, request: EngineRequest) -> GenerationStream:
        self._ensure_running()
        rid = next(self._ids)
        stream = _RemoteStream(self, rid)
        with self._lock:
            self._streams[rid] = stream
        try:
            self._call("submit", rid, request)
        except BaseException:
            with self._lock:
                self._streams.pop(rid, None)
            raise
        return stream

    def add_adapter(self, name: str, file: str) -> None:
        self._call("add_adapter", name, file)
        # A restarted child loads it again.
        self._kwargs["adapters"] = {**(self._kwargs.get("adapters") or {}), name: file}

    def remove_adapter(self, name: str) -> None:
        self._call("remove_adapter", name)
        self._kwargs["adapters"] = {
            k: v for k, v in (self._kwargs.get("adapters") or {}).items() if k != name
        }

    def stats(self) -> dict[str, int]:
        if self._crash is not None:
            return {"running": 0, "waiting": 0, "restarts": self.restarts}
        return {**self._call("stats"), "restarts": self.restarts}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send_quiet(("close",))
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        with contextlib.suppress(OSError):
            self._conn.close()
        with self._lock:
            streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.put(Finished("cancelled", 0, 0))


# -- the child ---------------------------------------------------------------------------------
class _Forward(GenerationStream):
    """Events of one generation, sent to the parent as the engine thread produces them."""

    def __init__(self, send: Any, rid: int, done: Any) -> None:
        super().__init__()
        self._send, self._rid, self._done = send, rid, done

    def put(self, event: Any) -> None:
        self._send(("event", self._rid, event))
        if isinstance(event, Finished):
            self._done(self._rid)


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling (so the parent raises the same type), else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _child_main(fd: int) -> None:
    from lmfast.inference.llamacpp import LlamaCppEngine

    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    conn = Connection(fd)
    send_lock = threading.Lock()

    def send(msg: tuple[Any, ...]) -> None:
        with send_lock, contextlib.suppress(OSError, ValueError):
            conn.send(msg)

    _, path, kwargs, settings = conn.recv()
    try:
        engine = LlamaCppEngine(path, cpu_settings=settings, **kwargs)
    except Exception as e:
        send(("error", _portable(e)))
        return
    send(
        (
            "ready",
            {
                "context_length": engine.context_length,
                "parallel": engine.parallel,
                "queue_size": engine.queue_size,
                "default_system": engine.default_system,
                "chat_template": engine.chat_template,
                "bos_token": engine.bos_token,
                "eos_token": engine.eos_token,
                "vocab_size": engine.vocab_size,
                "special_tokens": engine.special_tokens(),
            },
        )
    )
    streams: dict[int, _Forward] = {}
    crash_file = os.environ.get(CRASH_FILE_ENV)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            break
        kind = msg[0]
        if kind == "close":
            break
        if kind == "cancel":
            if (stream := streams.get(msg[1])) is not None:
                stream.cancel()
            continue
        _, cid, method, args = msg
        try:
            if method == "submit":
                rid, request = args
                if crash_file and os.path.exists(crash_file):
                    os.unlink(crash_file)
                    os.kill(os.getpid(), signal.SIGSEGV)
                streams[rid] = _Forward(send, rid, lambda r: streams.pop(r, None))
                engine.submit(request, stream=streams[rid])
                value = None
            else:
                value = getattr(engine, method)(*args)
        except Exception as e:
            if method == "submit":
                streams.pop(args[0], None)
            send(("ret", cid, False, _portable(e)))
        else:
            send(("ret", cid, True, value))
    engine.close()


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
