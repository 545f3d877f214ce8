# deploy/docker/services.Dockerfile — images of Twin's CPU processes, built from the repository
# root: business-svc, monitor-svc, twinctl, and llm-svc-cpu (llm-svc without CUDA, for the
# compose "cpu" profile and the dev overlay). One stage on debian:bookworm compiles them; each
# final stage is debian:bookworm-slim with the shared libraries its program loads (found by
# runtime-packages.sh, no -dev package), curl for the HEALTHCHECK on /healthz, and user twin.
#   docker build -f deploy/docker/services.Dockerfile --target business-svc -t twin/business-svc .

ARG DEBIAN_RELEASE=bookworm

# ==== build ==================================================================================
FROM debian:${DEBIAN_RELEASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
# The build dependencies of the CMake project (deploy/install-deps.sh lists the same -dev
# packages; tests/deploy/check-manifests.sh checks that every pkg-config module, CMake package and program
# that CMake asks for comes from a package installed here). python3: tests/CMakeLists wants it.
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
# Build the programs that exist in this tree (twinctl only once business-svc/cli has sources),
# then put each in /out/<name>/ with the list of packages it needs at run time.
RUN cmake -S . -B /build -DTWIN_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && available=$(cmake --build /build --target help | sed -n 's/^\.\.\. \([^ ]*\).*/\1/p') \
 && targets="" \
 && for t in llm-svc business-svc monitor-svc twinctl; do \
      if printf '%s\n' $available | grep -qx "$t"; then targets="$targets $t"; fi; \
    done \
 && echo "building:$targets" \
 && cmake --build /build -j"$(nproc)" --target $targets \
 && for t in llm-svc business-svc monitor-svc twinctl; do \
      mkdir -p /out/$t/bin; \
      if [ -x /build/bin/$t ]; then \
        strip --strip-debug -o /out/$t/bin/$t /build/bin/$t; \
        deploy/docker/runtime-packages.sh /out/$t/bin/$t > /out/$t/packages.txt; \
      else \
        : > /out/$t/packages.txt; \
      fi; \
      cp deploy/docker/install-runtime-packages.sh /out/$t/; \
    done \
 && mkdir -p /out/monitor-svc/web \
 && if [ -d monitor-svc/web ]; then cp -a monitor-svc/web/. /out/monitor-svc/web/; fi

# ==== common runtime base =====================================================================
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# uid/gid 10001: the Kubernetes manifests run the pods as this user (runAsNonRoot).
RUN groupadd --system --gid 10001 twin \
 && useradd --uid 10001 --gid twin --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin twin \
 && mkdir -p /models \
 && chown twin:twin /models

# ==== llm-svc, CPU backend only ===============================================================
FROM runtime AS llm-svc-cpu
COPY --from=build /out/llm-svc/packages.txt /out/llm-svc/install-runtime-packages.sh /tmp/twin-install/
RUN sh /tmp/twin-install/install-runtime-packages.sh /tmp/twin-install/packages.txt curl \
 && rm -rf /tmp/twin-install
COPY --from=build /out/llm-svc/bin/ /usr/local/bin/
# hf://org/name models are pulled into TWIN_MODEL_CACHE (the models volume, mounted writable).
ENV LLM_BACKEND=cpu \
    LLM_MODEL=/models/llm \
    TWIN_MODEL_CACHE=/models/hub
USER 10001:10001
EXPOSE 50051 9101
# /healthz answers 503 until the model is loaded and warmed up: a long start period.
HEALTHCHECK --interval=10s --timeout=3s --start-period=600s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${LLM_HTTP_PORT:-9101}/healthz" >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["llm-svc"]

# ==== business-svc ============================================================================
FROM runtime AS business-svc
COPY --from=build /out/business-svc/packages.txt /out/business-svc/install-runtime-packages.sh /tmp/twin-install/
RUN sh /tmp/twin-install/install-runtime-packages.sh /tmp/twin-install/packages.txt curl \
 && rm -rf /tmp/twin-install
COPY --from=build /out/business-svc/bin/ /usr/local/bin/
USER 10001:10001
EXPOSE 50052 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${BUSINESS_HTTP_PORT:-8080}/healthz" >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["business-svc"]

# ==== monitor-svc =============================================================================
FROM runtime AS monitor-svc
COPY --from=build /out/monitor-svc/packages.txt /out/monitor-svc/install-runtime-packages.sh /tmp/twin-install/
RUN sh /tmp/twin-install/install-runtime-packages.sh /tmp/twin-install/packages.txt curl \
 && rm -rf /tmp/twin-install
COPY --from=build /out/monitor-svc/bin/ /usr/local/bin/
# The dashboard's static files, where MONITOR_WEB_DIR points.
COPY --from=build /out/monitor-svc/web/ /usr/share/twin/monitor-web/
ENV MONITOR_WEB_DIR=/usr/share/twin/monitor-web
USER 10001:10001
EXPOSE 50053 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${MONITOR_HTTP_PORT:-8081}/healthz" >/dev/null || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["monitor-svc"]

# ==== twinctl (the command-line client; no server, no health check) ===========================
FROM runtime AS twinctl
COPY --from=build /out/twinctl/packages.txt /out/twinctl/install-runtime-packages.sh /tmp/twin-install/
RUN sh /tmp/twin-install/install-runtime-packages.sh /tmp/twin-install/packages.txt \
 && rm -rf /tmp/twin-install
COPY --from=build /out/twinctl/bin/ /usr/local/bin/
USER 10001:10001
ENTRYPOINT ["twinctl"]
