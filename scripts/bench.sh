#!/usr/bin/env bash
# `make bench`: the standard benchmark set of issue 6 (see BENCHMARKS.md).
#
# Builds the release server and the load generator, starts a private
# redis-server (unix socket in a temp dir, persistence off; never the
# machine's 6379) and the server on a free loopback port with
# BCRYPT_COST=4 MSG_RATE_LIMIT=0 (no per-user send limit) REGISTER_RATE_LIMIT=0
# PRIVATE_ROOM_RATE_LIMIT=0 (the load generator registers and opens rooms from
# one address) DEMO_DATA=false
# RUST_LOG=warn, then runs:
#
#   fanout   200 and 1,000 clients in General, ramped rates until p99 > 50 ms or loss;
#            then 1,000 clients again past the latency limit (until loss)
#   capacity idle authenticated sockets to 10,000 (RSS per socket, connects/s),
#            one user per socket, then the same number of sockets of 100 users
#   history  50-message pages from a 1,000,000-message room over 8 keep-alive connections
#   rooms    GET /api/rooms of one user in 5,000 private rooms (one message each),
#            the whole list and the first page (?limit=100)
#            over 4 keep-alive connections
#   ssr      server-side rendering of /login: one request at a time (latency), then 8 at once (pages/s)
#   send     100 senders, each in a private room (accepted msgs/s)
#   mixed    1,000 clients at 20,000 deliveries/s while 20 logins/s run
#            (login accounts registered with BCRYPT_COST=12, the default;
#            then again with cost-4 accounts)
#
# Results: one JSON line per measurement in bench-results/<timestamp>.jsonl,
# and the chart docs/bench-fanout.svg (QUICK: bench-results/<timestamp>-fanout.svg;
# CHART=path overrides). Everything started here is stopped on exit.
# QUICK=1 runs a small version (under 2 minutes once built).
# SKIP_BUILD=1 uses the binaries already built. ONLY="fanout capacity ..."
# runs some scenarios only. F200_RATES, F1000_RATES, F1000_SAT_RATES (messages/s
# per step, comma-separated), DUR and WARM (seconds) override the full run's steps.
# PIN_CPUS=1 runs the server on CPU 0 and the load generator on CPU 1 (taskset;
# Redis stays unpinned), so the two do not take turns on the same core.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
ONLY=${ONLY:-"fanout capacity history rooms ssr send mixed"}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
SERVER_BIN=$TARGET_DIR/release/redis-chat
LOADGEN_BIN=$TARGET_DIR/release/loadgen

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }
FAILED=()
# scenario_failed NAME: noted, the other scenarios still run, and the run
# exits 1 at the end.
scenario_failed() { log "$1 failed"; FAILED+=("$1"); }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building release binaries (server, loadgen)"
  cargo build --release --features ssr --bin redis-chat
  cargo build --release --features loadgen --bin loadgen
fi
for b in "$SERVER_BIN" "$LOADGEN_BIN"; do
  [[ -x $b ]] || { echo "missing $b (build it, or unset SKIP_BUILD)" >&2; exit 1; }
done
command -v redis-server >/dev/null || { echo "redis-server is not installed (make tools)" >&2; exit 1; }

# Sockets: the server and the load generator each hold one fd per socket.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if (( $(ulimit -n) < 21000 )); then
  log "note: open files limit is $(ulimit -n); 10,000 sockets need ~10,100 per process"
fi

WORK=$(mktemp -d /tmp/rc-bench.XXXXXX)
REDIS_PID=""
SERVER_PID=""
SERVER12_PID=""
stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$SERVER12_PID"
  stop_pid "$SERVER_PID"
  stop_pid "$REDIS_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  local p
  for p in $(seq 38100 38999); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2; exit 1
}

