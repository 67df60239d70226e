"""Which llama.cpp CPU kernels run on this machine.

`make install` builds llama.cpp the way its release binaries and Ollama are built: every CPU
variant of the platform as a loadable module (`libggml-cpu-haswell.so`, `-skylakex`, `-zen4`,
`-sapphirerapids`, `-armv8.2_1`, ...), none tuned to the machine that compiled it. This module
picks the variant for the CPU it runs on and loads it before llama.cpp looks for backends, so
a wheel or Docker image built on one machine runs on another.

llama.cpp's own choice would be the highest-scoring variant, which on an Intel Sapphire
Rapids (AMX) CPU is `sapphirerapids`: its AMX buffer type segfaults in
`ggml_backend_amx_mul_mat` (llama.cpp issue 20824) and was slower than plain AVX-512 in
Ollama's measurements (their PR 9203), so AMX variants are only used when asked for by name
(`LMFAST_LLAMA_CPU=sapphirerapids`). Whether what is left works is checked once per build and
CPU by `selfcheck`, which steps down `settings_ladder` when a check dies.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import subprocess
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel, Field

from lmfast.errors import BackendError

# Variants whose kernels use AMX tiles; see the module docstring.
AMX_VARIANTS = frozenset({"sapphirerapids"})
FORCE_ENV = "LMFAST_LLAMA_CPU"
_VARIANT_RE = re.compile(r"^libggml-cpu-(.+)\.(so|dylib|dll)$")
# Accelerator backends built beside the CPU variants (the Docker image's CUDA, macOS Metal).
_OTHER_BACKENDS = ("cuda", "hip", "metal", "vulkan", "sycl", "musa", "opencl", "blas", "rpc")


class CpuSettings(BaseModel):
    """How llama.cpp runs on the CPU: which kernel variant, and whether weights may be
    repacked into the variant's extra buffer types (faster matmuls; AMX lives there too)."""

    variant: str | None = Field(
        description="CPU variant module (haswell, zen4, armv8.2_1...); None: the build has one "
        "CPU backend (not a multi-variant build)."
    )
    extra_bufts: bool = Field(description="llama_model_params.use_extra_bufts (weight repack).")

    def describe(self) -> str:
        name = self.variant or "built-in CPU backend"
        return f"{name}, weight repack {'on' if self.extra_bufts else 'off'}"


@dataclass(frozen=True)
class Variant:
    name: str
    path: Path
    score: int  # ggml_backend_score(): 0 = needs instructions this CPU lacks


@dataclass(frozen=True)
class CpuIdentity:
    machine: str  # x86_64, arm64, aarch64
    model: str
    flags: frozenset[str]

    @property
    def cpu_class(self) -> str:
        """The class the README's support statement is written in."""
        if self.machine in ("arm64", "aarch64"):
            return "arm64"
        if self.machine not in ("x86_64", "amd64", "AMD64"):
            return self.machine
        if {"amx_tile", "amx_int8"} <= self.flags:
            return "x86-64 AVX-512 + AMX"
        if "avx512f" in self.flags:
            return "x86-64 AVX-512"
        if "avx2" in self.flags:
            return "x86-64 AVX2"
        return "x86-64 (no AVX2)"

    def key(self) -> str:
        return f"{self.machine}|{self.model}|{' '.join(sorted(self.flags))}"


@functools.cache
def cpu_identity() -> CpuIdentity:
    """This CPU's architecture, model name and instruction-set flags."""
    machine = platform.machine()
    model, flags = platform.processor() or machine, frozenset[str]()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text(errors="replace")
        if m := re.search(r"^model name\s*:\s*(.+)$", text, re.M):
            model = m.group(1).strip()
        if m := re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M):
            flags = frozenset(m.group(1).split())
    elif platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string") or model
        feats = _sysctl("machdep.cpu.features") or ""
        flags = frozenset(f.lower() for f in feats.split())
    return CpuIdentity(machine=machine, model=model, flags=flags)


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@functools.cache
def lib_dirs() -> tuple[Path, ...]:
    """Folders holding llama-cpp-python's native libraries. scikit-build installs the CPU
    variant modules under the environment's bin/ folder, next to site-packages' parent."""
    import llama_cpp  # loads libllama, libggml and libggml-base, which the variants link to

    pkg = Path(llama_cpp.__file__).resolve().parent
    candidates = [pkg / "lib", pkg.parent / "bin", pkg.parent / "lib"]
    return tuple(d for d in candidates if d.is_dir())


def _files(prefix: str) -> list[Path]:
    return sorted(p for d in lib_dirs() for p in d.iterdir() if p.name.startswith(prefix))


