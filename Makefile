# redis-chat: build, run and test.
#
#   make tools      install what is missing (apt, rustup target, wasm-bindgen-cli,
#                   cargo-leptos, end2end npm packages); does nothing when all is there
#   make build      release build: server binary + WASM/JS/CSS in target/site
#   make run        build, then serve on http://127.0.0.1:3000 (ADDR/PORT from env or .env)
#   make test       tools, then test-rust, then test-e2e
#   make test-rust  cargo test --features ssr (unit + tests/, each starts its own redis-server)
#   make test-e2e   build, then the Playwright tests in end2end/ (Debian chromium)
#   make lint       rustfmt check + clippy for the server and for the WASM front end
#   make dist       build, then dist/redis-chat-<version>-<target>.tar.gz (binary,
#                   systemd unit, .env.sample, INSTALL, nginx.conf)
#   make fmt | bench | clean

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
# Targets run in the order given, even under `make -j`.
.NOTPARALLEL:

CARGO_HOME ?= $(HOME)/.cargo
export PATH := $(CARGO_HOME)/bin:$(PATH)

# cargo-leptos writes the server binary under cargo's target dir (CARGO_TARGET_DIR
# when set, for example by .ci/run) and the site under target/site either way.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
SERVER_BIN := $(TARGET_DIR)/release/redis-chat
SITE_ROOT := target/site
# The npm package binaryen 132 provides wasm-opt for release builds (Debian's
# binaryen 108 breaks hydration; cargo-leptos's own download cannot work here).
NPM_BIN := $(CURDIR)/end2end/node_modules/.bin

# `redis-chat --version` names the commit it was built from.
export REDIS_CHAT_COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)

# Each timed step prints "[time] <target>: <seconds>s" when it ends.
TIMED = TIMEFORMAT='[time] $@: %1Rs'; time

.PHONY: tools build run test test-rust test-e2e lint fmt bench dist clean

tools:
	@bash scripts/install-tools.sh

# --precompress: brotli and gzip copies of the site, made before the server
# is built, so the binary embeds them (src/server/site.rs).
build: tools
	@$(TIMED) PATH="$(NPM_BIN):$$PATH" cargo leptos build --release --precompress

run: build
	@echo "Starting $(SERVER_BIN) (ADDR/PORT from the environment or .env; default http://127.0.0.1:3000)"
	$(SERVER_BIN)

test: tools test-rust test-e2e

test-rust:
	@$(TIMED) cargo test --features ssr

test-e2e: build
	@cd end2end && $(TIMED) npx playwright test

lint:
	cargo fmt --all -- --check
	cargo clippy --features ssr --all-targets -- -D warnings
	cargo clippy --lib --features hydrate --target wasm32-unknown-unknown -- -D warnings
	cargo clippy --features loadgen --bin loadgen -- -D warnings

fmt:
	cargo fmt --all

bench:
	@if [ -f scripts/bench.sh ]; then bash scripts/bench.sh; else echo "no benchmarks yet"; fi

dist: build
	@bash scripts/dist.sh

clean:
	cargo clean
	rm -rf $(SITE_ROOT) dist end2end/test-results end2end/playwright-report