SOCK=$WORK/redis.sock
log "starting redis-server in $WORK (unix socket, no persistence)"
redis-server --port 0 --unixsocket "$SOCK" --unixsocketperm 700 --dir "$WORK" \
  --save '' --appendonly no --maxclients 1000 --logfile "$WORK/redis.log" &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -s "$SOCK" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -s "$SOCK" ping >/dev/null || { echo "redis-server did not start" >&2; cat "$WORK/redis.log" >&2; exit 1; }
REDIS_URL="redis+unix://$SOCK"

SERVER_PIN=""; LOADGEN_PIN=""
if [[ ${PIN_CPUS:-0} == 1 ]]; then
  command -v taskset >/dev/null || { echo "PIN_CPUS=1 needs taskset (util-linux)" >&2; exit 1; }
  SERVER_PIN="taskset -c 0"; LOADGEN_PIN="taskset -c 1"
  log "pinned: server on CPU 0, load generator on CPU 1"
fi

PORT=""
# start_server VAR_FOR_PID PORT BCRYPT_COST: a fresh server on our Redis.
start_server() {
  local port=$2 cost=$3
  PORT=$port BCRYPT_COST=$cost MSG_RATE_LIMIT=0 REGISTER_RATE_LIMIT=0 PRIVATE_ROOM_RATE_LIMIT=0 ADDR=127.0.0.1 REDIS_URL=$REDIS_URL DEMO_DATA=false \
    RUST_LOG=warn SITE_ROOT=target/site $SERVER_PIN "$SERVER_BIN" >>"$WORK/server-$port.log" 2>&1 &
  local pid=$!
  printf -v "$1" '%s' "$pid"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$WORK/server-$port.log" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the server did not listen on $port" >&2; exit 1
}
# A fresh server and an empty database for each scenario (fair RSS numbers).
fresh() {
  stop_pid "$SERVER_PID"
  SERVER_PID=""
  redis-cli -s "$SOCK" flushall >/dev/null
  PORT=$(free_port)
  start_server SERVER_PID "$PORT" 4
  sleep 0.5
}

mkdir -p bench-results
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=bench-results/$STAMP.jsonl
TAG=$(date +%H%M%S)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MEM_KIB=$(grep MemTotal /proc/meminfo | awk '{print $2}')
printf '{"scenario":"machine","nproc":%s,"cpu":"%s","mem_kib":%s,"kernel":"%s","redis":"%s","quick":%s,"git":"%s","ts":%s}\n' \
  "$(nproc)" "$CPU_MODEL" "$MEM_KIB" "$(uname -r)" "$(redis-server --version | awk '{print $3}')" \
  "$QUICK" "$(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet 2>/dev/null || echo +dirty)" \
  "$(date +%s)" >>"$OUT"
log "results: $OUT"

# The load generator runs on one thread unless LOADGEN_RUNTIME says otherwise
# (e.g. LOADGEN_RUNTIME="--threads 2").
LOADGEN_RUNTIME=${LOADGEN_RUNTIME:---single-thread}
lg() { # lg SCENARIO RUN [args...]
  local scenario=$1 run=$2
  shift 2
  $LOADGEN_PIN "$LOADGEN_BIN" "$scenario" --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" \
    --redis-pid "$REDIS_PID" $LOADGEN_RUNTIME --run "$TAG$run" --out "$OUT" "$@" >/dev/null
}

if [[ $QUICK == 1 ]]; then
  DUR=3; WARM=1
  F200_RATES=10,250,500          # × 200 sockets = 2k, 50k, 100k deliveries/s
  F1000_CLIENTS=500; F1000_RATES=4,200; F1000_SAT_RATES=400
  CAP_SOCKETS=1000; CAP_STEP=500
  HIST_SEED=100000
  ROOMS_SEED=1000
else
  DUR=${DUR:-10}; WARM=${WARM:-2}
  F200_RATES=${F200_RATES:-10,25,50,100,250,500,750,1000,1500,2000,3000}
  F1000_CLIENTS=1000; F1000_RATES=${F1000_RATES:-2,5,10,20,50,100,150,200,300,400}
  F1000_SAT_RATES=${F1000_SAT_RATES:-20,50,100,200,300,400,600}
  CAP_SOCKETS=10000; CAP_STEP=1000
  HIST_SEED=1000000
  ROOMS_SEED=${ROOMS_SEED:-5000}
