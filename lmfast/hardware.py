"""What machine are we on? Detection plus named profiles for planning and tests.

`detect_hardware()` imports torch lazily; everything else here is plain data, so the planner
can be exercised with simulated T4, A100 or CPU profiles on any machine.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import BaseModel, Field


class GPUInfo(BaseModel):
    """One CUDA device."""

    name: str = Field(description="Device name as the driver reports it.")
    memory_gb: float = Field(gt=0, description="Total device memory in GiB.")
    compute_capability: tuple[int, int] = Field(description="CUDA compute capability.")

    @property
    def bf16(self) -> bool:
        """bfloat16 tensor-core math needs Ampere (8.0) or newer."""
        return self.compute_capability >= (8, 0)


class HardwareProfile(BaseModel):
    """The machine a plan is made for."""

    accelerator: Literal["cuda", "mps", "cpu"] = Field(description="Best device available.")
    gpus: list[GPUInfo] = Field(default_factory=list, description="CUDA devices, if any.")
    cpu_cores: int = Field(ge=1, description="CPU cores this process may use.")
    ram_gb: float = Field(gt=0, description="Total system memory in GiB.")
    environment: Literal["colab", "kaggle", "local"] = Field(
        "local", description="Hosted notebook environment, if any."
    )
    cpu_bf16: bool = Field(
        False, description="The CPU has native bfloat16 matrix math (AVX512-BF16 or AMX)."
    )
    torch_version: str | None = Field(None, description="Installed torch version.")
    cuda_version: str | None = Field(None, description="CUDA version torch was built with.")

    @property
    def gpu(self) -> GPUInfo | None:
        return self.gpus[0] if self.gpus else None

    @property
    def bf16(self) -> bool:
        if self.accelerator == "cpu":
            return self.cpu_bf16
        return self.accelerator == "cuda" and bool(self.gpu and self.gpu.bf16)

    def describe(self) -> str:
        if self.gpu:
            g = self.gpu
            cc = ".".join(map(str, g.compute_capability))
            return f"{len(self.gpus)}x {g.name} ({g.memory_gb:.0f} GB, sm {cc})"
        if self.accelerator == "mps":
            return f"Apple MPS, {self.ram_gb:.0f} GB unified memory"
        return f"CPU, {self.cpu_cores} cores, {self.ram_gb:.0f} GB RAM"


# Simulated profiles: the planner's tests and `lmfast plan --profile` use these.
PROFILES: dict[str, HardwareProfile] = {
    "t4": HardwareProfile(
        accelerator="cuda",
        gpus=[GPUInfo(name="Tesla T4", memory_gb=15.0, compute_capability=(7, 5))],
        cpu_cores=2,
        ram_gb=12.7,
        environment="colab",
    ),
    "a100": HardwareProfile(
        accelerator="cuda",
        gpus=[GPUInfo(name="NVIDIA A100-SXM4-40GB", memory_gb=40.0, compute_capability=(8, 0))],
        cpu_cores=12,
        ram_gb=85.0,
    ),
    "h100": HardwareProfile(
        accelerator="cuda",
        gpus=[GPUInfo(name="NVIDIA H100 80GB HBM3", memory_gb=79.2, compute_capability=(9, 0))],
        cpu_cores=16,
        ram_gb=128.0,
    ),
    "cpu": HardwareProfile(accelerator="cpu", cpu_cores=2, ram_gb=24.0),
}


def _environment() -> Literal["colab", "kaggle", "local"]:
    if "COLAB_RELEASE_TAG" in os.environ or "COLAB_GPU" in os.environ:
        return "colab"
    if "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
        return "kaggle"
    return "local"


def cpu_cores() -> int:
    """Cores this process may run on (respects affinity and container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def detect_hardware() -> HardwareProfile:
    """Inspect this machine. Works without torch (reports a CPU profile then)."""
    ram_gb = psutil.virtual_memory().total / 2**30
    base = {"cpu_cores": cpu_cores(), "ram_gb": ram_gb, "environment": _environment()}
    try:
        import torch
    except ImportError:
        return HardwareProfile(accelerator="cpu", **base)
    base["torch_version"] = torch.__version__
    base["cuda_version"] = torch.version.cuda
    if torch.cuda.is_available():
        gpus = []
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(
                GPUInfo(
                    name=props.name,
                    memory_gb=props.total_memory / 2**30,
                    compute_capability=(props.major, props.minor),
                )
            )
        return HardwareProfile(accelerator="cuda", gpus=gpus, **base)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return HardwareProfile(accelerator="mps", **base)
    return HardwareProfile(accelerator="cpu", cpu_bf16=_cpu_bf16(torch), **base)


def _cpu_bf16(torch: Any) -> bool:
    """AVX512-BF16 / AMX make bfloat16 matmuls 2-4x faster than float32 on a CPU; without
    them torch emulates bfloat16 and it is slower, so only these flags count."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, torch>=2.3
    return any(getattr(torch.cpu, c, lambda: False)() for c in checks)


def reset_peak_memory(device: str) -> None:
    """Start counting peak memory now (e.g. at training, not at model loading: GGUF
    dequantization alone can peak above a training step)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    with contextlib.suppress(OSError):  # Linux: 5 resets the peak resident set (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_gb(device: str) -> float:
    """Peak memory since the last `reset_peak_memory`: CUDA allocations or the resident set."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**30
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
