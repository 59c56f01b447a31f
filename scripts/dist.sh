#!/usr/bin/env bash
# `make dist`: dist/redis-chat-<version>-<target>.tar.gz with the release
# binary (front end inside), the systemd unit, .env.sample and INSTALL.
# Expects `make build` to have run (the Makefile's dist target does it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release/redis-chat"
[ -x "$BIN" ] || { echo "dist: $BIN is missing; run make build" >&2; exit 1; }

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
TARGET="$(rustc -vV | sed -n 's/^host: //p')"
NAME="redis-chat-$VERSION-$TARGET"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT

mkdir -p "$STAGE/$NAME"
install -m 0755 "$BIN" "$STAGE/$NAME/redis-chat"
install -m 0644 docs/deploy/redis-chat.service "$STAGE/$NAME/redis-chat.service"
install -m 0644 .env.sample "$STAGE/$NAME/.env.sample"
install -m 0644 docs/deploy/INSTALL "$STAGE/$NAME/INSTALL"
install -m 0644 docs/deploy/nginx.conf "$STAGE/$NAME/nginx.conf"

# The binary must carry its front end: a package without it would serve
# pages that cannot load their WASM.
"$STAGE/$NAME/redis-chat" --version
if ! grep -aq 'redis-chat.wasm' "$STAGE/$NAME/redis-chat"; then
    echo "dist: the binary has no embedded front end (build it with make build)" >&2
    exit 1
fi

# The unit must parse (pointed at the staged binary, which is not installed).
if command -v systemd-analyze >/dev/null 2>&1; then
    sed "s|^ExecStart=.*|ExecStart=$STAGE/$NAME/redis-chat|" docs/deploy/redis-chat.service \
        >"$STAGE/redis-chat-check.service"
    systemd-analyze verify "$STAGE/redis-chat-check.service"
fi

mkdir -p dist
tar -C "$STAGE" -czf "dist/$NAME.tar.gz" "$NAME"
echo "dist/$NAME.tar.gz ($(du -h "dist/$NAME.tar.gz" | cut -f1))"
