"""llama.cpp engine with continuous batching, on llama-cpp-python's low-level API.

One thread owns the llama.cpp context. Each step it builds a single batch from the next token
of every running sequence plus prompt chunks of newly admitted ones, decodes it once, and
samples every sequence with its own sampler chain (penalties, grammar, top-k/p, min-p,
temperature). Decoding 16 sequences together costs little more than decoding one on a CPU,
so concurrent clients raise total throughput instead of queueing behind each other.
"""

from __future__ import annotations

import ctypes
import re
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmfast.hardware import cpu_cores
from lmfast.inference.base import (
    ChatMessage,
    Delta,
    EngineBusyError,
    EngineRequest,
    Finished,
    FinishReason,
    GenerationStream,
    PromptTooLongError,
    RequestFieldError,
    TokenLogprob,
    ToolSpec,
    check_logit_bias,
)
from lmfast.inference.chat_format import openai_tools, prepare_messages, template_supports_tools
from lmfast.inference.core_share import CoreShare
from lmfast.inference.cpu_backend import CpuSettings, load_backends
from lmfast.inference.decoding import TextAssembler, token_logprob
from lmfast.inference.prompt_cache import PromptCache, shared_prefix
from lmfast.inference.selfcheck import checked_settings
from lmfast.inference.speculative import Drafter

# The KV cache is allocated up front; cap the default per-sequence window so a model trained
# on 128k positions does not reserve gigabytes for short chats.
DEFAULT_MAX_CONTEXT = 8192
BATCH_TOKENS = 512
MIN_PREFIX_REUSE = 16  # shorter shared prefixes are recomputed (see _assign_slot)
# With a draft model, speculate while at most this many sequences decode: a batch of many
# sequences already reads the weights once for all of them, so drafts there mostly add work.
SPECULATE_UP_TO = 4


@dataclass
class _Seq:
    request: EngineRequest
    prompt: list[int]
    max_new: int
    stream: GenerationStream
    seq_id: int = -1
    sampler: Any = None
    fed: int = 0  # prompt tokens already in the KV cache
    n_past: int = 0  # all tokens in the KV cache
    last_token: int = -1
    generated: int = 0
    cached_tokens: int = 0  # prompt tokens found in the prefix cache
    assembler: TextAssembler = field(default_factory=lambda: TextAssembler([]))
    prompt_logprobs: list[TokenLogprob | None] = field(default_factory=list)


