"""vLLM-compatible tokenizer routes: /tokenize, /detokenize and /tokenizer_info.

lm-evaluation-harness's `local-completions` model uses them as its "remote" tokenizer, so a
harness run against `lmfast serve` needs no separate copy of the model's tokenizer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from lmfast.serving.state import APIError, ServerState


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Served model id (optional).")
    prompt: str = Field(max_length=4_000_000, description="Text to tokenize.")
    add_special_tokens: bool = Field(True, description="Add BOS when the model uses one.")


class DetokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, description="Served model id (optional).")
    tokens: list[int] = Field(max_length=1_000_000, description="Token ids.")


def _special_tokens(engine: Any) -> dict[str, Any]:
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is not None:  # transformers and vLLM engines
        return {
            "bos_token": tokenizer.bos_token,
            "eos_token": tokenizer.eos_token,
            "pad_token": tokenizer.pad_token,
            "chat_template": getattr(tokenizer, "chat_template", None),
        }
    tokens = engine.special_tokens()
    return {**tokens, "pad_token": tokens["eos_token"], "chat_template": engine.chat_template}


def register_tokenizer_routes(app: FastAPI, state: ServerState) -> None:
    def engine_for(model: str | None) -> Any:
        state.require_pipeline(model or state.model_id)
        return state.engine

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        engine = engine_for(body.model)
        if hasattr(engine, "special_tokens"):  # llama.cpp: BOS only when asked for
            tokens = engine.tokenize(body.prompt, add_special=body.add_special_tokens)
        else:
            tokens = engine.tokenize(body.prompt)
        return {"tokens": tokens, "count": len(tokens), "max_model_len": engine.context_length}

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        engine = engine_for(body.model)
        vocab = getattr(engine, "vocab_size", None)
        if vocab is not None and any(t < 0 or t >= vocab for t in body.tokens):
            raise APIError(400, f"tokens: ids must be in [0, {vocab})", param="tokens")
        try:
            text = b"".join(engine.piece(t) for t in body.tokens).decode("utf-8", "replace")
        except (IndexError, ValueError, OverflowError) as e:
            raise APIError(400, f"tokens: {e}", param="tokens") from None
        return {"prompt": text}

    @app.get("/tokenizer_info")
    async def tokenizer_info() -> dict[str, Any]:
        engine = engine_for(None)
        return {**_special_tokens(engine), "model_max_length": engine.context_length}
