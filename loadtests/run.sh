#!/usr/bin/env bash
# Load test on loopback: builds the release binary, starts it on a free
# port with the embedded store, drives POST /check with wrk for a bounded
# time, prints throughput and latency, and stops the service.
#
#   loadtests/run.sh [DURATION_SECONDS] [CONNECTIONS]
#   KEYS=1 loadtests/run.sh 10 64     # one hot key (mostly 429s)
#   BACKEND=redis loadtests/run.sh    # counters in a throwaway redis-server on a free port
#   TOOL=loadgen loadtests/run.sh 10 64   # drive it with this workspace's loadgen instead of wrk
#   TOOL=loadgen LOADGEN_ARGS="--plot run.svg --json run.json" loadtests/run.sh
#
# Installs wrk (and redis-server for BACKEND=redis) from Debian's packages
# when missing; TOOL=loadgen needs no wrk. TIER and COST (see check.lua)
# are sent by both tools.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-64}"

backend="${BACKEND:-memory}"
tool="${TOOL:-wrk}"
case "$tool" in wrk | loadgen) ;; *) echo "TOOL must be wrk or loadgen, not $tool" >&2; exit 2 ;; esac
install() {
  echo "installing $1" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq "$1" >/dev/null; else sudo apt-get install -y "$1"; fi
}
if [ "$tool" = wrk ]; then command -v wrk >/dev/null || install wrk; fi
if [ "$backend" = redis ]; then command -v redis-server >/dev/null || install redis-server; fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build --release --quiet --bin ratelimiter
if [ "$tool" = loadgen ]; then cargo build --release --quiet -p loadgen --bin loadgen; fi
port="$(free_port)"
config="$(mktemp)"
pid=""
redis_pid=""
cleanup() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  [ -n "$redis_pid" ] && { kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; }
  rm -f "$config"
}
trap cleanup EXIT
cat >"$config" <<TOML
[log]
level = "warn"
[defaults]
limit = 1000000
window = "10s"
TOML
if [ "$backend" = redis ]; then
  redis_port="$(free_port)"
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  redis_pid=$!
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  printf '[store]\nbackend = "redis"\n[store.redis]\nurl = "redis://127.0.0.1:%s"\npool_size = 8\n' "$redis_port" >>"$config"
fi
target/release/ratelimiter serve --config "$config" --listen "127.0.0.1:$port" &
pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done

if [ "$tool" = loadgen ]; then
  # Same load as the wrk script: KEYS keys in turn over CONNECTIONS
  # connections; loadgen draws them uniformly and reports accuracy too.
  args=(--target "http://127.0.0.1:$port" --connections "$connections" --duration "${duration}s"
    --keys "uniform:${KEYS:-1000}")
  [ -n "${ENDPOINT:-}" ] && args+=(--endpoint "$ENDPOINT")
  [ -n "${TIER:-}" ] && args+=(--tier "$TIER")
  [ -n "${COST:-}" ] && args+=(--cost "$COST")
  # shellcheck disable=SC2086 # LOADGEN_ARGS is split into words on purpose
  target/release/loadgen "${args[@]}" ${LOADGEN_ARGS:-}
else
  wrk -t2 -c"$connections" -d"${duration}s" --latency -s loadtests/check.lua "http://127.0.0.1:$port"
fi
