"""Models as evaluators: log-likelihoods of continuations and greedy generations, batched.

Two backends share one small interface: llama.cpp (GGUF files; the serving engine with its
continuous batching, so N requests are decoded together) and transformers (any Hugging Face
folder or adapter, or a model already in memory such as the one being trained; batched
forward passes and `generate`). Everything is deterministic: log-likelihoods are exact sums
and generation is greedy.

Log-likelihood requests are token-level pairs (context ids, continuation ids) as in
lm-evaluation-harness, so the harness adapter and LMFast's own tasks score the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from lmfast.errors import BackendError, LMFastError
from lmfast.registry import ResolvedModel, resolve_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

ScorerBackend = Literal["auto", "llamacpp", "transformers"]
Tick = Callable[[int], None]  # called with how many requests just finished
DEFAULT_CONTEXT = 2048


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int


class Scorer(Protocol):
    """What evaluation needs from a model."""

    backend: str
    context_length: int
    has_chat_template: bool
    device: str

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, special tokens in the text parsed, none added."""
        ...

    @property
    def prefix_token(self) -> int:
        """The token a document starts after: BOS when the model uses one, else EOS."""
        ...

    def render_chat(self, messages: list[dict[str, str]]) -> str: ...

    def score(
        self, pairs: list[tuple[list[int], list[int]]], tick: Tick | None = None
    ) -> list[tuple[float, bool]]:
        """(sum of log p(continuation | context), whether greedy decoding would produce the
        continuation) for each pair; contexts are never empty."""
        ...

    def generate(
        self, prompts: list[str], max_tokens: int, stop: list[str], tick: Tick | None = None
    ) -> list[Generation]:
        """Greedy completions of rendered prompts."""
        ...

    def first_token_seconds(self, prompt: str) -> float:
        """Latency of `prompt` alone to its first generated text."""
        ...

    def close(self) -> None: ...