class LlamaCppEngine:
    """A GGUF model served by llama.cpp, `parallel` sequences decoded per step."""

    name = "llama.cpp"

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int | None = None,
        parallel: int = 1,
        queue_size: int = 64,
        n_threads: int | None = None,
        n_gpu_layers: int = -1,
        default_system: str | None = None,
        cpu_settings: CpuSettings | None = None,
        adapters: dict[str, str] | None = None,
        draft: str | Path | None = None,
        draft_max: int = 8,
        draft_min: int = 0,
        kv_unified: bool = True,
        kv_tokens: int | None = None,
        cache_ram_mb: int = 1024,
    ) -> None:
        """`cpu_settings` None: what the first-run check found for this build and CPU.
        `adapters`: name -> GGUF LoRA file; a request naming one is decoded with it applied
        (`lora_gguf` converts PEFT adapters). `draft`: a GGUF with the same vocabulary that
        drafts up to `draft_max` tokens per step (speculative decoding, same output): as many
        as pay off on this machine (`SpeculationPlan`), at least `draft_min`.
        `kv_unified`: the slots share one KV pool of `kv_tokens` (default: one context window),
        as llama-server does, instead of a private window each; `cache_ram_mb`: RAM for the
        states of sequences that lost their slot (`PromptCache`)."""
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext, LlamaModel
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama = llama_cpp
        self.path = Path(path)
        self.default_system = default_system
        self.parallel, self.queue_size = parallel, queue_size

        self.cpu_settings = cpu_settings or checked_settings(self.path)
        load_backends(self.cpu_settings.variant)
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = n_gpu_layers
        mparams.use_extra_bufts = self.cpu_settings.extra_bufts
        self._model = LlamaModel(path_model=str(self.path), params=mparams, verbose=False)
        # The header through llama.cpp, which has just read it (gguf's Python reader takes
        # seconds over a large vocabulary).
        self.context_length = n_ctx or min(self._model.n_ctx_train(), DEFAULT_MAX_CONTEXT)
        raw_template = llama_cpp.llama_model_chat_template(self._model.model, None)
        template = raw_template.decode("utf-8") if raw_template else None
        cparams = llama_cpp.llama_context_default_params()
        # Unified: every slot may grow to a whole window, and all together hold `kv_tokens`
        # (admission keeps the sum of what running requests may reach under it).
        self._pool = max(kv_tokens or self.context_length, self.context_length)
        self._unified = kv_unified and parallel > 1
        cparams.n_ctx = self._pool if self._unified else self.context_length * parallel
        cparams.n_seq_max = parallel
        cparams.n_batch = cparams.n_ubatch = BATCH_TOKENS
        cparams.n_threads = cparams.n_threads_batch = n_threads or cpu_cores()
        # Given a count, the caller decides; by default the engine decodes with the cores
        # other processes leave free (see core_share).
        self._share = None if n_threads else CoreShare(cparams.n_threads, cpu_cores())
        self._threads = cparams.n_threads
        cparams.kv_unified = self._unified
        self._ctx = LlamaContext(model=self._model, params=cparams, verbose=False)
        self._prompt_cache = PromptCache(llama_cpp, self._ctx, cache_ram_mb * 2**20)
        self._batch = LlamaBatch(n_tokens=BATCH_TOKENS, embd=0, n_seq_max=parallel, verbose=False)
        self._n_vocab = self._model.n_vocab()
        self._adapters = {name: self._load_adapter(name, file)
                          for name, file in (adapters or {}).items()}  # fmt: skip
        self._applied: str | None = None  # the adapter set on the context now
        self._turn = 0  # which adapter's sequences the next step decodes, when several wait
        self._vocab = self._model.vocab
        self._pieces: dict[int, bytes] = {}
        self._drafter: Drafter | None = None
        self._draft_min = min(draft_min, draft_max)
        if draft is not None:
            self._drafter = Drafter(
                draft,
                target=self._model,
                target_name=self.path.name,
                parallel=parallel,
                n_ctx=self.context_length,
                n_threads=self._threads,
                n_gpu_layers=n_gpu_layers,
                extra_bufts=self.cpu_settings.extra_bufts,
                draft_max=draft_max,
            )
            self._drafter.calibrate(self._ctx, self._batch)

        self.chat_template = template
        self._native_tools = template_supports_tools(template)
        bos, eos = self._model.token_bos(), self._model.token_eos()
        self._bos_text = self._model.token_get_text(bos) if bos >= 0 else ""
        self._formatter = (
            Jinja2ChatFormatter(
                template=template,
                eos_token=self._model.token_get_text(eos) if eos >= 0 else "",
                bos_token=self._bos_text,
            )
            if template
            else None
        )

        self._waiting: deque[_Seq] = deque()
        self._active: dict[int, _Seq] = {}
        self._free = list(range(parallel))
        # Tokens each slot holds in the KV cache. A finished sequence leaves its tokens there,
        # so the next prompt sharing a prefix (the same chat one turn later, the same system
        # prompt) skips recomputing it: prefix caching, as in llama.cpp's own server.
        self._slot_tokens: list[list[int]] = [[] for _ in range(parallel)]
        # The adapter each slot's cached tokens were computed with: a prefix computed under
        # one adapter is not the same prefix under another.
        self._slot_adapter: list[str | None] = [None] * parallel
        self._slot_used = [0] * parallel  # when each slot last took a request (LRU)
        self._admitted = 0
        self._cv = threading.Condition()
        self._closed = False
        self._ops: deque[tuple[Callable[[], Any], Future[Any]]] = deque()  # engine thread runs
        self._thread = threading.Thread(target=self._run, name="lmfast-llama.cpp", daemon=True)
        self._thread.start()

    # -- public API ------------------------------------------------------------------------
    def render_chat(self, messages: list[ChatMessage], tools: list[ToolSpec] | None = None) -> str:
        msgs = prepare_messages(
            messages,
            tools=tools,
            default_system=self.default_system,
            native_tools=self._native_tools,
        )
        if self._formatter is None:  # no template in the file: a plain transcript
            body = "".join(f"{m['role']}: {m['content']}\n" for m in msgs)
            return body + "assistant:"
        native = openai_tools(tools) if tools and self._native_tools else None
        return self._formatter(messages=msgs, tools=native).prompt

    def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        """Token ids of `text` (special tokens in it parsed); with `add_special`, BOS is
        prepended when the model expects one and the text does not start with it."""
        add_bos = (
            add_special
            and self._model.add_bos_token()
            and not (self._bos_text and text.startswith(self._bos_text))
        )
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    @property
    def bos_token(self) -> int | None:
        """The BOS id when the model expects one at the start of a text, else None."""
        bos = self._model.token_bos()
        return bos if bos >= 0 and self._model.add_bos_token() else None

    @property
    def eos_token(self) -> int:
        return self._model.token_eos()

    @property
    def vocab_size(self) -> int:
        """Token ids are in [0, vocab_size): llama.cpp aborts the process on others."""
        return self._n_vocab

    def special_tokens(self) -> dict[str, str | None]:
        """Text of the BOS / EOS tokens (None when the model has none)."""
        bos, eos = self._model.token_bos(), self._model.token_eos()
        return {
            "bos_token": self._model.token_get_text(bos) if bos >= 0 else None,
            "eos_token": self._model.token_get_text(eos) if eos >= 0 else None,
        }

    def detokenize(self, tokens: list[int]) -> str:
        if bad := [t for t in tokens if not 0 <= t < self._n_vocab]:
            raise ValueError(f"token ids must be in [0, {self._n_vocab}); got {bad[:5]}")
        return self._model.detokenize(tokens).decode("utf-8", "replace")

    def submit(
        self, request: EngineRequest, stream: GenerationStream | None = None
    ) -> GenerationStream:
        """Queue `request`; its events go to `stream` (a new one by default)."""
        prompt = (
            request.prompt if isinstance(request.prompt, list) else self.tokenize(request.prompt)
        )
        if not prompt:
            bos = self._model.token_bos()
            prompt = [bos if bos >= 0 else self._model.token_eos()]
        if any(t < 0 or t >= self._n_vocab for t in prompt):
            raise ValueError(f"prompt token ids must be in [0, {self._n_vocab})")
        if len(prompt) >= self.context_length:
            raise PromptTooLongError(len(prompt), self.context_length)
        check_logit_bias(request.params, self._n_vocab)
        if request.grammar is not None:
            _check_grammar(self._model, request.grammar)
        if request.adapter is not None and request.adapter not in self._adapters:
            known = ", ".join(sorted(self._adapters)) or "none"
            raise RequestFieldError(
                "model", f"adapter {request.adapter!r} is not loaded (loaded: {known})"
            )
        seq = _Seq(
            request=request,
            prompt=prompt,
            max_new=min(request.params.max_tokens, self.context_length - len(prompt)),
            stream=stream or GenerationStream(),
            assembler=TextAssembler(list(request.params.stop)),
            prompt_logprobs=[None] * (len(prompt) - 1) if request.prompt_logprobs else [],
        )
        with self._cv:
            if self._closed:
                raise EngineBusyError("the engine is shutting down")
            if len(self._waiting) >= self.queue_size and len(self._free) == 0:
                raise EngineBusyError(
                    f"{len(self._active)} requests running and {len(self._waiting)} waiting"
                )
            self._waiting.append(seq)
            self._cv.notify()
        return seq.stream

    def add_adapter(self, name: str, file: str) -> None:
        """Load a GGUF LoRA while serving; requests may name it once this returns."""

        def add() -> None:
            if name in self._adapters:
                raise RequestFieldError("lora_name", f"adapter {name!r} is already loaded")
            self._adapters[name] = self._load_adapter(name, file)

        self._in_engine_thread(add)

    def remove_adapter(self, name: str) -> None:
        """Unload an adapter no request is using; its cached prefixes go with it."""

        def remove() -> None:
            if name not in self._adapters:
                known = ", ".join(sorted(self._adapters)) or "none"
                raise RequestFieldError("lora_name", f"adapter {name!r} is not loaded ({known})")
            users = [s for s in (*self._active.values(), *self._waiting)
                     if s.request.adapter == name]  # fmt: skip
            if users:
                raise EngineBusyError(f"adapter {name!r} is in use by {len(users)} request(s)")
            if self._applied == name:
                self._llama.llama_set_adapters_lora(self._ctx.ctx, None, 0, None)
                self._applied = None
            for slot in range(self.parallel):
                if self._slot_adapter[slot] == name and slot in self._free:
                    self._llama.llama_memory_seq_rm(self._ctx.memory, slot, -1, -1)
                    self._slot_tokens[slot], self._slot_adapter[slot] = [], None
            self._prompt_cache.forget(name)
            self._llama.llama_adapter_lora_free(self._adapters.pop(name))

        self._in_engine_thread(remove)

    def _in_engine_thread(self, op: Callable[[], Any]) -> Any:
        """Run `op` between two decode steps (llama.cpp's context is the engine thread's)."""
        done: Future[Any] = Future()
        with self._cv:
            if self._closed:
                raise EngineBusyError("the engine is shutting down")
            self._ops.append((op, done))
            self._cv.notify()
        return done.result(timeout=120)

    def stats(self) -> dict[str, int]:
        running, waiting = len(self._active), len(self._waiting)
        cache = self._prompt_cache
        out = {"running": running, "waiting": waiting, "threads": self._threads,
               "prompt_cache_bytes": cache.bytes, "prompt_cache_entries": len(cache),
               "prompt_cache_hits": cache.hits}  # fmt: skip
        if self._drafter is not None:
            d = self._drafter
            out |= {"draft_tokens": d.drafted, "draft_accepted": d.accepted}
        return out

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)
        for seq in list(self._active.values()) + list(self._waiting):
            seq.stream.put(Finished("cancelled", len(seq.prompt), seq.generated))
        self._batch.close()
        self._ctx.close()
        if self._drafter is not None:
            self._drafter.close()
        self._model.close()

    # -- engine thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not (self._closed or self._waiting or self._active or self._ops):
                    self._cv.wait()
                if self._closed:
                    return
                while self._ops:
                    op, done = self._ops.popleft()
                    try:
                        done.set_result(op())
                    except Exception as e:
                        done.set_exception(e)
                while self._waiting and self._free:
                    seq = self._waiting[0]
                    if seq.stream.cancelled:
                        self._waiting.popleft()
                        seq.stream.put(Finished("cancelled", len(seq.prompt), 0))
                        continue
                    if not self._fits(seq):
                        break  # waits for a running request to finish and free its share
                    self._waiting.popleft()
                    self._assign_slot(seq)
                    seq.sampler = self._make_sampler(seq.request)
                    self._active[seq.seq_id] = seq
            try:
                self._step()
            except Exception as e:  # never let one bad step kill the server
                for seq in list(self._active.values()):
                    self._finish(seq, "error", error=f"{type(e).__name__}: {e}")

    def _fits(self, seq: _Seq) -> bool:
        """Whether the shared KV pool can hold `seq` at its longest beside what the running
        requests may still reach; idle slots' cached tokens are moved to RAM to make room."""
        if not self._unified:
            return True  # each slot has its own window
        need = len(seq.prompt) + seq.max_new
        running = sum(len(s.prompt) + s.max_new for s in self._active.values())
        if self._active and running + need > self._pool:
            return False
        idle = sorted(self._free, key=lambda slot: self._slot_used[slot])
        while idle and running + need + sum(len(self._slot_tokens[i]) for i in idle) > self._pool:
            self._release(idle.pop(0))
        return True

    def _release(self, slot: int) -> None:
        """Empty an idle slot's KV, its state kept in the RAM prompt cache."""
        if self._slot_tokens[slot]:
            self._prompt_cache.save(slot, self._slot_tokens[slot], self._slot_adapter[slot])
            self._llama.llama_memory_seq_rm(self._ctx.memory, slot, -1, -1)
            self._slot_tokens[slot] = []

    def _assign_slot(self, seq: _Seq) -> None:
        """Take the free slot whose cached tokens share the longest prefix with the prompt;
        with none worth reusing, the least recently used one, its state saved to RAM first
        (so a conversation that comes back after other requests took its slot is loaded, not
        recomputed). A longer prefix in the RAM cache than in any slot is loaded into it."""

        def shared(slot: int) -> int:
            if self._slot_adapter[slot] != seq.request.adapter:
                return 0
            return shared_prefix(self._slot_tokens[slot], seq.prompt)

        slot = max(self._free, key=lambda i: (shared(i), -self._slot_used[i]))
        if shared(slot) < MIN_PREFIX_REUSE:  # nothing to reuse: the coldest slot
            slot = min(self._free, key=lambda i: self._slot_used[i])
        self._free.remove(slot)
        self._admitted += 1
        self._slot_used[slot] = self._admitted
        key, from_ram = self._prompt_cache.best(seq.prompt, seq.request.adapter)
        if from_ram > shared(slot) and not seq.request.prompt_logprobs:
            self._release(slot)
            loaded = self._prompt_cache.load(key, slot)
            if loaded is not None:
                self._slot_tokens[slot], self._slot_adapter[slot] = loaded, seq.request.adapter
        elif shared(slot) < len(self._slot_tokens[slot]):
            self._prompt_cache.save(slot, self._slot_tokens[slot], self._slot_adapter[slot])
        # Keep at least one prompt token to decode (its logits start generation); scoring
        # requests need logits for every prompt position, so they start from scratch.
        keep = min(shared(slot), len(seq.prompt) - 1)
        if keep < MIN_PREFIX_REUSE:
            # Reusing a few tokens (the chat template's opening) saves nothing, and logits
            # computed in a differently shaped batch differ in the last bits: enough to flip
            # a small model's greedy reply. An unrelated prompt starts from scratch, so its
            # reply does not depend on what the slot served before.
            keep = 0
        if seq.request.prompt_logprobs:
            keep = min(keep, max(0, seq.request.score_from - 1))
        if not self._llama.llama_memory_seq_rm(self._ctx.memory, slot, keep, -1):
            self._llama.llama_memory_seq_rm(self._ctx.memory, slot, -1, -1)
            keep = 0
        self._slot_tokens[slot] = seq.prompt[:keep]
        self._slot_adapter[slot] = seq.request.adapter
        seq.seq_id, seq.fed, seq.n_past = slot, keep, keep
        seq.cached_tokens = keep

    def _make_sampler(self, request: EngineRequest) -> Any:
        from llama_cpp._internals import LlamaSampler
        from llama_cpp.llama_grammar import LlamaGrammar

        p = request.params
        sampler = LlamaSampler()
        sampler.add_penalties(
            n_vocab=self._n_vocab,
            penalty_last_n=64,
            penalty_repeat=p.repetition_penalty,
            penalty_freq=p.frequency_penalty,
            penalty_present=p.presence_penalty,
        )
        if p.logit_bias:
            sampler.add_logit_bias(self._n_vocab, p.logit_bias)
        if request.grammar is not None:
            grammar = LlamaGrammar.from_string(request.grammar, verbose=False)
            if request.grammar_trigger:
                sampler.add_grammar_lazy_patterns(
                    self._model, grammar, [re.escape(request.grammar_trigger)], []
                )
            else:
                sampler.add_grammar(self._model, grammar)
        if p.temperature == 0:
            sampler.add_greedy()
        else:
            if p.top_k:
                sampler.add_top_k(p.top_k)
            sampler.add_top_p(p.top_p, 1)
            if p.min_p:
                sampler.add_min_p(p.min_p, 1)
            sampler.add_temp(p.temperature)
            sampler.add_dist(p.seed if p.seed is not None else self._llama.LLAMA_DEFAULT_SEED)
        return sampler

    def _step(self) -> None:
        llama = self._llama
        for seq in [s for s in self._active.values() if s.stream.cancelled]:
            self._finish(seq, "cancelled")
        if not self._active:
            return
        group = self._group()
        self._batch.reset()
        b = self._batch.batch
        n = 0
        sample_at: list[tuple[_Seq, int, list[int]]] = []  # (seq, batch index, its drafts)
        scored: list[tuple[_Seq, int, int]] = []  # (seq, batch index, prompt position)
        drafts = self._drafts(group)

        def add(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = token, pos, 1, logits
            b.seq_id[n][0] = seq_id
            n += 1

        for seq in group:
            if seq.fed == len(seq.prompt):
                drafted = drafts.get(seq.seq_id, [])
                add(seq.last_token, seq.n_past, seq.seq_id, True)
                for j, tok in enumerate(drafted):  # checked in this same decode
                    add(tok, seq.n_past + 1 + j, seq.seq_id, True)
                self._slot_tokens[seq.seq_id].append(seq.last_token)
                seq.n_past += 1
                sample_at.append((seq, n - 1 - len(drafted), drafted))
        for seq in group:
            if seq.fed == len(seq.prompt) or n >= BATCH_TOKENS:
                continue
            chunk = seq.prompt[seq.fed : seq.fed + BATCH_TOKENS - n]
            for j, tok in enumerate(chunk):
                pos = seq.fed + j
                last = pos == len(seq.prompt) - 1
                wanted = seq.request.prompt_logprobs and pos + 1 >= seq.request.score_from
                add(tok, pos, seq.seq_id, last or wanted)
                if wanted and not last:
                    scored.append((seq, n - 1, pos))
                if last:
                    sample_at.append((seq, n - 1, []))
            seq.fed += len(chunk)
            seq.n_past = seq.fed
            self._slot_tokens[seq.seq_id].extend(chunk)
        b.n_tokens = n
        if self._share is not None and (threads := self._share.threads()) != self._threads:
            llama.llama_set_n_threads(self._ctx.ctx, threads, threads)
            if self._drafter is not None:
                self._drafter.set_threads(threads)
            self._threads = threads
        rc = llama.llama_decode(self._ctx.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

        for seq, idx, pos in scored:
            seq.prompt_logprobs[pos] = self._logprob(
                idx, seq.prompt[pos + 1], seq.request.params.top_logprobs
            )
        for seq, idx, drafted in sample_at:
            self._verify(seq, idx, drafted)

    def _drafts(self, group: list[_Seq]) -> dict[int, list[int]]:
        """Draft tokens for the decoding sequences of this step (none without a draft model,
        or when so many sequences decode that the batch is already wide)."""
        if self._drafter is None:
            return {}
        decoding = [s for s in group if s.fed == len(s.prompt)]
        if not decoding or len(decoding) > SPECULATE_UP_TO:
            return {}
        plan = self._drafter.plan
        most = plan.tokens() if plan is not None else self._drafter.draft_max
        most = max(most, self._draft_min)
        if most == 0:
            return {}
        wants = {}
        for seq in decoding:
            # Room: tokens the request may still generate and the context still holds,
            # less the one this step yields anyway.
            room = min(
                most,
                seq.max_new - seq.generated - 1,
                self.context_length - seq.n_past - 2,
            )
            if room > 0:
                wants[seq.seq_id] = ([*self._slot_tokens[seq.seq_id], seq.last_token], room)
        return self._drafter.propose(wants) if wants else {}

    def _verify(self, seq: _Seq, idx: int, drafted: list[int]) -> None:
        """Sample at the sequence's positions in turn, keeping each drafted token the served
        model samples itself; the first token it samples otherwise ends the run (it is the
        next token, as without a draft), and the cache drops the drafted tokens after it."""
        accepted = 0
        for i in range(len(drafted) + 1):
            token = self._sample(seq, idx + i)
            if token is None:  # the sequence ended, perhaps on the drafted token itself
                accepted += i < len(drafted) and seq.last_token == drafted[i]
                break
            if i == len(drafted) or token != drafted[i]:
                break
            # The drafted token is the sampled one and already sits in the cache.
            self._slot_tokens[seq.seq_id].append(token)
            seq.n_past += 1
            accepted += 1
        if drafted:
            drafter = self._drafter
            assert drafter is not None
            drafter.accepted += accepted
            if drafter.plan is not None:
                drafter.plan.observe(len(drafted), accepted)
            self._llama.llama_memory_seq_rm(self._ctx.memory, seq.seq_id, seq.n_past, -1)

    def _group(self) -> list[_Seq]:
        """The sequences this step decodes: every running one, or, when they use different
        adapters, those of one adapter (llama.cpp applies adapters to a whole batch, as
        llama-server batches only requests with the same LoRA), the adapters taking turns."""
        seqs = list(self._active.values())
        if not self._adapters:
            return seqs
        names = sorted({s.request.adapter or "" for s in seqs})
        chosen = names[self._turn % len(names)] or None
        self._turn += 1
        if chosen != self._applied:
            llama = self._llama
            if chosen is None:
                rc = llama.llama_set_adapters_lora(self._ctx.ctx, None, 0, None)
            else:
                one = (llama.llama_adapter_lora_p_ctypes * 1)(self._adapters[chosen])
                rc = llama.llama_set_adapters_lora(self._ctx.ctx, one, 1, (ctypes.c_float * 1)(1.0))
            if rc != 0:
                raise RuntimeError(f"llama_set_adapters_lora returned {rc} for {chosen!r}")
            self._applied = chosen
        return [s for s in seqs if s.request.adapter == chosen]

    def _load_adapter(self, name: str, file: str) -> Any:
        adapter = self._llama.llama_adapter_lora_init(self._model.model, str(file).encode())
        if not adapter:
            raise ValueError(
                f"adapter {name!r}: llama.cpp cannot apply {file} to {self.path.name} (not a "
                "LoRA GGUF, or made for another base model)"
            )
        return adapter

    def _logits(self, idx: int) -> np.ndarray:
        ptr = self._llama.llama_get_logits_ith(self._ctx.ctx, idx)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def piece(self, token: int) -> bytes:
        """Bytes of one token (cached: the vocabulary is fixed)."""
        cached = self._pieces.get(token)
        if cached is None:
            if not 0 <= token < self._n_vocab:  # llama.cpp would abort the process
                raise ValueError(f"token id {token} is not in [0, {self._n_vocab})")
            buf = ctypes.create_string_buffer(64)
            n = self._llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:  # longer than the buffer: llama.cpp says how long
                buf = ctypes.create_string_buffer(-n)
                n = self._llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            cached = self._pieces[token] = buf.raw[:n]
        return cached

    def _logprob(self, idx: int, token: int, top_n: int) -> TokenLogprob:
        return token_logprob(self._logits(idx), token, top_n, self.piece)

    def _sample(self, seq: _Seq, idx: int) -> int | None:
        """Sample the next token from the logits at batch index `idx`; None when the
        sequence ended (end of generation, a stop string, its length)."""
        params = seq.request.params
        if seq.max_new <= 0:
            self._finish(seq, "length")
            return None
        token = self._llama.llama_sampler_sample(seq.sampler.sampler, self._ctx.ctx, idx)
        seq.last_token = token
        if self._llama.llama_vocab_is_eog(self._vocab, token):
            tail = None
            if params.logprobs and seq.request.eos_logprob:
                tail = self._logprob(idx, token, params.top_logprobs)
            self._finish(seq, "stop", tail=tail)
            return None
        lp = self._logprob(idx, token, params.top_logprobs) if params.logprobs else None
        seq.generated += 1
        text, lps = seq.assembler.feed(self.piece(token), lp)
        if text or lps:
            seq.stream.put(Delta(text, lps))
        if seq.assembler.stopped:
            self._finish(seq, "stop")
        elif seq.generated >= seq.max_new:
            self._finish(seq, "length")
        else:
            return token
        return None

    def _finish(
        self,
        seq: _Seq,
        reason: FinishReason,
        error: str | None = None,
        tail: TokenLogprob | None = None,
    ) -> None:
        if reason in ("stop", "length"):
            text, lps = seq.assembler.flush()
            if text or lps:
                seq.stream.put(Delta(text, lps))
        if tail is not None:
            seq.stream.put(Delta("", [tail]))
        seq.stream.put(
            Finished(
                reason,
                prompt_tokens=len(seq.prompt),
                completion_tokens=seq.generated,
                prompt_token_ids=seq.prompt,
                cached_tokens=seq.cached_tokens,
                prompt_logprobs=[None, *seq.prompt_logprobs]
                if seq.request.prompt_logprobs
                else None,
                error=error,
            )
        )
        if reason == "error":  # the cache may be inconsistent: drop it
            self._llama.llama_memory_seq_rm(self._ctx.memory, seq.seq_id, -1, -1)
            self._slot_tokens[seq.seq_id] = []
            if self._drafter is not None:
                self._drafter.forget(seq.seq_id)
        if seq.sampler is not None:
            seq.sampler.close()
        self._active.pop(seq.seq_id, None)
        self._free.append(seq.seq_id)


def _check_grammar(model: Any, grammar: str) -> None:
    """Parse the grammar as the sampler will. llama.cpp answers a grammar it cannot parse
    with a null sampler, which crashes the process when sampling starts (LlamaGrammar.
    from_string checks nothing), so a bad grammar must be refused here, as a request error."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(model.vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise RequestFieldError(
            "grammar", "llama.cpp's GBNF parser rejects it (see the engine's log for where)"
        )
    llama_cpp.llama_sampler_free(sampler)
