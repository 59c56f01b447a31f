#!/usr/bin/env bash
# Installs what building and testing redis-chat needs, skipping whatever is
# already present at the right version. Safe to run again and again: when
# nothing is missing it prints one summary line and nothing else.
#
#   apt:      redis-server, chromium (Debian's; Playwright never downloads a browser),
#             nginx (the proxy of the rolling-restart test)
#   rustup:   target wasm32-unknown-unknown (+ clippy/rustfmt when missing)
#   cargo:    wasm-bindgen-cli 0.2.130 (must equal the wasm-bindgen crate pin)
#             cargo-leptos 0.3.11 (built from a patched lockfile, see below)
#   npm:      end2end/ (Playwright + binaryen 132, whose wasm-opt release builds use)
#
# Pitfalls (found when the toolchain was first set up on rustc 1.95):
# - `cargo install cargo-leptos --version 0.3.11 --locked` fails on rustc 1.95
#   (cargo-util-schemas 0.14.2 wants 1.96): we build it from its own source
#   with that one dependency pinned back to 0.14.1.
# - wasm-bindgen-cli 0.2.130 must be installed WITHOUT --locked (its lockfile
#   pins a webpki-roots version that is no longer in the registry).
# - Debian's binaryen (108) breaks hydration; the npm binaryen 132 is used.
#
# Speed on a fresh 2-core machine (README, "First run"): the two cargo tools
# are built with a light release profile (no LTO, 16 codegen units,
# opt-level 1, no debug info: they are build tools, their own speed barely
# matters) and at the same
# time as each other and the apt and npm steps; every step prints its time
# and the time since the start.
set -euo pipefail

# cargo-leptos's own release profile links with fat LTO and one codegen
# unit, most of it on one core; these override it for `cargo install` only.
export CARGO_PROFILE_RELEASE_LTO=false
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
# opt-level 1: 16 % less build time for both tools (measured, README).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1
export CARGO_PROFILE_RELEASE_DEBUG=0
export CARGO_PROFILE_RELEASE_INCREMENTAL=false

WASM_BINDGEN_VERSION=0.2.130
CARGO_LEPTOS_VERSION=0.3.11
CARGO_UTIL_SCHEMAS_PIN=0.14.1
APT_PACKAGES=(redis-server chromium nginx)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
PATH="$CARGO_HOME/bin:$PATH"
JOBS="$(nproc 2>/dev/null || echo 2)"
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/redis-chat-tools.XXXXXX")"
trap 'rm -rf "$LOG_DIR"' EXIT

installed=()

say() { printf 'install-tools: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# run_logged NAME CMD...: runs CMD with its output in a log file; prints the
# time taken (and since the start), or the end of the log when it fails.
run_logged() {
    local name="$1" log start rc
    shift
    log="$LOG_DIR/$name.log"
    start=$SECONDS
    say "installing $name ... (at ${SECONDS} s)"
    set +e
    "$@" >"$log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        say "FAILED: $name (exit $rc) after $((SECONDS - start)) s; last lines of its log:"
        tail -n 40 "$log" >&2
        exit "$rc"
    fi
    say "installed $name in $((SECONDS - start)) s (at ${SECONDS} s)"
    installed+=("$name")
}

# in_background NAME CMD...: run_logged in the background; `finish_background`
# waits for all of them and fails if one did.
background_pids=()
background_names=()
in_background() {
    local name="$1"
    ( run_logged "$@" ) &
    background_pids+=("$!")
    background_names+=("$name")
}
finish_background() {
    local i failed=0
    for i in "${!background_pids[@]}"; do
        if wait "${background_pids[$i]}"; then
            installed+=("${background_names[$i]}")
        else
            failed=1
        fi
    done
    [ "$failed" -eq 0 ] || die "a tool failed to install (its log is above)"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) for: $*"
    fi
}

# --- Rust toolchain pieces ----------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo not found (expected in $CARGO_HOME/bin); install Rust with rustup first"
command -v rustup >/dev/null 2>&1 || die "rustup not found; it is needed to add the wasm32-unknown-unknown target"

if ! rustup target list --installed 2>/dev/null | grep -qx 'wasm32-unknown-unknown'; then
    run_logged "rust-target:wasm32-unknown-unknown" rustup target add wasm32-unknown-unknown