def encode_pair(scorer: Scorer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Tokenize context + continuation as one text and split it where the context ends
    (lm-evaluation-harness's rule: trailing spaces of the context move to the continuation),
    so the continuation is tokenized as the model would see it in running text."""
    n_spaces = len(context) - len(context.rstrip(" "))
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = scorer.encode(context + continuation)
    ctx = scorer.encode(context)
    return ctx or [scorer.prefix_token], whole[len(ctx) :]


def with_bos(context: list[int], bos: int | None) -> list[int]:
    """The context as the model saw texts in training: after BOS, for models that use one."""
    if bos is None or context[:1] == [bos]:
        return context
    return [bos, *context]


def fit_window(
    context: list[int], continuation: list[int], limit: int
) -> tuple[list[int], list[int]]:
    """Drop the oldest context tokens so the pair fits `limit` tokens (at least one of context)."""
    if len(continuation) >= limit:
        raise LMFastError(
            f"a continuation of {len(continuation)} tokens does not fit the "
            f"{limit}-token window; shorten the choices or raise the window"
        )
    keep = limit - len(continuation)
    return context[-keep:], continuation


def load_scorer(
    model: str | ResolvedModel | None,
    *,
    backend: ScorerBackend = "auto",
    batch_size: int = 8,
    device: str | None = None,
    context_length: int | None = None,
) -> Scorer:
    """A scorer for any model reference: llama.cpp for GGUF files, transformers otherwise."""
    resolved = model if isinstance(model, ResolvedModel) else resolve_model(model)
    if backend == "auto":
        backend = "llamacpp" if resolved.format == "gguf" else "transformers"
    if backend == "llamacpp":
        if resolved.format != "gguf":
            raise BackendError(
                f"backend='llamacpp' needs a .gguf model and {resolved.name} is a "
                f"{resolved.format} folder; use backend='transformers' (or export it to GGUF)"
            )
        return LlamaCppScorer(resolved, parallel=batch_size, context_length=context_length)
    if backend != "transformers":
        raise BackendError(f"backend={backend!r}: allowed are auto, llamacpp, transformers")
    return TransformersScorer.load(resolved, batch_size=batch_size, device=device)


class LlamaCppScorer:
    """A GGUF model through LMFast's llama.cpp engine: all requests are queued at once and
    decoded `parallel` at a time (continuous batching)."""

    backend = "llamacpp"
    device = "cpu"

    def __init__(
        self, resolved: ResolvedModel, *, parallel: int = 8, context_length: int | None = None
    ) -> None:
        from lmfast.gguf_meta import read_gguf
        from lmfast.inference.llamacpp import LlamaCppEngine

        meta = read_gguf(resolved.path)
        n_ctx = context_length or min(meta.spec.context_length, DEFAULT_CONTEXT)
        self.engine = LlamaCppEngine(
            resolved.path,
            n_ctx=n_ctx,
            parallel=parallel,
            queue_size=1_000_000,
            default_system=resolved.default_system,
        )
        self.context_length = self.engine.context_length
        self.has_chat_template = meta.chat_template is not None
        self._bos = self.engine.bos_token

    def encode(self, text: str) -> list[int]:
        return self.engine.tokenize(text, add_special=False)

    @property
    def prefix_token(self) -> int:
        return self._bos if self._bos is not None else self.engine.eos_token

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        from lmfast.inference.base import ChatMessage

        return self.engine.render_chat([ChatMessage.model_validate(m) for m in messages])

    def score(
        self, pairs: list[tuple[list[int], list[int]]], tick: Tick | None = None
    ) -> list[tuple[float, bool]]:
        fitted = [fit_window(with_bos(c, self._bos), x, self.context_length) for c, x in pairs]
        # Choices of one question share their context. Waves of `parallel` distinct contexts:
        # first one pair per context (filling the slots' caches), then the rest, which find
        # their context cached in a slot and decode only the continuation.
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, _) in enumerate(fitted):
            groups.setdefault(tuple(ctx), []).append(i)
        members = list(groups.values())
        results: list[tuple[float, bool]] = [(0.0, False)] * len(fitted)
        for w in range(0, len(members), self.engine.parallel):
            wave = members[w : w + self.engine.parallel]
            self._score_now([g[0] for g in wave], fitted, results, tick)
            self._score_now([i for g in wave for i in g[1:]], fitted, results, tick)
        return results

    def _score_now(
        self,
        indices: list[int],
        fitted: list[tuple[list[int], list[int]]],
        results: list[tuple[float, bool]],
        tick: Tick | None,
    ) -> None:
        from lmfast.inference.base import EngineRequest, Finished, SamplingParams

        params = SamplingParams(max_tokens=0, temperature=0, top_logprobs=1)
        streams = []
        for i in indices:
            ctx, cont = fitted[i]
            request = EngineRequest(
                prompt=ctx + cont, params=params, prompt_logprobs=True, score_from=len(ctx)
            )
            streams.append(self.engine.submit(request))
        for i, stream in zip(indices, streams, strict=True):
            n_ctx, n_cont = len(fitted[i][0]), len(fitted[i][1])
            finished = next(e for e in stream if isinstance(e, Finished))
            if finished.finish_reason == "error" or finished.prompt_logprobs is None:
                raise LMFastError(f"llama.cpp could not score a request: {finished.error}")
            total, greedy = 0.0, True
            for lp in finished.prompt_logprobs[n_ctx : n_ctx + n_cont]:
                assert lp is not None
                total += lp.logprob
                greedy = greedy and lp.logprob >= lp.top_logprobs[0].logprob - 1e-6
            results[i] = (total, greedy)
            if tick:
                tick(1)

    def generate(
        self, prompts: list[str], max_tokens: int, stop: list[str], tick: Tick | None = None
    ) -> list[Generation]:
        from lmfast.inference.base import Delta, EngineRequest, Finished, SamplingParams

        params = SamplingParams(max_tokens=max_tokens, temperature=0, stop=stop[:16])
        streams = [self.engine.submit(EngineRequest(prompt=p, params=params)) for p in prompts]
        out = []
        for stream in streams:
            parts, finished = [], None
            for event in stream:
                if isinstance(event, Delta):
                    parts.append(event.text)
                elif isinstance(event, Finished):
                    finished = event
            assert finished is not None
            if finished.finish_reason == "error":
                raise LMFastError(f"llama.cpp generation failed: {finished.error}")
            out.append(
                Generation("".join(parts), finished.prompt_tokens, finished.completion_tokens)
            )
            if tick:
                tick(1)
        return out

    def first_token_seconds(self, prompt: str) -> float:
        """Time from submitting `prompt` alone to its first generated text."""
        from lmfast.inference.base import Delta, EngineRequest, SamplingParams

        # A fresh prompt each time: the prefix cache must not make the answer look instant.
        params = SamplingParams(max_tokens=4, temperature=0)
        started = time.perf_counter()
        for event in self.engine.submit(EngineRequest(prompt=prompt, params=params)):
            if isinstance(event, Delta) and event.text:
                return time.perf_counter() - started
        return time.perf_counter() - started

    def close(self) -> None:
        self.engine.close()


class TransformersScorer:
    """A transformers causal LM (plain or PEFT) scored with batched forward passes."""

    backend = "transformers"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        batch_size: int = 8,
        default_system: str | None = None,
        owns_model: bool = True,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.default_system = default_system
        self._owns = owns_model
        positions = int(getattr(model.config, "max_position_embeddings", DEFAULT_CONTEXT))
        self.context_length = min(positions, DEFAULT_CONTEXT)
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.device = str(model.device)
        add_bos = getattr(tokenizer, "add_bos_token", False) and tokenizer.bos_token_id is not None
        self._bos: int | None = int(tokenizer.bos_token_id) if add_bos else None
        # Tokens per forward pass: bounds the logits tensor (tokens x vocabulary floats).
        self.token_budget = max(self.context_length, 4096)

    @classmethod
    def load(
        cls, resolved: ResolvedModel, *, batch_size: int = 8, device: str | None = None
    ) -> TransformersScorer:
        import torch

        from lmfast.loading import load_transformers

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load_transformers(resolved, device=device)
        return cls(model, tokenizer, batch_size=batch_size, default_system=resolved.default_system)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @property
    def prefix_token(self) -> int:
        tok = self.tokenizer
        if self._bos is not None:
            return self._bos
        return int(tok.eos_token_id if tok.eos_token_id is not None else tok.bos_token_id)

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        from lmfast.inference.base import ChatMessage
        from lmfast.inference.chat_format import render_with_tokenizer

        msgs = [ChatMessage.model_validate(m) for m in messages]
        return render_with_tokenizer(self.tokenizer, msgs, None, self.default_system)

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices grouped longest first, at most batch_size rows and token_budget tokens."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        for i in order:
            if (
                batches
                and len(batches[-1]) < self.batch_size
                and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= self.token_budget
            ):
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def score(
        self, pairs: list[tuple[list[int], list[int]]], tick: Tick | None = None
    ) -> list[tuple[float, bool]]:
        import torch

        fitted = [fit_window(with_bos(c, self._bos), x, self.context_length) for c, x in pairs]
        rows = [c + x for c, x in fitted]
        results: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
        pad = self.tokenizer.pad_token_id or 0
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for batch in self._batches([len(r) for r in rows]):
                    width = len(rows[batch[0]])
                    ids = torch.full((len(batch), width), pad, dtype=torch.long)
                    mask = torch.zeros((len(batch), width), dtype=torch.long)
                    for j, i in enumerate(batch):
                        ids[j, : len(rows[i])] = torch.tensor(rows[i])
                        mask[j, : len(rows[i])] = 1
                    logits = self.model(
                        input_ids=ids.to(self.model.device),
                        attention_mask=mask.to(self.model.device),
                    ).logits
                    for j, i in enumerate(batch):
                        n_ctx, n_cont = len(fitted[i][0]), len(fitted[i][1])
                        # logits at position t predict token t + 1
                        part = logits[j, n_ctx - 1 : n_ctx - 1 + n_cont].float()
                        logprobs = torch.log_softmax(part, dim=-1)
                        target = torch.tensor(fitted[i][1], device=logprobs.device)
                        total = float(logprobs.gather(1, target[:, None]).sum())
                        greedy = bool((logprobs.argmax(dim=-1) == target).all())
                        results[i] = (total, greedy)
                    if tick:
                        tick(len(batch))
        finally:
            self.model.train(was_training)
        return results

    def generate(
        self, prompts: list[str], max_tokens: int, stop: list[str], tick: Tick | None = None
    ) -> list[Generation]:
        import torch

        from lmfast.inference.hf import eos_ids

        tok = self.tokenizer
        encoded = [self.encode(p) for p in prompts]
        out: list[Generation | None] = [None] * len(prompts)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        eos = eos_ids(self.model, tok)
        was_training = self.model.training
        self.model.eval()
        try:
            for batch in self._batches([len(e) + max_tokens for e in encoded]):
                width = max(len(encoded[i]) for i in batch)
                # Left padding: every row's next token is at the same column.
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for j, i in enumerate(batch):
                    n = len(encoded[i])
                    ids[j, width - n :] = torch.tensor(encoded[i])
                    mask[j, width - n :] = 1
                with torch.inference_mode():
                    generated = self.model.generate(
                        input_ids=ids.to(self.model.device),
                        attention_mask=mask.to(self.model.device),
                        max_new_tokens=max_tokens,
                        do_sample=False,
                        pad_token_id=pad,
                        stop_strings=stop or None,
                        tokenizer=tok if stop else None,
                    )
                for j, i in enumerate(batch):
                    new = generated[j, width:].tolist()
                    cut = next((k for k, t in enumerate(new) if t in eos), len(new))
                    text = tok.decode(new[:cut], skip_special_tokens=True)
                    text = _cut_at_stop(text, stop)
                    out[i] = Generation(text, len(encoded[i]), cut)
                if tick:
                    tick(len(batch))
        finally:
            self.model.train(was_training)
        return [g for g in out if g is not None]

    def first_token_seconds(self, prompt: str) -> float:
        started = time.perf_counter()
        self.generate([prompt], 1, [])
        return time.perf_counter() - started

    def close(self) -> None:
        if self._owns:
            del self.model


def _cut_at_stop(text: str, stop: list[str]) -> str:
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text
