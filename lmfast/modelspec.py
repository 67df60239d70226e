"""Shape of a decoder-only model: what the planner needs to estimate memory and time."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelSpec(BaseModel):
    """Architecture numbers read from a config.json or GGUF metadata."""

    architecture: str = Field(description="Architecture family, e.g. llama or qwen2.")
    parameters: int = Field(ge=1, description="Total parameter count.")
    num_layers: int = Field(ge=1, description="Transformer blocks.")
    hidden_size: int = Field(ge=1, description="Model width.")
    intermediate_size: int = Field(ge=1, description="MLP inner width.")
    num_heads: int = Field(ge=1, description="Attention heads.")
    num_kv_heads: int = Field(ge=1, description="Key/value heads (grouped-query attention).")
    vocab_size: int = Field(ge=1, description="Vocabulary size.")
    context_length: int = Field(ge=1, description="Maximum positions the model was trained on.")
    tied_embeddings: bool = Field(True, description="Input and output embeddings are shared.")

    @property
    def embedding_parameters(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    def lora_parameters(self, rank: int) -> int:
        """Adapter parameters when every linear projection (q,k,v,o,gate,up,down) gets LoRA."""
        h, i = self.hidden_size, self.intermediate_size
        kv = h * self.num_kv_heads // self.num_heads
        per_layer = (h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h)
        return rank * per_layer * self.num_layers

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any], parameters: int | None = None) -> ModelSpec:
        """Build from a Hugging Face config.json dict (llama / qwen2 / mistral style)."""
        h = cfg["hidden_size"]
        layers = cfg["num_hidden_layers"]
        inter = cfg.get("intermediate_size", 4 * h)
        heads = cfg.get("num_attention_heads", 1)
        vocab = cfg.get("vocab_size", 32000)
        tied = bool(cfg.get("tie_word_embeddings", True))
        if parameters is None:
            kv = h * cfg.get("num_key_value_heads", heads) // heads
            per_layer = h * h * 2 + h * kv * 2 + 3 * h * inter + 2 * h
            parameters = layers * per_layer + vocab * h * (1 if tied else 2) + h
        return cls(
            architecture=cfg.get("model_type", "unknown"),
            parameters=parameters,
            num_layers=layers,
            hidden_size=h,
            intermediate_size=inter,
            num_heads=heads,
            num_kv_heads=cfg.get("num_key_value_heads", heads),
            vocab_size=vocab,
            context_length=cfg.get("max_position_embeddings", 2048),
            tied_embeddings=tied,
        )


# Published shapes of the models LMFast names by alias; used when the weights are not local.
KNOWN_SPECS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        architecture="llama",
        parameters=134_515_008,
        num_layers=30,
        hidden_size=576,
        intermediate_size=1536,
        num_heads=9,
        num_kv_heads=3,
        vocab_size=49152,
        context_length=8192,
    ),
    "smollm2-360m": ModelSpec(
        architecture="llama",
        parameters=361_821_120,
        num_layers=32,
        hidden_size=960,
        intermediate_size=2560,
        num_heads=15,
        num_kv_heads=5,
        vocab_size=49152,
        context_length=8192,
    ),
    "tinyllama-1.1b": ModelSpec(
        architecture="llama",
        parameters=1_100_048_384,
        num_layers=22,
        hidden_size=2048,
        intermediate_size=5632,
        num_heads=32,
        num_kv_heads=4,
        vocab_size=32000,
        context_length=2048,
        tied_embeddings=False,
    ),
    "qwen2.5-0.5b": ModelSpec(
        architecture="qwen2",
        parameters=494_032_768,
        num_layers=24,
        hidden_size=896,
        intermediate_size=4864,
        num_heads=14,
        num_kv_heads=2,
        vocab_size=151936,
        context_length=32768,
    ),
}
