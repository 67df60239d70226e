# LMFast on a CUDA GPU: `docker build -t lmfast . && docker run --gpus all -p 8000:8000 \
#   -e LMFAST_API_KEY=change-me lmfast`
# Build stage: compilers, Rust (for the native core) and CUDA headers (for llama.cpp).
FROM nvidia/cuda:12.8.1-devel-ubuntu24.04 AS build
ENV DEBIAN_FRONTEND=noninteractive PATH=/root/.cargo/bin:$PATH \
    UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-dev python3-pip python3-venv build-essential cmake curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
    && python3 -m pip install --break-system-packages --no-cache-dir "uv==0.13.8"
WORKDIR /app
COPY . .
# llama.cpp with CUDA kernels beside its CPU variants (pyproject's CMAKE_ARGS keeps every CPU
# variant, so the image runs on any host CPU); everything else from the lock file.
RUN SKBUILD_CMAKE_ARGS="-DGGML_CUDA=on" uv sync --locked --no-dev --no-editable --extra gpu

# Runtime stage: CUDA runtime libraries and the finished virtual environment only.
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive PATH=/app/.venv/bin:$PATH LMFAST_HOME=/data
RUN apt-get update && apt-get install -y --no-install-recommends python3 libgomp1 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /app/.venv /app/.venv
VOLUME /data
EXPOSE 8000
CMD ["lmfast", "serve", "--host", "0.0.0.0", "--port", "8000"]
