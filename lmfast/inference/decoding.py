"""Engine-independent pieces of decoding: stop strings, UTF-8 assembly and logprobs."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmfast.inference.base import TokenLogprob, TopLogprob


@dataclass
class _Pending:
    text: str
    logprob: TokenLogprob | None


@dataclass
class TextAssembler:
    """Turns token byte-pieces into text and holds back anything that could still become a
    stop string, so a stop string is never streamed to the client."""

    stop: list[str]
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    _pending: list[_Pending] = field(default_factory=list)
    stopped: bool = False

    def feed(self, piece: bytes, logprob: TokenLogprob | None) -> tuple[str, list[TokenLogprob]]:
        """Add one token; return the text (and logprobs) that is now safe to emit."""
        self._pending.append(_Pending(self._decoder.decode(piece), logprob))
        return self._release(final=False)

    def flush(self) -> tuple[str, list[TokenLogprob]]:
        """End of generation: release whatever is held (minus any stop string)."""
        tail = self._decoder.decode(b"", final=True)
        if tail:
            self._pending.append(_Pending(tail, None))
        return self._release(final=True)

    def _release(self, final: bool) -> tuple[str, list[TokenLogprob]]:
        text = "".join(p.text for p in self._pending)
        cut = min((i for s in self.stop if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:  # stop string found: emit what precedes it, drop the rest
            self.stopped = True
            out_lp, pos = [], 0
            for p in self._pending:
                if pos >= cut and p.text:
                    break
                if p.logprob is not None:
                    out_lp.append(p.logprob)
                pos += len(p.text)
            self._pending = []
            return text[:cut], out_lp
        held = 0 if final or not self.stop else _longest_stop_prefix_suffix(text, self.stop)
        safe = len(text) - held
        # Release whole tokens that end inside the safe prefix; keep the rest pending.
        out_lp, pos, n = [], 0, 0
        for p in self._pending:
            if pos + len(p.text) > safe:
                break
            pos += len(p.text)
            n += 1
            if p.logprob is not None:
                out_lp.append(p.logprob)
        self._pending = self._pending[n:]
        return text[:pos], out_lp


def _longest_stop_prefix_suffix(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def log_softmax(logits: np.ndarray) -> np.ndarray:
    m = logits.max()
    shifted = logits - m
    return shifted - np.log(np.exp(shifted).sum())


def token_logprob(
    logits: np.ndarray,
    token: int,
    top_n: int,
    piece: Callable[[int], bytes],
) -> TokenLogprob:
    """OpenAI-shaped logprob of `token` under raw `logits`, with the top_n alternatives."""
    lp = log_softmax(logits.astype(np.float32, copy=False))
    raw = piece(token)
    top: list[TopLogprob] = []
    if top_n:
        idx = np.argpartition(-lp, top_n)[:top_n]
        idx = idx[np.argsort(-lp[idx])]
        for t in idx:
            b = piece(int(t))
            top.append(
                TopLogprob(token=b.decode("utf-8", "replace"), logprob=float(lp[t]), bytes=list(b))
            )
    return TokenLogprob(
        token=raw.decode("utf-8", "replace"),
        logprob=float(lp[token]),
        bytes=list(raw),
        top_logprobs=top,
    )
