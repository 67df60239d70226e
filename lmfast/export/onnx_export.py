"""ONNX export of a causal LM's forward pass (input_ids, attention_mask -> logits, dynamic
batch and length) with torch.onnx's dynamo exporter, validated against PyTorch in ONNX
Runtime. optimum-onnx would be the usual route but pins transformers < 4.58 (LMFast is on
transformers 5), so the exporter is called directly. The graph has no KV cache: it suits
scoring, classification heads and re-ranking; use GGUF for fast generation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfast.errors import BackendError


def export_onnx(folder: Path, out: Path, opset: int = 18) -> dict[str, Any]:
    """Write `out`/model.onnx (+ external weights) and the tokenizer; returns validation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise BackendError(f"format 'onnx' needs onnxscript and onnxruntime: {e}") from e
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()

    class Logits(torch.nn.Module):
        def __init__(self, lm: Any) -> None:
            super().__init__()
            self.lm = lm

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.lm(
                input_ids=input_ids, attention_mask=attention_mask, use_cache=False
            ).logits

    wrapped = Logits(model)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    example = torch.arange(2 * 8).reshape(2, 8) % model.config.vocab_size
    program = torch.onnx.export(
        wrapped,
        (example, torch.ones_like(example)),
        dynamo=True,
        opset_version=opset,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        optimize=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    program.save(str(out / "model.onnx"), external_data=True)
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(str(out))
    report = validate_onnx(out / "model.onnx", wrapped, model.config.vocab_size)
    (out / "onnx_model.json").write_text(json.dumps({
        "inputs": ["input_ids", "attention_mask"], "outputs": ["logits"], "opset": opset,
        "architecture": (model.config.architectures or ["?"])[0], **report,
    }, indent=1))  # fmt: skip
    return report


def validate_onnx(path: Path, wrapped: Any, vocab: int) -> dict[str, Any]:
    """Largest logit difference between ONNX Runtime and PyTorch on shapes other than the
    exported example (real tokens only: padded positions have no defined output)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for b, length in ((1, 13), (3, 5)):
        ids = torch.randint(0, vocab, (b, length), generator=generator)
        mask = torch.ones_like(ids)
        got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        with torch.no_grad():
            want = wrapped(ids, mask).numpy()
        worst = max(worst, float(np.abs(got - want).max()))
    return {"max_abs_logit_diff": worst, "onnxruntime": ort.__version__}
