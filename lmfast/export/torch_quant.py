"""int8 / int4 weight-only quantization for users who stay in PyTorch: torchao on CPU,
bitsandbytes on CUDA, through transformers' own quantization configs, saved as a Hugging
Face folder that `from_pretrained` (and so every LMFast engine) loads again.

On CPU torchao's int4 path (`IntxWeightOnlyConfig`, groups of 32) keeps int4 values in int8
storage: the numerics are int4, the memory is int8's. Packed int4 storage needs CUDA."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmfast.artifacts import Artifact, ArtifactStore
from lmfast.errors import BackendError
from lmfast.progress import ProgressFn

if TYPE_CHECKING:
    from lmfast.export.quantize import QuantizeRequest
    from lmfast.export.stages import Source

GROUP_SIZE = 32


def quantization_config(kind: str, cuda: bool) -> tuple[Any, str]:
    """(transformers quantization config, library) for 'int8' or 'int4'."""
    if cuda:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            cuda = False  # torchao also runs on CUDA
        else:
            from transformers import BitsAndBytesConfig

            if kind == "int8":
                return BitsAndBytesConfig(load_in_8bit=True), "bitsandbytes"
            return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"), "bitsandbytes"
    try:
        import torch
        from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
        from torchao.quantization.granularity import PerGroup
        from transformers import TorchAoConfig
    except ImportError as e:
        raise BackendError(
            f"type: {kind!r} needs torchao (pip install 'lmfast[export]'): {e}"
        ) from e
    if kind == "int8":
        return TorchAoConfig(Int8WeightOnlyConfig()), "torchao"
    config = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(GROUP_SIZE))
    return TorchAoConfig(config), "torchao"


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.glob("*.safetensors"))


def quantize_torch(
    request: QuantizeRequest, source: Source, store: ArtifactStore, progress: ProgressFn
) -> tuple[Artifact, int]:
    """The quantized model as an artifact, and its size in bytes."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmfast.export.quality import measure_quality

    cuda = torch.cuda.is_available()
    config, library = quantization_config(request.type, cuda)
    progress(2, 5, f"{library}: {request.type} weight-only")
    model = AutoModelForCausalLM.from_pretrained(
        str(source.folder),
        dtype=torch.float16 if cuda else torch.float32,
        quantization_config=config,
        device_map="cuda" if cuda else None,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(source.folder))
    with store.create(
        "export",
        name=request.name or f"{source.name} ({request.type})",
        parents=[source.parent],
        config={"step": "quantize", **request.model_dump(exclude={"name", "model"})},
    ) as draft:
        progress(3, 5, "writing the quantized model")
        model.save_pretrained(str(draft.path))
        tokenizer.save_pretrained(str(draft.path))
        del model
        size = _folder_bytes(draft.path)
        reference = _folder_bytes(source.folder)
        if request.measure:
            progress(4, 5, "measuring perplexity")
            draft.metrics = measure_quality(
                draft.path,
                source.folder,
                request.eval_text,
                "transformers",
                "source",
                decode_speed=False,
            )
        # Relative to the source's stored weights (float32 or bf16), not to an f16 copy.
        draft.metrics["size_vs_source"] = round(size / reference, 4) if reference else 0.0
        draft.extra = {
            "format": "hf", "type": request.type, "library": library, "bytes": size,
            "default_system": source.default_system, "lineage": source.lineage,
        }  # fmt: skip
    assert draft.artifact is not None
    progress(5, 5, f"saved {draft.artifact.id}")
    return draft.artifact, size