fi

if wants fanout; then
  fresh
  log "fanout: 200 clients, rates $F200_RATES msgs/s"
  lg fanout f2 --clients 200 --senders 10 --rates "$F200_RATES" --duration "$DUR" --warmup "$WARM" || scenario_failed "fanout 200"
  fresh
  log "fanout: $F1000_CLIENTS clients, rates $F1000_RATES msgs/s"
  # The goal asks for 20 s at 200,000 deliveries/s.
  lg fanout f1 --clients "$F1000_CLIENTS" --senders 10 --rates "$F1000_RATES" \
    --duration "$([[ $QUICK == 1 ]] && echo "$DUR" || echo 20)" --warmup "$WARM" || scenario_failed "fanout 1000"
  # Past the latency limit: where does throughput stop following the offer?
  fresh
  log "fanout: $F1000_CLIENTS clients, saturation ramp $F1000_SAT_RATES msgs/s (stops on loss only)"
  lg fanout f1s --clients "$F1000_CLIENTS" --senders 10 --rates "$F1000_SAT_RATES" --duration "$DUR" --warmup "$WARM" \
    --stop-p99-ms 1e9 --label saturation || scenario_failed "fanout 1000 saturation"
fi

if wants capacity; then
  fresh
  log "capacity: $CAP_SOCKETS idle sockets (one user each)"
  lg capacity c --sockets "$CAP_SOCKETS" --step "$CAP_STEP" --hold 3 || scenario_failed "capacity"
  # The same sockets from 100 users: presence announces 100 users instead of
  # 10,000, so this isolates the memory and connect cost of a socket.
  fresh
  log "capacity: $CAP_SOCKETS idle sockets of 100 users"
  lg capacity c100 --sockets "$CAP_SOCKETS" --users 100 --step "$CAP_STEP" --hold 3 --label "100 users" || scenario_failed "capacity (100 users)"
fi

if wants history; then
  fresh
  log "history: $HIST_SEED messages, 8 connections"
  lg history h --redis-url "$REDIS_URL" --seed "$HIST_SEED" --connections 8 --duration "$DUR" --warmup "$WARM" || scenario_failed "history"
fi

if wants rooms; then
  fresh
  log "rooms: one user in $ROOMS_SEED private rooms, GET /api/rooms over 4 connections"
  lg rooms rm --redis-url "$REDIS_URL" --rooms "$ROOMS_SEED" --connections 4 --duration "$DUR" --warmup "$WARM" || scenario_failed "rooms"
  fresh
  log "rooms: the same, the browser's first page (?limit=100)"
  lg rooms rp --redis-url "$REDIS_URL" --rooms "$ROOMS_SEED" --connections 4 --limit 100 --duration "$DUR" --warmup "$WARM" || scenario_failed "rooms (page)"
fi

if wants ssr; then
  fresh
  log "ssr: GET /login, 1 then 8 connections"
  lg ssr r1 --path /login --connections 1 --duration "$DUR" --warmup "$WARM" --label "1 connection" || scenario_failed "ssr"
  lg ssr r8 --path /login --connections 8 --duration "$DUR" --warmup "$WARM" --label "8 connections" || scenario_failed "ssr"
fi

if wants send; then
  fresh
  log "send: 100 senders, private rooms, 4 in flight each"
  lg send s --senders 100 --window 4 --duration "$DUR" --warmup "$WARM" || scenario_failed "send"
fi

