"""Tiny randomly initialised Llama models with the embedded model's tokenizer, for tests."""

from __future__ import annotations

from pathlib import Path


def make_tiny_llama(
    out: Path, seed: int = 0, initializer_range: float = 0.5, layers: int = 2, extra_token: str = ""
) -> Path:
    """A Llama (2 layers, hidden 32) saved with the embedded model's tokenizer and template
    (plus `extra_token`: a model whose vocabulary differs)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmfast.data.tokenize import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    if extra_token:
        tok.add_tokens([extra_token])
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        # Wide enough initial embeddings that frozen-base LoRA can move the logits.
        initializer_range=initializer_range,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
