"""Speculative decoding: a small draft model with the served model's vocabulary guesses the
next tokens of each running sequence, and the served model checks all of them in one batch.

The engine samples the served model at every drafted position with the sequence's own
sampler and keeps drafted tokens while they equal what it sampled, so the text is what
decoding without a draft gives (same sampler, same tokens: at temperature 0 the same greedy
reply). The draft only decides how many tokens one decode of the large model yields, which
is where the time goes on a CPU: a decode of a few tokens costs about what one costs, since
reading the weights, not computing with them, is the bottleneck.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

BATCH_TOKENS = 512


def check_same_vocabulary(target: Any, draft: Any, target_name: str, draft_name: str) -> None:
    """Refuse a draft whose token ids mean something else than the served model's (a token
    the draft proposes must be the token the served model would check)."""

    def refuse(why: str) -> ValueError:
        return ValueError(
            f"draft {draft_name}: {why}, so it cannot draft for {target_name} (a draft needs "
            "the same tokenizer: distill one from the model, lmfast distill --student-layers)"
        )

    if (n := draft.n_vocab()) != (m := target.n_vocab()):
        raise refuse(f"its vocabulary has {n} tokens and {target_name}'s {m}")
    for what in ("token_bos", "token_eos"):
        if (a := getattr(draft, what)()) != (b := getattr(target, what)()):
            raise refuse(f"its {what.removeprefix('token_').upper()} token is {a}, not {b}")
    for token in range(m):
        a, b = draft.token_get_text(token), target.token_get_text(token)
        if a != b:
            raise refuse(f"token {token} is {a!r} in the draft and {b!r} in {target_name}")


def time_decode(ctx: Any, batch: Any, n: int, prefix: int = 64, repeats: int = 3) -> float:
    """Seconds to decode `n` tokens of one sequence after `prefix` cached ones (the median of
    `repeats`), on sequence 0 of an idle context, which is left empty."""
    import llama_cpp

    def decode(start: int, count: int, logits: bool) -> None:
        batch.reset()
        b = batch.batch
        for i in range(count):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = 1 + i % 7, start + i, 1, logits
            b.seq_id[i][0] = 0
        b.n_tokens = count
        if llama_cpp.llama_decode(ctx.ctx, b) != 0:
            raise RuntimeError("llama_decode failed while timing the decode")

    try:
        decode(0, prefix, False)
        times = []
        for _ in range(repeats + 1):  # the first warms up
            llama_cpp.llama_memory_seq_rm(ctx.memory, 0, prefix, -1)
            start = time.perf_counter()
            decode(prefix, n, True)
            times.append(time.perf_counter() - start)
    finally:
        llama_cpp.llama_memory_seq_rm(ctx.memory, 0, -1, -1)
    return sorted(times[1:])[len(times[1:]) // 2]


class SpeculationPlan:
    """How many tokens to draft next, from what decoding costs on this machine and how often
    the draft has been right. A draft pays only where checking k+1 tokens costs much less
    than k+1 single decodes (weights read once, as on a GPU or for a model larger than the
    CPU's caches); where decoding is compute-bound, as for a 135M model on 2 cores, the plan
    drafts nothing, and tries again now and then in case the draft got better at the text.
    """

    def __init__(self, verify_s: list[float], draft_s: float, alpha: float = 0.7) -> None:
        self.verify_s = verify_s  # [n - 1]: seconds to decode n tokens of one sequence
        self.draft_s = draft_s  # seconds per draft decode
        self.alpha = alpha  # chance the served model keeps a drafted token
        self._hits, self._trials = 7.0, 10.0  # the prior alpha, as decaying counts
        self._idle = 0

    def observe(self, drafted: int, accepted: int) -> None:
        """A round's outcome: drafted tokens are tried in order until the first refused."""
        if drafted:
            trials = accepted + (1 if accepted < drafted else 0)
            self._hits = 0.95 * self._hits + accepted
            self._trials = 0.95 * self._trials + trials
            self.alpha = min(0.99, self._hits / self._trials)

    def rate(self, k: int) -> float:
        """Expected tokens per second drafting k tokens per step."""
        a = self.alpha
        expected = (1 - a ** (k + 1)) / (1 - a)
        return expected / (k * self.draft_s + self.verify_s[k])

    def tokens(self) -> int:
        best = max(range(len(self.verify_s)), key=self.rate)
        if best == 0:
            self._idle += 1
            if self._idle >= 64:  # look again: the draft may do better on this text
                self._idle = 0
                return min(2, len(self.verify_s) - 1)
        return best


class Drafter:
    """The draft model, with one KV sequence per engine slot. `propose` brings each slot up to
    the sequence's tokens (reusing what it holds: the draft's own prefix cache) and drafts
    greedily until `draft_max` tokens or until the draft is unsure (top probability under
    `p_min`: a guess that is likely wrong costs a wider verification batch for nothing)."""

    def __init__(
        self,
        path: str | Path,
        *,
        target: Any,
        target_name: str,
        parallel: int,
        n_ctx: int,
        n_threads: int,
        n_gpu_layers: int = -1,
        extra_bufts: bool = False,
        draft_max: int = 8,
        p_min: float = 0.5,
    ) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext, LlamaModel

        self._llama = llama_cpp
        self.path = Path(path)
        self.draft_max, self.p_min = draft_max, p_min
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = n_gpu_layers
        # The served model's first-run check decides weight repacking for this build and CPU
        # (on some CPUs repacked weights crash llama.cpp); the draft follows it.
        mparams.use_extra_bufts = extra_bufts
        self._model = LlamaModel(path_model=str(self.path), params=mparams, verbose=False)
        try:
            check_same_vocabulary(target, self._model, target_name, self.path.name)
            cparams = llama_cpp.llama_context_default_params()
            cparams.n_ctx = n_ctx * parallel
            cparams.n_seq_max = parallel
            cparams.n_batch = cparams.n_ubatch = BATCH_TOKENS
            cparams.n_threads = cparams.n_threads_batch = n_threads
            cparams.kv_unified = False
            self._ctx = LlamaContext(model=self._model, params=cparams, verbose=False)
        except Exception:
            self._model.close()
            raise
        self._batch = LlamaBatch(n_tokens=BATCH_TOKENS, embd=0, n_seq_max=parallel, verbose=False)
        self._n_vocab = self._model.n_vocab()
        self._tokens: list[list[int]] = [[] for _ in range(parallel)]
        self.drafted = 0  # tokens proposed to the served model
        self.accepted = 0  # of those, tokens it kept
        self.plan: SpeculationPlan | None = None  # set by calibrate()

    def calibrate(self, target_ctx: Any, target_batch: Any) -> SpeculationPlan:
        """Time the served model checking 1 and draft_max + 1 tokens (between, linear) and
        one draft decode; the plan weighs drafting with these costs."""
        one = time_decode(target_ctx, target_batch, 1)
        full = time_decode(target_ctx, target_batch, self.draft_max + 1)
        step = (full - one) / self.draft_max
        verify = [one + k * step for k in range(self.draft_max + 1)]
        self.plan = SpeculationPlan(verify, time_decode(self._ctx, self._batch, 1))
        return self.plan

    def set_threads(self, n: int) -> None:
        self._llama.llama_set_n_threads(self._ctx.ctx, n, n)

    def forget(self, slot: int) -> None:
        """Drop what the slot holds (its sequence ended in an error)."""
        self._llama.llama_memory_seq_rm(self._ctx.memory, slot, -1, -1)
        self._tokens[slot] = []

    def propose(self, wants: dict[int, tuple[list[int], int]]) -> dict[int, list[int]]:
        """`wants`: slot -> (every token of its sequence so far, most tokens to draft).
        Returns slot -> drafted tokens (possibly none)."""
        pending: list[tuple[int, list[int], int]] = []  # (slot, tokens to feed, first pos)
        for slot, (history, _) in wants.items():
            held = self._tokens[slot]
            keep = 0
            for a, b in zip(held, history, strict=False):
                if a != b:
                    break
                keep += 1
            keep = min(keep, len(history) - 1)  # its newest token is fed below, for logits
            if not self._llama.llama_memory_seq_rm(self._ctx.memory, slot, keep, -1):
                self._llama.llama_memory_seq_rm(self._ctx.memory, slot, -1, -1)
                keep = 0
            self._tokens[slot] = history[:keep]
            pending.append((slot, history[keep:-1], keep))
        # Catch up without logits, in batches of at most BATCH_TOKENS (a new prompt may be
        # long); each sequence's newest token then goes into the first drafting batch.
        while pending := [p for p in pending if p[1]]:
            self._batch.reset()
            n, rest = 0, []
            for slot, todo, pos in pending:
                take = todo[: BATCH_TOKENS - n]
                for j, tok in enumerate(take):
                    self._add(n, tok, pos + j, slot, False)
                    n += 1
                self._tokens[slot].extend(take)
                rest.append((slot, todo[len(take) :], pos + len(take)))
            self._decode(n)
            pending = rest
        self._batch.reset()
        last: dict[int, int] = {}  # slot -> batch index of its newest token's logits
        for n, (slot, (history, _)) in enumerate(wants.items()):
            self._add(n, history[-1], len(self._tokens[slot]), slot, True)
            self._tokens[slot].append(history[-1])
            last[slot] = n
        self._decode(len(last))
        drafts: dict[int, list[int]] = {slot: [] for slot in wants}
        while last:
            nxt: dict[int, int] = {}
            self._batch.reset()
            n = 0
            for slot, idx in last.items():
                token, p = self._best(idx)
                if p < self.p_min:
                    continue
                drafts[slot].append(token)
                if len(drafts[slot]) >= wants[slot][1] or self._llama.llama_vocab_is_eog(
                    self._model.vocab, token
                ):  # nothing follows the end of the reply
                    continue
                self._add(n, token, len(self._tokens[slot]), slot, True)
                self._tokens[slot].append(token)
                nxt[slot] = n
                n += 1
            if n:
                self._decode(n)
            last = nxt
        self.drafted += sum(len(d) for d in drafts.values())
        return drafts

    def _add(self, n: int, token: int, pos: int, slot: int, logits: bool) -> None:
        b = self._batch.batch
        b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = token, pos, 1, logits
        b.seq_id[n][0] = slot

    def _decode(self, n: int) -> None:
        self._batch.batch.n_tokens = n
        rc = self._llama.llama_decode(self._ctx.ctx, self._batch.batch)
        if rc != 0:
            raise RuntimeError(f"draft llama_decode returned {rc}")

    def _best(self, idx: int) -> tuple[int, float]:
        ptr = self._llama.llama_get_logits_ith(self._ctx.ctx, idx)
        logits = np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))
        token = int(logits.argmax())
        if self.p_min <= 0:
            return token, 1.0
        p = 1.0 / float(np.exp(logits - logits[token]).sum())
        return token, p

    def close(self) -> None:
        self._batch.close()
        self._ctx.close()
        self._model.close()
