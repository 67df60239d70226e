"""vLLM engine: high-throughput GPU serving of Hugging Face folders.

vLLM is not in the lock file: each vLLM release pins an exact torch build (0.33 pins
torch==2.14.0, which has no wheel on PyPI for some platforms the lock covers), so it is
installed on the GPU machine beside LMFast: `uv pip install vllm`.

vLLM's AsyncLLM runs on its own asyncio loop in a background thread; each LMFast request is
one `generate()` task there, streaming deltas into the request's GenerationStream. Output
constraints use vLLM's structured outputs with the same GBNF grammars the llama.cpp engine
uses (xgrammar accepts GBNF). vLLM has no lazy grammars, so tool_choice="auto" runs
unconstrained and relies on parsing.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

from lmfast.inference.base import (
    ChatMessage,
    Delta,
    EngineBusyError,
    EngineRequest,
    Finished,
    GenerationStream,
    PromptTooLongError,
    TokenLogprob,
    ToolSpec,
    TopLogprob,
    UnsupportedFeatureError,
)
from lmfast.inference.chat_format import render_with_tokenizer
from lmfast.registry import ResolvedModel

_FINISH = {"stop": "stop", "length": "length", "abort": "cancelled"}


class VLLMEngine:
    """A Hugging Face model served by vLLM (CUDA)."""

    name = "vllm"
    supports_grammar = True

    def __init__(
        self, resolved: ResolvedModel, *, n_ctx: int | None = None, queue_size: int = 256
    ) -> None:
        try:
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as e:
            raise UnsupportedFeatureError(
                "backend='vllm' needs the vllm package on a CUDA machine: uv pip install vllm"
            ) from e
        if resolved.format != "hf":
            raise UnsupportedFeatureError(
                f"vLLM serves Hugging Face folders; {resolved.name} is {resolved.format}. "
                "Convert it with `lmfast models convert` or use backend='llamacpp'."
            )
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(resolved.path))
        self.default_system = resolved.default_system
        self.queue_size = queue_size
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="lmfast-vllm", daemon=True
        )
        self._thread.start()
        args = AsyncEngineArgs(
            model=str(resolved.path), max_model_len=n_ctx, disable_log_stats=True
        )
        self._llm = self._call(self._create(AsyncLLM, args))
        self.context_length = int(self._llm.model_config.max_model_len)
        self._running = 0

    async def _create(self, cls: Any, args: Any) -> Any:
        return cls.from_engine_args(args)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def render_chat(self, messages: list[ChatMessage], tools: list[ToolSpec] | None = None) -> str:
        return render_with_tokenizer(self.tokenizer, messages, tools, self.default_system)

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def piece(self, token: int) -> bytes:
        return str(self.tokenizer.decode([token])).encode("utf-8")

    def submit(self, request: EngineRequest) -> GenerationStream:
        ids = request.prompt if isinstance(request.prompt, list) else self.tokenize(request.prompt)
        if len(ids) >= self.context_length:
            raise PromptTooLongError(len(ids), self.context_length)
        if self._running >= self.queue_size:
            raise EngineBusyError(f"{self._running} requests in flight")
        stream = GenerationStream()
        self._running += 1
        asyncio.run_coroutine_threadsafe(self._generate(request, ids, stream), self._loop)
        return stream

    def _sampling(self, request: EngineRequest, max_tokens: int) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        p = request.params
        structured = None
        if request.grammar is not None and request.grammar_trigger is None:
            structured = StructuredOutputsParams(grammar=request.grammar)
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k,
            min_p=p.min_p,
            repetition_penalty=p.repetition_penalty,
            frequency_penalty=p.frequency_penalty,
            presence_penalty=p.presence_penalty,
            seed=p.seed,
            logit_bias=p.logit_bias or None,
            stop=p.stop or None,
            logprobs=p.top_logprobs if p.logprobs else None,
            prompt_logprobs=p.top_logprobs if request.prompt_logprobs else None,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA,
        )

    async def _generate(
        self, request: EngineRequest, ids: list[int], stream: GenerationStream
    ) -> None:
        from vllm.inputs import TokensPrompt

        request_id = uuid.uuid4().hex
        max_tokens = min(request.params.max_tokens, self.context_length - len(ids))
        generated, reason, prompt_lps = 0, "stop", None
        try:
            async for out in self._llm.generate(
                TokensPrompt(prompt_token_ids=ids),
                self._sampling(request, max_tokens),
                request_id,
            ):
                if stream.cancelled:
                    await self._llm.abort(request_id)
                    reason = "cancelled"
                    break
                if out.prompt_logprobs is not None and prompt_lps is None:
                    top = request.params.top_logprobs
                    prompt_lps = [
                        self._entry(ids[i], pos, top) if pos else None
                        for i, pos in enumerate(out.prompt_logprobs)
                    ]
                comp = out.outputs[0]
                generated += len(comp.token_ids)
                lps = [
                    self._entry(t, pos, request.params.top_logprobs)
                    for t, pos in zip(comp.token_ids, comp.logprobs or [], strict=False)
                ]
                if comp.text or lps:
                    stream.put(Delta(comp.text, lps))
                if comp.finish_reason:
                    reason = _FINISH.get(comp.finish_reason, "stop")
            stream.put(
                Finished(
                    reason,
                    len(ids),
                    generated,
                    prompt_token_ids=ids,  # type: ignore[arg-type]
                    prompt_logprobs=prompt_lps,
                )
            )
        except Exception as e:
            stream.put(Finished("error", len(ids), generated, error=f"{type(e).__name__}: {e}"))
        finally:
            self._running -= 1

    def _entry(self, token: int, position: dict[int, Any], top_n: int) -> TokenLogprob:
        """vLLM gives {token id: Logprob(logprob, rank)} for the top-n plus the chosen one."""
        chosen = position.get(token)
        ranked = sorted(
            ((t, lp) for t, lp in position.items() if lp.rank is not None and lp.rank <= top_n),
            key=lambda kv: kv[1].rank,
        )
        raw = self.piece(token)
        return TokenLogprob(
            token=raw.decode("utf-8", "replace"),
            logprob=float(chosen.logprob) if chosen else float("-inf"),
            bytes=list(raw),
            top_logprobs=[
                TopLogprob(
                    token=(b := self.piece(t)).decode("utf-8", "replace"),
                    logprob=float(lp.logprob),
                    bytes=list(b),
                )
                for t, lp in ranked
            ],
        )

    def stats(self) -> dict[str, int]:
        return {"running": self._running, "waiting": 0}

    def close(self) -> None:
        self._llm.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