fi
components=()
cargo clippy --version >/dev/null 2>&1 || components+=(clippy)
cargo fmt --version >/dev/null 2>&1 || components+=(rustfmt)
if [ "${#components[@]}" -gt 0 ]; then
    run_logged "rust-components:$(IFS=,; echo "${components[*]}")" rustup component add "${components[@]}"
fi

# --- wasm-bindgen-cli -----------------------------------------------------------
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
    # No --locked: the published lockfile pins a yanked webpki-roots (P2).
    in_background "wasm-bindgen-cli@$WASM_BINDGEN_VERSION" \
        cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force --jobs "$JOBS"
fi

# --- cargo-leptos ---------------------------------------------------------------
# Runs in a subshell (it changes directory and sets its own traps).
install_cargo_leptos() (
    set -euo pipefail
    find_src() { ls -d "$CARGO_HOME"/registry/src/*/"cargo-leptos-$CARGO_LEPTOS_VERSION" 2>/dev/null | head -n 1 || true; }
    src="$(find_src)"
    if [ -z "$src" ]; then
        # Fails on rustc 1.95 (P1), but leaves the crate's source in the registry.
        cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked --jobs "$JOBS" || true
        src="$(find_src)"
        [ -n "$src" ] || { echo "the source of cargo-leptos $CARGO_LEPTOS_VERSION was not downloaded"; exit 1; }
    fi
    work="$(mktemp -d "${TMPDIR:-/tmp}/cargo-leptos-build.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    cp -r "$src" "$work/cl"
    cd "$work/cl"
    # Its rust-toolchain.toml names "stable": build with the machine's default toolchain instead.
    rm -f rust-toolchain.toml
    cargo update -p cargo-util-schemas --precise "$CARGO_UTIL_SCHEMAS_PIN"
    cargo install --path . --locked --force --jobs "$JOBS" --target-dir "$work/target"
)
if [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LEPTOS_VERSION" ]; then
    in_background "cargo-leptos@$CARGO_LEPTOS_VERSION" install_cargo_leptos
fi

# --- apt packages (while the cargo tools build) -------------------------------
apt_missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    case "$pkg" in
        redis-server) command -v redis-server >/dev/null 2>&1 || apt_missing+=("$pkg") ;;
        # INSTALL_TOOLS_NO_E2E=1 (the Dockerfile): neither the browser nor
        # the proxy of the end-to-end tests.
        chromium) [ -x /usr/bin/chromium ] || [ -n "${INSTALL_TOOLS_NO_E2E:-}" ] || apt_missing+=("$pkg") ;;
        nginx) [ -x /usr/sbin/nginx ] || [ -n "${INSTALL_TOOLS_NO_E2E:-}" ] || apt_missing+=("$pkg") ;;
    esac
done
apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}
if [ "${#apt_missing[@]}" -gt 0 ]; then
    run_logged "apt:$(IFS=,; echo "${apt_missing[*]}")" apt_install "${apt_missing[@]}"
fi

# --- npm packages for end2end/ (Playwright, binaryen's wasm-opt) ----------------
E2E="$ROOT/end2end"
if [ -f "$E2E/package.json" ]; then
    command -v npm >/dev/null 2>&1 || die "npm not found; Node.js >= 20 with npm is needed for end2end/"
    # npm writes node_modules/.package-lock.json on every install: compare with it.
    if [ ! -f "$E2E/node_modules/.package-lock.json" ] ||
        { [ -f "$E2E/package-lock.json" ] && [ "$E2E/package-lock.json" -nt "$E2E/node_modules/.package-lock.json" ]; } ||
        [ "$E2E/package.json" -nt "$E2E/node_modules/.package-lock.json" ]; then
        if [ -f "$E2E/package-lock.json" ]; then
            run_logged "npm:end2end" npm --prefix "$E2E" ci --no-audit --no-fund
        else
            run_logged "npm:end2end" npm --prefix "$E2E" install --no-audit --no-fund
        fi
    fi
fi

finish_background

if [ "${#installed[@]}" -eq 0 ]; then
    echo "tools: all present (wasm-bindgen $WASM_BINDGEN_VERSION, cargo-leptos $CARGO_LEPTOS_VERSION, redis-server, chromium, end2end/node_modules)"
else
    echo "tools: installed ${installed[*]}; all present"
fi
