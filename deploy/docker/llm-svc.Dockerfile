# deploy/docker/llm-svc.Dockerfile — the llm-svc image with the CUDA backend, built from the
# repository root. The build stage is NVIDIA's CUDA devel image (nvcc, cuBLAS headers) on Ubuntu
# 24.04; the final stage is the CUDA runtime image of the same version and Ubuntu release, plus
# only the shared libraries llm-svc loads (found by runtime-packages.sh), curl for the
# HEALTHCHECK on /healthz, and user twin (uid 10001). Kernels are compiled for sm_90 (H100/H200).
#   docker build -f deploy/docker/llm-svc.Dockerfile -t twin/llm-svc .
# Run with a GPU:  docker run --gpus 1 -v twin_models:/models -e LLM_MODEL=/models/llm twin/llm-svc
# The driver must support CUDA_VERSION (for 12.x any driver >= 525 runs sm_90 code built here).

ARG CUDA_VERSION=12.8.1
ARG UBUNTU_RELEASE=ubuntu24.04

# ==== build ==================================================================================
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU_RELEASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# The build dependencies of the CMake project (the same -dev packages as deploy/install-deps.sh;
# tests/deploy/check-manifests.sh checks that every pkg-config module CMake asks for comes from
# a package installed here). Ubuntu 24.04's cmake (3.28) meets the project's 3.25.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config ca-certificates python3 \
      libgrpc-dev protobuf-c-compiler libprotobuf-c-dev \
      libhiredis-dev libmicrohttpd-dev libcurl4-openssl-dev \
      libpcre2-dev libutf8proc-dev libopenblas-dev libcjson-dev \
      libxml2-dev libfaiss-dev libcmocka-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# TWIN_CUDA=ON: fail here rather than ship an image without the CUDA backend.
RUN cmake -S . -B /build -DTWIN_CUDA=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build /build -j"$(nproc)" --target llm-svc \
 && mkdir -p /out/bin \
 && strip --strip-debug -o /out/bin/llm-svc /build/bin/llm-svc \
 && deploy/docker/runtime-packages.sh /out/bin/llm-svc > /out/packages.txt \
 && cp deploy/docker/install-runtime-packages.sh /out/ \
 && cat /out/packages.txt

# ==== runtime ================================================================================
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU_RELEASE} AS llm-svc
ENV DEBIAN_FRONTEND=noninteractive
RUN groupadd --system --gid 10001 twin \
 && useradd --uid 10001 --gid twin --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin twin \
 && mkdir -p /models \
 && chown twin:twin /models
# CUDA's own libraries (cudart, cuBLAS) are already in this base image, so the installer skips
# them; the rest (gRPC, OpenBLAS, libcurl ...) come from Ubuntu.
COPY --from=build /out/packages.txt /out/install-runtime-packages.sh /tmp/twin-install/
RUN sh /tmp/twin-install/install-runtime-packages.sh /tmp/twin-install/packages.txt curl \
 && rm -rf /tmp/twin-install
COPY --from=build /out/bin/ /usr/local/bin/
# hf://org/name models are pulled into TWIN_MODEL_CACHE (the models volume, mounted writable).
ENV LLM_BACKEND=cuda \
    LLM_MODEL=/models/llm \
    TWIN_MODEL_CACHE=/models/hub \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
EXPOSE 50051 9101
# /healthz answers 503 until the model is loaded onto the GPU and warmed up: a long start
# period; on SIGTERM llm-svc drains for LLM_GRACE_PERIOD (30s), so stop with a longer timeout
# (docker stop -t 45; compose sets stop_grace_period).
HEALTHCHECK --interval=10s --timeout=3s --start-period=600s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${LLM_HTTP_PORT:-9101}/healthz" >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["llm-svc"]
