"""transformers engine: Hugging Face folders, LoRA adapters, and anything llama.cpp can't run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lmfast.inference.base import (
    ChatMessage,
    GenerationResult,
    SamplingParams,
    with_default_system,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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


class TransformersEngine:
    """A transformers causal LM plus tokenizer; prompts use the tokenizer's chat template."""

    name = "transformers"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        default_system: str | None = None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.default_system = default_system

    @classmethod
    def load(
        cls, reference: Any = None, *, device: str = "cpu", dtype: Any = "auto"
    ) -> TransformersEngine:
        from lmfast.loading import load_transformers
        from lmfast.registry import ResolvedModel, resolve_model

        resolved = reference if isinstance(reference, ResolvedModel) else resolve_model(reference)
        model, tokenizer = load_transformers(resolved, device=device, dtype=dtype)
        return cls(model, tokenizer, default_system=resolved.default_system)

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    def _prepare(self, messages: list[ChatMessage], params: SamplingParams) -> dict[str, Any]:
        from transformers import LogitsProcessorList, set_seed

        text = self.tokenizer.apply_chat_template(
            with_default_system(messages, self.default_system),
            tokenize=False,
            add_generation_prompt=True,
        )
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(self.model.device)
        if params.seed is not None:
            set_seed(params.seed)
        kwargs: dict[str, Any] = {
            **inputs,
            "max_new_tokens": params.max_tokens,
            "do_sample": params.temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id,
            "repetition_penalty": params.repetition_penalty,
        }
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
            if params.top_k:
                kwargs["top_k"] = params.top_k
            if params.min_p:
                kwargs["min_p"] = params.min_p
        else:  # greedy: neutralise sampling defaults from generation_config.json
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=params.stop, tokenizer=self.tokenizer)
        if params.frequency_penalty or params.presence_penalty:
            kwargs["logits_processor"] = LogitsProcessorList(
                [
                    _OpenAIPenalties(
                        inputs["input_ids"].shape[1],
                        params.frequency_penalty,
                        params.presence_penalty,
                    )
                ]
            )
        return kwargs

    @staticmethod
    def _cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
        cut = min((i for s in stop if (i := text.find(s)) >= 0), default=-1)
        return (text[:cut], True) if cut >= 0 else (text, False)

    def chat(self, messages: list[ChatMessage], params: SamplingParams) -> GenerationResult:
        import torch

        kwargs = self._prepare(messages, params)
        prompt_len = kwargs["input_ids"].shape[1]
        with torch.inference_mode():
            out = self.model.generate(**kwargs)
        new = out[0, prompt_len:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        text, stopped = self._cut_at_stop(text, params.stop)
        hit_eos = bool(len(new)) and int(new[-1]) in _eos_ids(self.model, self.tokenizer)
        finish = "stop" if stopped or hit_eos or len(new) < params.max_tokens else "length"
        return GenerationResult(
            text=text,
            finish_reason=finish,
            prompt_tokens=prompt_len,
            completion_tokens=len(new),
        )

    def stream_chat(self, messages: list[ChatMessage], params: SamplingParams) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        kwargs = self._prepare(messages, params)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def run() -> None:
            with torch.inference_mode():
                self.model.generate(**kwargs, streamer=streamer)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        emitted = ""
        for piece in streamer:
            candidate, stopped = self._cut_at_stop(emitted + piece, params.stop)
            if candidate[len(emitted) :]:
                yield candidate[len(emitted) :]
            emitted = candidate
            if stopped:
                break
        worker.join()


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
