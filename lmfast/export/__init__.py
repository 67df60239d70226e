"""Export and quantization: merged safetensors, GGUF for llama.cpp and Ollama (float, llama.cpp
types, calibrated mixed precision), int8 / int4 for PyTorch, and ONNX."""

from lmfast.export.export import ExportRequest, ExportResult, export
from lmfast.export.quantize import QuantizeRequest, QuantizeResult, quantize

export_model = export  # the top-level name: `lmfast.export` is this package

__all__ = [
    "ExportRequest",
    "ExportResult",
    "QuantizeRequest",
    "QuantizeResult",
    "export",
    "export_model",
    "quantize",
]
