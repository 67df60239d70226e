"""transformers engine: Hugging Face folders, LoRA adapters, and anything llama.cpp can't run.

A worker thread decodes one request at a time with the KV cache (prefill once, then one token
per forward pass), sampling with transformers' logits processors, so stop strings, logprobs,
cancellation and streaming behave exactly as in the llama.cpp engine.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

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
    SamplingParams,
    TokenLogprob,
    ToolSpec,
    check_logit_bias,
)
from lmfast.inference.chat_format import render_with_tokenizer
from lmfast.inference.decoding import TextAssembler, token_logprob

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MAX_CONTEXT = 8192


class _OpenAIPenalties:
    """frequency/presence penalties with OpenAI's additive semantics (transformers has none)."""

    def __init__(self, prompt_len: int, frequency: float, presence: float) -> None:
        self.prompt_len, self.frequency, self.presence = prompt_len, frequency, presence

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_len :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores)
        counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class _LogitBias:
    """OpenAI's logit_bias: add a fixed value to chosen token ids' logits."""

    def __init__(self, bias: dict[int, float]) -> None:
        self.ids, self.values = list(bias), list(bias.values())

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores[:, self.ids] += torch.tensor(self.values, dtype=scores.dtype, device=scores.device)
        return scores


def _processors(params: SamplingParams, prompt_len: int) -> Any:
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs: list[Any] = []
    if params.logit_bias:
        procs.append(_LogitBias(params.logit_bias))
    if params.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.frequency_penalty or params.presence_penalty:
        procs.append(
            _OpenAIPenalties(prompt_len, params.frequency_penalty, params.presence_penalty)
        )
    if params.temperature > 0:
        procs.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k:
            procs.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            procs.append(TopPLogitsWarper(params.top_p))
        if params.min_p:
            procs.append(MinPLogitsWarper(params.min_p))
    return LogitsProcessorList(procs)


