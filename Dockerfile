# redis-chat in a container: build stage with the toolchain, a small run
# stage with the one binary and Debian's redis-server (for the embedded
# default; unused when REDIS_URL or REDIS_CLUSTER_NODES is set).
#
#   docker build -t redis-chat .
#   docker run -p 3000:3000 -v redis-chat-data:/data redis-chat
#   docker run -p 3000:3000 -e REDIS_URL=rediss://user:pass@host:port redis-chat
#
# Building it is not part of `make test` (README, "Deploy").

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The tools (wasm target, wasm-bindgen-cli, cargo-leptos, npm's wasm-opt),
# without the browser and proxy the end-to-end tests use; then the release build.
RUN INSTALL_TOOLS_NO_E2E=1 bash scripts/install-tools.sh \
 && REDIS_CHAT_COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
    make build

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data redis-chat \
 && install -d -o redis-chat -g redis-chat -m 0700 /data
COPY --from=build /src/target/release/redis-chat /usr/local/bin/redis-chat
USER redis-chat
WORKDIR /data
# Listening on every address: demo accounts are off unless DEMO_DATA=true.
ENV ADDR=0.0.0.0 PORT=3000 REDIS_DATA_DIR=/data/redis
VOLUME /data
EXPOSE 3000
# Kubernetes: livenessProbe GET /healthz, readinessProbe GET /readyz.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/redis-chat"]