if wants mixed; then
  fresh
  # Login accounts with the default bcrypt cost, registered through a second
  # server with BCRYPT_COST=12 (verifying them costs the same on any server).
  P12=$(free_port)
  start_server SERVER12_PID "$P12" 12
  "$LOADGEN_BIN" register --addr "127.0.0.1:$P12" --prefix "lg${TAG}m-login-" --count 20 \
    --concurrency 4 --run "${TAG}m" >/dev/null
  stop_pid "$SERVER12_PID"; SERVER12_PID=""
  log "mixed: $F1000_CLIENTS clients at 20 msgs/s while 20 logins/s run (bcrypt cost 12)"
  lg mixed m --clients "$F1000_CLIENTS" --senders 10 --rates 20 --duration "$DUR" --warmup "$WARM" \
    --logins 20 --login-prefix "lg${TAG}m-login-" --login-users 20 --label "bcrypt cost 12" || scenario_failed "mixed"
  fresh
  log "mixed: the same with login accounts of bcrypt cost 4 (the login path without bcrypt's weight)"
  lg mixed m4 --clients "$F1000_CLIENTS" --senders 10 --rates 20 --duration "$DUR" --warmup "$WARM" \
    --logins 20 --login-users 20 --label "bcrypt cost 4" || scenario_failed "mixed (cost 4)"
fi

# The chart of BENCHMARKS.md comes from a full run; QUICK keeps its own.
CHART=${CHART:-$([[ $QUICK == 1 ]] && echo "bench-results/$STAMP-fanout.svg" || echo docs/bench-fanout.svg)}
log "rendering $CHART"
"$LOADGEN_BIN" render --input "$OUT" --output "$CHART" \
  --subtitle "$(nproc) cores ($CPU_MODEL), server + Redis + load generator on one machine; $(date +%Y-%m-%d)$([[ $QUICK == 1 ]] && echo ', QUICK')" || true

# A short table on stderr.
python3 - "$OUT" <<'EOF' >&2 || true
import json, sys
for line in open(sys.argv[1]):
    v = json.loads(line)
    s = v.get("scenario")
    if s in ("fanout", "mixed"):
        print(f"{s:8} {v['clients']:5} clients {v.get('label',''):15} {v['offered_deliveries_per_s']:>9.0f} offered {v['deliveries_per_s']:>9.0f} del/s "
              f"p50 {v['latency_ms']['p50']:7.2f} p99 {v['latency_ms']['p99']:8.2f} ms loss {v['loss']} "
              f"server {(v['cpu']['server'] or {}).get('cpu_us_per_unit')} us/del")
    elif s == "capacity":
        print(f"capacity {v['open_at_end']}/{v['sockets']} open ({v['users']} users), {v['connects_per_s']:.0f} connects/s, {v['server_rss_kib_per_socket']} KiB/socket, {v['frames']['total']} frames")
    elif s == "history":
        print(f"history  {v['pages_per_s']:.0f} pages/s p50 {v['latency_ms']['p50']} p99 {v['latency_ms']['p99']} ms")
    elif s == "rooms":
        page = f" limit {v['limit']}" if v.get('limit') else ""
        print(f"rooms    {v['rooms']} rooms{page} x{v['connections']}: {v['pages_per_s']:.1f} requests/s p50 {v['latency_ms']['p50']} p99 {v['latency_ms']['p99']} ms, {v['avg_page_bytes']} B, "
              f"server {(v['cpu']['server'] or {}).get('cpu_us_per_unit')} us, redis {(v['cpu'].get('redis') or {}).get('cpu_us_per_unit')} us per request")
    elif s == "ssr":
        print(f"ssr      {v['path']} x{v['connections']}: {v['pages_per_s']:.0f} pages/s p50 {v['latency_ms']['p50']} p99 {v['latency_ms']['p99']} ms, {v['avg_page_bytes']} B")
    elif s == "send":
        print(f"send     {v['accepted_msgs_per_s']:.0f} msgs/s accepted, ack p99 {v['ack_latency_ms']['p99']} ms")
EOF
log "done: $OUT"
if (( ${#FAILED[@]} > 0 )); then
  log "FAILED: ${FAILED[*]}"
  exit 1
fi
