"""Build llama.cpp's own `llama-server` from the source vendored in the locked llama-cpp-python
sdist (the same llama.cpp LMFast runs), for the serving benchmark's side-by-side.

    uv run python bench/llama_server_build.py     # -> bench/.cache/llama-server/bin/llama-server

The sdist's URL and sha256 come from uv.lock; the build is CPU only, without curl (no
network at run time), with -march=native (GGML_NATIVE): the peer at its best on this
machine. About 6 minutes on 2 cores the first time; later runs reuse the binary.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache" / "llama-server"


def locked_sdist() -> tuple[str, str, str]:
    """(version, url, sha256) of llama-cpp-python's sdist in uv.lock."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for pkg in lock["package"]:
        if pkg["name"] == "llama-cpp-python":
            sdist = pkg["sdist"]
            return pkg["version"], sdist["url"], sdist["hash"].removeprefix("sha256:")
    raise SystemExit("uv.lock has no llama-cpp-python")


def source_tree() -> Path:
    version, url, sha = locked_sdist()
    src = CACHE / f"llama_cpp_python-{version}"
    if (src / "vendor" / "llama.cpp" / "CMakeLists.txt").is_file():
        return src
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / url.rsplit("/", 1)[1]
    if not archive.is_file():
        print(f"downloading {url}", flush=True)
        part = archive.with_suffix(".part")
        urllib.request.urlretrieve(url, part)
        part.rename(archive)
    if hashlib.sha256(archive.read_bytes()).hexdigest() != sha:
        archive.unlink()
        raise SystemExit(f"{archive.name}: sha256 differs from uv.lock's; removed, run again")
    with tarfile.open(archive) as tar:
        tar.extractall(CACHE, filter="data")
    return src


def build() -> Path:
    binary = CACHE / "bin" / "llama-server"
    if binary.is_file():
        return binary
    llama = source_tree() / "vendor" / "llama.cpp"
    out = CACHE / "build"
    flags = [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DGGML_NATIVE=ON",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DBUILD_SHARED_LIBS=OFF",
    ]
    subprocess.run(["cmake", "-S", str(llama), "-B", str(out), *flags], check=True)
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        ["cmake", "--build", str(out), "--target", "llama-server", "-j", jobs], check=True
    )
    binary.parent.mkdir(parents=True, exist_ok=True)
    (out / "bin" / "llama-server").rename(binary)
    return binary


if __name__ == "__main__":
    path = build()
    print(path)
    sys.exit(subprocess.run([str(path), "--version"]).returncode)
