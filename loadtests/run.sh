#!/usr/bin/env bash
# Load test on loopback: builds the release binary, starts it on a free
# port with the embedded store, drives POST /check with wrk for a bounded
# time, prints throughput and latency, and stops the service.
#
#   loadtests/run.sh [DURATION_SECONDS] [CONNECTIONS]
#   KEYS=1 loadtests/run.sh 10 64     # one hot key (mostly 429s)
#
# Installs wrk from Debian's packages when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
connections="${2:-64}"

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y wrk; fi
fi

cargo build --release --quiet --bin ratelimiter
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
config="$(mktemp)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$config"' EXIT
cat >"$config" <<TOML
[log]
level = "warn"
[defaults]
limit = 1000000
window = "10s"
TOML
target/release/ratelimiter serve --config "$config" --listen "127.0.0.1:$port" &
pid=$!
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done

wrk -t2 -c"$connections" -d"${duration}s" --latency -s loadtests/check.lua "http://127.0.0.1:$port"