@functools.cache
def variants() -> tuple[Variant, ...]:
    """CPU variants this build has, best first; score 0 marks those this CPU cannot run."""
    found: list[Variant] = []
    for path in _files("libggml-cpu-"):
        m = _VARIANT_RE.match(path.name)
        if m:
            found.append(Variant(m.group(1), path, _score(path)))
    return tuple(sorted(found, key=lambda v: -v.score))


def _score(path: Path) -> int:
    """The variant's own ggml_backend_score(): it checks CPUID, and is compiled without the
    variant's instruction sets so that calling it is safe anywhere (ggml relies on this too)."""
    import _ctypes

    try:
        lib = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL if hasattr(os, "RTLD_LOCAL") else 0)
    except OSError:
        return 0
    try:
        fn = lib.ggml_backend_score
        fn.restype = ctypes.c_int
        return int(fn())
    except AttributeError:
        return 0
    finally:
        closer = getattr(_ctypes, "dlclose", None)
        if closer is not None:
            closer(lib._handle)


def build_id() -> str:
    """Identifies the installed llama.cpp build: a rebuild with other flags changes it."""
    version = metadata.version("llama-cpp-python")
    libs = sorted((p.name, p.stat().st_size) for d in lib_dirs() for p in d.glob("libggml*"))
    digest = hashlib.sha256(repr(libs).encode()).hexdigest()[:12]
    return f"llama-cpp-python {version} ({digest})"


def settings_ladder() -> list[CpuSettings]:
    """Settings from fastest to safest: the best variant with weight repack, then without,
    then the most basic variant without. An unknown forced variant is an error."""
    usable = [v for v in variants() if v.score > 0]
    if not variants():
        return [
            CpuSettings(variant=None, extra_bufts=True),
            CpuSettings(variant=None, extra_bufts=False),
        ]
    forced = os.environ.get(FORCE_ENV, "").strip()
    if forced:
        names = [v.name for v in usable]
        if forced not in names:
            raise BackendError(
                f"{FORCE_ENV}={forced!r} is not a llama.cpp CPU variant this CPU can run; "
                f"allowed here: {', '.join(names)}"
            )
        best = forced
    else:
        safe = [v for v in usable if v.name not in AMX_VARIANTS]
        if not safe:
            raise BackendError(
                "no llama.cpp CPU variant of this build runs on this CPU "
                f"({cpu_identity().model}); variants: {', '.join(v.name for v in variants())}"
            )
        best = safe[0].name
    basic = usable[-1].name
    ladder = [
        CpuSettings(variant=best, extra_bufts=True),
        CpuSettings(variant=best, extra_bufts=False),
    ]
    if basic != best:
        ladder.append(CpuSettings(variant=basic, extra_bufts=False))
    return ladder


_loaded: str | None = None
_load_lock = threading.Lock()


def load_backends(variant: str | None) -> None:
    """Register `variant` (and any accelerator backends) with ggml in this process, before
    llama.cpp would load its own pick. Once per process: a second, different variant is an
    error, since ggml cannot unload the first one's kernels from the weights that use them."""
    global _loaded
    with _load_lock:
        key = variant or "-"
        if _loaded is not None:
            if _loaded != key:
                raise BackendError(
                    f"llama.cpp already runs the {_loaded!r} CPU variant in this process; "
                    f"{key!r} needs a new process"
                )
            return
        import llama_cpp
        from llama_cpp._logger import set_verbose

        # llama.cpp's log lines go through llama-cpp-python's logger, which prints all of them
        # until a `Llama(verbose=False)` quiets it; LMFast loads models without `Llama`.
        set_verbose(os.environ.get("LMFAST_VERBOSE") == "1")
        if variant is not None:
            # Resolved through libllama's handle: the libggml it links. The wheel holds other
            # copies (libggml.so beside libggml.so.0, site-packages/lib), each with a backend
            # registry of its own that llama.cpp never reads.
            ggml = llama_cpp.llama_cpp._lib
            ggml.ggml_backend_load.restype = ctypes.c_void_p
            ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
            path = next(v.path for v in variants() if v.name == variant)
            if not ggml.ggml_backend_load(str(path).encode()):
                raise BackendError(f"llama.cpp could not load its CPU variant {path}")
            for name in _OTHER_BACKENDS:
                for other in _files(f"libggml-{name}."):
                    ggml.ggml_backend_load(str(other).encode())
        llama_cpp.llama_backend_init()
        _loaded = key


def system_info() -> str:
    """llama.cpp's own line of the features it uses ('CPU : SSE3 = 1 | AVX2 = 1 | ...')."""
    import llama_cpp

    raw = llama_cpp.llama_print_system_info()
    return (raw.decode() if isinstance(raw, bytes) else str(raw)).strip()