class TransformersEngine:
    """A transformers causal LM plus tokenizer, served one request at a time."""

    name = "transformers"
    supports_grammar = True  # through xgrammar (lmfast.inference.constrain)

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        default_system: str | None = None,
        queue_size: int = 64,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.default_system = default_system
        self.queue_size = queue_size
        positions = int(getattr(model.config, "max_position_embeddings", 2048))
        self.context_length = min(positions, MAX_CONTEXT)
        self._eos = eos_ids(model, tokenizer)
        self._grammars: Any = None  # a GrammarCompiler, made at the first grammar request
        self._queue: deque[tuple[EngineRequest, list[int], GenerationStream, Any]] = deque()
        self._running = 0
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lmfast-transformers", daemon=True)
        self._thread.start()

    @classmethod
    def load(
        cls, reference: Any = None, *, device: str | None = None, queue_size: int = 64
    ) -> TransformersEngine:
        from lmfast.loading import load_transformers
        from lmfast.registry import ResolvedModel, resolve_model

        resolved = reference if isinstance(reference, ResolvedModel) else resolve_model(reference)
        model, tokenizer = load_transformers(resolved, device=device or _best_device())
        return cls(model, tokenizer, default_system=resolved.default_system, queue_size=queue_size)

    # -- public API ------------------------------------------------------------------------
    def render_chat(self, messages: list[ChatMessage], tools: list[ToolSpec] | None = None) -> str:
        return render_with_tokenizer(self.tokenizer, messages, tools, self.default_system)

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def submit(self, request: EngineRequest) -> GenerationStream:
        compiled = self._compile(request.grammar) if request.grammar is not None else None
        ids = request.prompt if isinstance(request.prompt, list) else self.tokenize(request.prompt)
        if not ids:
            ids = [self.tokenizer.bos_token_id or next(iter(self._eos))]
        vocab = self.model.get_input_embeddings().weight.shape[0]
        if any(t < 0 or t >= vocab for t in ids):
            raise ValueError(f"prompt token ids must be in [0, {vocab})")
        if len(ids) >= self.context_length:
            raise PromptTooLongError(len(ids), self.context_length)
        check_logit_bias(request.params, vocab)
        stream = GenerationStream()
        with self._cv:
            if self._closed or len(self._queue) >= self.queue_size:
                raise EngineBusyError(f"{self._running} running and {len(self._queue)} waiting")
            self._queue.append((request, ids, stream, compiled))
            self._cv.notify()
        return stream

    def _compile(self, grammar: str) -> Any:
        from lmfast.inference.constrain import GrammarCompiler

        if self._grammars is None:
            width = int(self.model.get_output_embeddings().weight.shape[0])
            self._grammars = GrammarCompiler(self.tokenizer, width, self._eos)
        try:
            return self._grammars.compile(grammar)
        except ValueError as e:
            raise RequestFieldError("grammar", str(e)) from None

    def stats(self) -> dict[str, int]:
        return {"running": self._running, "waiting": len(self._queue)}

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)

    # -- worker thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._queue:
                    self._cv.wait()
                if self._closed:
                    return
                request, ids, stream, compiled = self._queue.popleft()
                self._running = 1
            try:
                self._generate(request, ids, stream, compiled)
            except Exception as e:
                stream.put(Finished("error", len(ids), 0, error=f"{type(e).__name__}: {e}"))
            finally:
                self._running = 0

    def piece(self, token: int) -> bytes:
        return str(self.tokenizer.decode([token], skip_special_tokens=True)).encode("utf-8")

    def _generate(
        self, request: EngineRequest, ids: list[int], stream: GenerationStream, compiled: Any
    ) -> None:
        import torch

        params = request.params
        device = self.model.device
        max_new = min(params.max_tokens, self.context_length - len(ids))
        procs = _processors(params, len(ids))
        gen = None
        if params.seed is not None:
            gen = torch.Generator(device=device).manual_seed(params.seed)
        assembler = TextAssembler(list(params.stop))
        grammar = (
            None
            if compiled is None
            else self._grammars.constraint(compiled, request.grammar_trigger)
        )
        all_ids = torch.tensor([ids], device=device)
        prompt_lps: list[TokenLogprob | None] | None = None
        generated, reason = 0, "length"
        eos_lp: TokenLogprob | None = None
        with torch.inference_mode():
            out = self.model(input_ids=all_ids, use_cache=True)
            if request.prompt_logprobs:
                logits = out.logits[0].float().cpu().numpy()
                prompt_lps = [None] + [
                    token_logprob(logits[i], ids[i + 1], params.top_logprobs, self.piece)
                    for i in range(len(ids) - 1)
                ]
            past, logits = out.past_key_values, out.logits[0, -1]
            while generated < max_new:
                if stream.cancelled:
                    reason = "cancelled"
                    break
                raw = logits.float()
                scores = procs(all_ids, raw[None])[0]
                if grammar is not None:
                    scores = scores.float().cpu()
                    grammar.mask(scores)
                if params.temperature > 0:
                    probs = torch.softmax(scores, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=gen))
                else:
                    token = int(scores.argmax())
                if token in self._eos:
                    reason = "stop"
                    if params.logprobs and request.eos_logprob:
                        eos_lp = token_logprob(
                            raw.cpu().numpy(), token, params.top_logprobs, self.piece
                        )
                    break
                generated += 1
                lp = (
                    token_logprob(raw.cpu().numpy(), token, params.top_logprobs, self.piece)
                    if params.logprobs
                    else None
                )
                piece = self.piece(token)
                text, lps = assembler.feed(piece, lp)
                if text or lps:
                    stream.put(Delta(text, lps))
                if assembler.stopped:
                    reason = "stop"
                    break
                if grammar is not None:
                    grammar.accept(token, piece.decode("utf-8", "replace"))
                    if grammar.finished:
                        reason = "stop"
                        break
                step = torch.tensor([[token]], device=device)
                all_ids = torch.cat([all_ids, step], dim=1)
                out = self.model(input_ids=step, past_key_values=past, use_cache=True)
                past, logits = out.past_key_values, out.logits[0, -1]
        final: FinishReason = reason  # type: ignore[assignment]
        if final != "cancelled":
            text, lps = assembler.flush()
            if text or lps:
                stream.put(Delta(text, lps))
        if eos_lp is not None:
            stream.put(Delta("", [eos_lp]))
        stream.put(
            Finished(final, len(ids), generated, prompt_token_ids=ids, prompt_logprobs=prompt_lps)
        )


def _best_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token id that ends a generation for this model."""
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found
