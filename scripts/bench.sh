#!/usr/bin/env bash
# Throughput benchmark of ratelimiter on loopback, reported against the bare
# HTTP ceiling measured in the same run.
#
# Usage:
#   scripts/bench.sh            # full run: every scenario for BENCH_DURATION with BENCH_CONNECTIONS
#   scripts/bench.sh --smoke    # about 1 s per scenario with 4 connections: checks that the
#                               # pipeline works (answers, table, accuracy), not speed
#   scripts/bench.sh --soak     # the soak only (below), instead of the scenarios: the Redis
#                               # replica at half its maximum rate for BENCH_SOAK_DURATION
#   scripts/bench.sh --help
#
# It builds the release binaries (ratelimiter, loadgen, ceiling), then starts,
# on free loopback ports: the ceiling server (a bare axum /check, no limiting),
# a ratelimiter replica on the memory store, a standalone redis-server and a
# replica on it, a 1-master and a 3-master Redis Cluster (no replicas) and a
# replica on each. It runs loadgen against them, one scenario after another:
#
#   ceiling           the ceiling server, closed loop, keys BENCH_KEYS
#   memory-allowed    memory store, closed loop, every request allowed
#   grpc-memory-allowed  the same replica asked over gRPC (Envoy's
#                     ShouldRateLimit, one descriptor per call), all allowed;
#                     reported as a ratio to memory-allowed too
#   memory-allowed-otlp  memory-allowed on a replica of its own that exports
#                     every request's spans over OTLP/HTTP ([telemetry]
#                     sample_ratio = 1.0) to a sink (a second ceiling
#                     server, whose POST /v1/traces takes and drops them);
#                     reported as a ratio to memory-allowed too: the cost
#                     of traces
#   redis-allowed     standalone Redis, closed loop, every request allowed
#   redis-half-rate   standalone Redis at a fixed rate of half redis-allowed's
#                     throughput (latency at a load the service keeps up with)
#   redis-denied      standalone Redis, one hot key far over its limit (429s)
#   cluster1-allowed  1-master cluster, closed loop, every request allowed
#   cluster3-allowed  3-master cluster, closed loop, every request allowed
#   memory-three-limits  memory store, a rule of three limits (a user's burst
#                     and daily quota, the org's shared bucket), all allowed
#   redis-three-limits   the same rule on the standalone Redis
#   redis-hot-allowed    standalone Redis, one hot key, every request allowed
#                     (the default rule's billion per hour)
#   cluster3-hot-allowed 3-master cluster, one hot key, every request allowed:
#                     all the traffic on one slot, so on one master
#
# with the ceiling measured again after each scenario (ceiling-2 ... -13):
# each scenario's ratio is to the mean of the ceiling runs just before and
# after it, so the machine's drift during the run moves both sides alike.
#
# Each scenario and each ceiling run is measured a second time, right after
# loadgen, with wrk when it is installed (Debian: apt-get install wrk): one
# wrk thread, the same connections and duration (whole seconds, rounded
# up), and a generated Lua script (<scenario>.wrk.lua) that POSTs the same
# /check body as loadgen: the same key distribution under a fresh key
# prefix, and the same endpoint and scopes. Its req/s is reported next to
# loadgen's, with its ratio to the mean of the wrk ceiling runs just before
# and after. wrk only runs closed loops, so redis-half-rate (a fixed rate)
# has no wrk figures. Without wrk the wrk columns stay empty.
#
# It prints one table (req/s, p50, p99, p99.9, ratio to the ceiling, wrk's
# req/s and ratio, over-admission, the server's CPU µs per decision (the
# ceiling's or the replica's user + sys time from /proc, over loadgen's run)
# and, for every Redis scenario, Redis CPU µs and script calls per
# decision: used_cpu_user + used_cpu_sys of INFO cpu and the EVALSHA calls
# of INFO commandstats, before and after loadgen's run, summed over the
# masters, divided by the decisions), also written as Markdown with every
# loadgen and wrk report.
#
# The soak (--soak or BENCH_SOAK=1) runs instead of the scenarios, with no
# ceiling and no cluster: a standalone redis-server and a replica on it.
# loadgen first measures the replica's maximum rate in a closed-loop run of
# BENCH_SOAK_PROBE, then sends half that rate (--rate) with keys
# zipf:1000000:1.0, while the replica's RSS (VmRSS of /proc/<pid>/status),
# its open file descriptors (/proc/<pid>/fd) and Redis's used_memory (INFO
# memory) are sampled before the load and at the end of every
# BENCH_SOAK_EVERY of BENCH_SOAK_DURATION (the load goes on a second
# longer, so that the last sample is taken under load too); each
# interval's p99 is the highest per-second p99 of loadgen's timeline in it.
# The first interval is the warm-up: the verdict is "flat" when, at the end,
# RSS is within 10% and the descriptors within +5 of the sample taken at
# the end of the first interval, "growing" otherwise. It writes soak.md and
# soak.json.
#
# Everything it started is stopped on exit, also on failure or Ctrl-C.
# Exit status: 0 when every scenario was answered (2xx/429 only; wrk,
# which does not tell a 429 from a 500, 2xx only but in redis-denied) with
# no over-admission (and, with --smoke, no request errors, loadgen's or
# wrk's);
# with --soak, 0 when the verdict is flat, every request was answered with a
# 2xx or 429 and no over-admission was seen; 1 otherwise; 2 for bad arguments.
#
# Environment:
#   BENCH_DURATION     per scenario, as loadgen reads it (default 10s; --smoke 1s)
#   BENCH_CONNECTIONS  loadgen and wrk connections, also the soak's (default 64; --smoke 4)
#   BENCH_KEYS         key distribution of the allowed scenarios (default uniform:10000)
#   BENCH_POOL_SIZE    Redis connections per replica, store.redis.pool_size (default 4)
#   BENCH_OUT          output directory (default target/bench): results.md, results.json,
#                      <scenario>.json and <scenario>.txt (loadgen's reports),
#                      <scenario>.wrk.json, .wrk.txt and .wrk.lua (wrk's), logs/;
#                      with --soak: soak.md, soak.json, soak-probe.* and soak-run.* (loadgen's)
#   BENCH_PORT         first of 17 consecutive loopback ports to use (Redis cluster bus
#                      ports included); default: free ports chosen by the OS
#   BENCH_SMOKE=1      the same as --smoke
#   BENCH_SOAK=1       the same as --soak
#   BENCH_SOAK_DURATION  length of the soak (default 10m)
#   BENCH_SOAK_EVERY   time between two samples of the soak (default 60s; shortened
#                      when needed so that there are at least 3 intervals)
#   BENCH_SOAK_PROBE   the closed-loop run that measures the maximum rate (default 5s)
#   BENCH_PROFILE      cargo profile to build and run: release (default) or debug
#   RATELIMITER_BIN, LOADGEN_BIN, CEILING_BIN
#                      use these binaries instead; when all three are set (with --soak:
#                      the first two) nothing is built
#
# Needs redis-server and redis-cli (Debian: apt-get install redis-server) and python3;
# wrk is used when installed.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

smoke="${BENCH_SMOKE:-0}"
soak="${BENCH_SOAK:-0}"
for arg in "$@"; do
    case "$arg" in
    --smoke) smoke=1 ;;
    --soak) soak=1 ;;
    -h | --help) usage 0 ;;
    *)
        echo "bench: unknown argument '$arg'" >&2
        usage
        ;;
    esac
done

say() { echo "bench: $*" >&2; }
die() {
    say "$*"
    exit 1
}
bad() {
    say "$*"
    exit 2
}

[[ "$smoke" == 1 || "$smoke" == 0 ]] || bad "BENCH_SMOKE must be 0 or 1, not '$smoke'"
[[ "$soak" == 1 || "$soak" == 0 ]] || bad "BENCH_SOAK must be 0 or 1, not '$soak'"
[[ "$smoke" == 0 || "$soak" == 0 ]] || bad "--smoke and --soak do not go together"

caller_dir="$PWD"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [[ "$smoke" == 1 ]]; then
    duration="${BENCH_DURATION:-1s}"
    connections="${BENCH_CONNECTIONS:-4}"
else
    duration="${BENCH_DURATION:-10s}"
    connections="${BENCH_CONNECTIONS:-64}"
fi
keys="${BENCH_KEYS:-uniform:10000}"
pool_size="${BENCH_POOL_SIZE:-4}"
profile="${BENCH_PROFILE:-release}"
out="${BENCH_OUT:-$root/target/bench}"
[[ "$out" == /* ]] || out="$caller_dir/$out"
[[ "$connections" =~ ^[1-9][0-9]*$ ]] || bad "BENCH_CONNECTIONS must be a positive integer, not '$connections'"
[[ "$pool_size" =~ ^[1-9][0-9]*$ ]] || bad "BENCH_POOL_SIZE must be a positive integer, not '$pool_size'"
if [[ -n "${BENCH_PORT:-}" ]]; then
    if ! [[ "$BENCH_PORT" =~ ^[0-9]+$ ]] || ((BENCH_PORT < 1024 || BENCH_PORT + 16 > 65535)); then
        bad "BENCH_PORT must be a port between 1024 and 65519, not '$BENCH_PORT'"
    fi
fi
case "$profile" in
release | debug) ;;
*) bad "BENCH_PROFILE must be release or debug, not '$profile'" ;;
esac

for tool in redis-server redis-cli python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed (redis-server and redis-cli: apt-get install redis-server)"
done

# A duration as loadgen reads it (10s, 1500ms, 2m, 1m 30s; a bare number is
# seconds), in whole microseconds; fails on anything else or on zero.
micros_of() {
    python3 - "$1" <<'PY'
import re, sys
text = sys.argv[1].strip()
units = {"ns": 1e-3, "nsec": 1e-3, "us": 1, "usec": 1, "µs": 1, "ms": 1e3, "msec": 1e3,
         "s": 1e6, "sec": 1e6, "secs": 1e6, "second": 1e6, "seconds": 1e6,
         "m": 6e7, "min": 6e7, "mins": 6e7, "minute": 6e7, "minutes": 6e7,
         "h": 3.6e9, "hr": 3.6e9, "hrs": 3.6e9, "hour": 3.6e9, "hours": 3.6e9,
         "d": 8.64e10, "day": 8.64e10, "days": 8.64e10}
try:
    micros = float(text) * 1e6
except ValueError:
    parts = re.findall(r"(\d+)\s*([a-zµ]+)", text)
    if not re.fullmatch(r"(\s*\d+\s*[a-zµ]+)+\s*", text) or any(u not in units for _, u in parts):
        sys.exit(1)
    micros = sum(int(n) * units[u] for n, u in parts)
if not micros >= 1:
    sys.exit(1)
print(round(micros))
PY
}

duration_us="$(micros_of "$duration")" || bad "BENCH_DURATION must be a duration such as 10s, 1500ms or 2m, not '$duration'"
# wrk takes whole seconds.
wrk_duration="$(((duration_us + 999999) / 1000000))s"
wrk_bin=""
wrk_version=""
if [[ "$soak" == 1 ]]; then
    soak_duration="${BENCH_SOAK_DURATION:-10m}"
    soak_every="${BENCH_SOAK_EVERY:-60s}"
    soak_probe="${BENCH_SOAK_PROBE:-5s}"
    soak_duration_us="$(micros_of "$soak_duration")" || bad "BENCH_SOAK_DURATION must be a duration such as 10m, not '$soak_duration'"
    soak_every_us="$(micros_of "$soak_every")" || bad "BENCH_SOAK_EVERY must be a duration such as 60s, not '$soak_every'"
    micros_of "$soak_probe" >/dev/null || bad "BENCH_SOAK_PROBE must be a duration such as 5s, not '$soak_probe'"
    # At least 3 intervals.
    ((soak_every_us * 3 <= soak_duration_us)) || soak_every_us=$((soak_duration_us / 3))
elif command -v wrk >/dev/null; then
    wrk_bin="$(command -v wrk)"
    wrk_version="$("$wrk_bin" -v 2>&1 | head -1 | cut -d' ' -f1-2)" || true
    [[ "$wrk_version" == wrk* ]] || wrk_version=wrk
else
    say "wrk is not installed (apt-get install wrk): the scenarios run with loadgen only, the wrk columns stay empty"
fi

# ---------------------------------------------------------------- binaries
# The soak needs no ceiling server.
if [[ -n "${RATELIMITER_BIN:-}" && -n "${LOADGEN_BIN:-}" && (-n "${CEILING_BIN:-}" || "$soak" == 1) ]]; then
    ratelimiter_bin="$RATELIMITER_BIN"
    loadgen_bin="$LOADGEN_BIN"
    ceiling_bin="${CEILING_BIN:-}"
else
    say "building the $profile binaries"
    profile_flag=()
    [[ "$profile" == release ]] && profile_flag=(--release)
    cargo build --quiet "${profile_flag[@]}" -p ratelimiter -p loadgen \
        --bin ratelimiter --bin loadgen --bin ceiling
    bin_dir="${CARGO_TARGET_DIR:-$root/target}/$profile"
    ratelimiter_bin="${RATELIMITER_BIN:-$bin_dir/ratelimiter}"
    loadgen_bin="${LOADGEN_BIN:-$bin_dir/loadgen}"
    ceiling_bin="${CEILING_BIN:-$bin_dir/ceiling}"
fi
needed_bins=("$ratelimiter_bin" "$loadgen_bin")
[[ "$soak" == 1 ]] || needed_bins+=("$ceiling_bin")
for bin in "${needed_bins[@]}"; do
    [[ -x "$bin" ]] || die "no executable at $bin"
done

# ---------------------------------------------------------------- cleanup
work="$(mktemp -d "${TMPDIR:-/tmp}/ratelimiter-bench.XXXXXX")"
pids=()
loadgen_pid=""
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    local pid
    [[ -z "$loadgen_pid" ]] || kill -TERM "$loadgen_pid" 2>/dev/null || true
    for pid in ${pids[@]+"${pids[@]}"}; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in ${pids[@]+"${pids[@]}"}; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- ports
# 17 loopback ports: BENCH_PORT's, or free ones the OS picks (all sockets are
# held open until every port is chosen, so no two are the same).
if [[ -n "${BENCH_PORT:-}" ]]; then
    mapfile -t free_ports < <(seq "$BENCH_PORT" $((BENCH_PORT + 16)))
else
    mapfile -t free_ports < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(17)]
for s in socks:
    s.bind(("127.0.0.1", 0))
for s in socks:
    print(s.getsockname()[1])
')
fi
redis_port="${free_ports[0]}"
c1_port="${free_ports[1]}"
c3_ports=("${free_ports[2]}" "${free_ports[3]}" "${free_ports[4]}")
bus_ports=("${free_ports[@]:5:4}") # cluster bus ports of the 4 cluster nodes
ceiling_port="${free_ports[9]}"
replica_ports=("${free_ports[@]:10:4}" "${free_ports[15]}")
grpc_port="${free_ports[14]}" # the memory replica's gRPC listener
sink_port="${free_ports[16]}" # the OTLP sink of memory-allowed-otlp

# Polls "$@" until it succeeds, for at most 30 s, while process $2 lives
# (the one that should answer; "-" for none).
wait_for() {
    local what="$1" pid="$2"
    shift 2
    local deadline=$((SECONDS + 30))
    until "$@" >/dev/null 2>&1; do
        if [[ "$pid" != - ]] && ! kill -0 "$pid" 2>/dev/null; then
            die "$what: exited (logs in $out/logs)"
        fi
        ((SECONDS < deadline)) || die "$what: not ready within 30 s (logs in $out/logs)"
        sleep 0.05
    done
}

# Only the files this script writes are replaced.
mkdir -p "$out/logs"
rm -f -- "$out"/logs/redis-*.log "$out"/logs/replica-*.log "$out/logs/ceiling.log" "$out/logs/cluster3-create.log"
if [[ "$soak" == 1 ]]; then
    rm -f -- "$out/soak.md" "$out/soak.json" "$out"/soak-probe.{json,txt} "$out"/soak-run.{json,txt}
else
    rm -f -- "$out/results.md" "$out/results.json"
    for name in ceiling ceiling-{2..13} memory-allowed grpc-memory-allowed memory-allowed-otlp redis-allowed \
        redis-half-rate redis-denied \
        cluster1-allowed cluster3-allowed memory-three-limits redis-three-limits \
        redis-hot-allowed cluster3-hot-allowed; do
        rm -f -- "$out/$name".{json,txt,redis.json,sink.json,wrk.json,wrk.txt,wrk.lua}
    done
fi

# ---------------------------------------------------------------- redis
# A redis-server on 127.0.0.1:$1 keeping nothing on disk; more flags follow.
start_redis() {
    local port="$1" name="$2"
    shift 2
    mkdir -p "$work/$name"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$work/$name" --save '' --appendonly no \
        --daemonize no "$@" >"$out/logs/redis-$name.log" 2>&1 &
    pids+=($!)
    wait_for "redis $name on port $port" $! redis-cli -h 127.0.0.1 -p "$port" ping
}

# shellcheck disable=SC2317 # called by wait_for
http_ok() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1"
}

# shellcheck disable=SC2317 # called by wait_for
cluster_ok() {
    local port
    for port in "$@"; do
        redis-cli -h 127.0.0.1 -p "$port" cluster info | tr -d '\r' | grep -qx 'cluster_state:ok' || return 1
    done
}

# A cluster node: the client port and a separate cluster bus port. It
# announces 127.0.0.1: a lone master has met no peer to learn its address
# from, and would otherwise tell clients an empty host for its slots.
start_cluster_node() {
    local port="$1" name="$2" bus="$3"
    start_redis "$port" "$name" --cluster-enabled yes --cluster-port "$bus" \
        --cluster-config-file "$work/$name/nodes.conf" --cluster-node-timeout 5000 \
        --cluster-require-full-coverage no \
        --cluster-announce-ip 127.0.0.1
}

start_redis "$redis_port" redis

if [[ "$soak" == 1 ]]; then
    say "redis: standalone on $redis_port"
else
    start_cluster_node "$c1_port" cluster1 "${bus_ports[0]}"
    redis-cli -h 127.0.0.1 -p "$c1_port" cluster addslotsrange 0 16383 >/dev/null
    wait_for "1-master cluster" - cluster_ok "$c1_port"

    for i in 0 1 2; do
        start_cluster_node "${c3_ports[$i]}" "cluster3-$i" "${bus_ports[$((i + 1))]}"
    done
    redis-cli --cluster create "${c3_ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
        >"$out/logs/cluster3-create.log" 2>&1 || die "creating the 3-master cluster failed: $(cat "$out/logs/cluster3-create.log")"
    wait_for "3-master cluster" - cluster_ok "${c3_ports[@]}"
    say "redis: standalone on $redis_port, 1-master cluster on $c1_port, 3-master cluster on ${c3_ports[*]}"
fi

# ---------------------------------------------------------------- services
# Every request of the allowed scenarios fits the default rule (a token
# bucket of a billion per hour); the denied scenario sends one key to
# "POST /hot", 100 per hour, so all but its first 100 requests are denied.
# The three-limit scenarios send "POST /three" with the scope org=acme:
# every key's burst and daily quota, and the one org's bucket they share,
# each a billion.
rules_toml='[log]
level = "warn"
[reload]
watch = false
[defaults]
algorithm = "token_bucket"
limit = 1000000000
window = "1h"
[[rules]]
endpoint = "POST /hot"
algorithm = "token_bucket"
limit = 100
window = "1h"
[[rules]]
endpoint = "POST /three"
limits = [
  { name = "burst", algorithm = "token_bucket", limit = 1000000000, window = "1h" },
  { name = "daily", algorithm = "fixed_window", limit = 1000000000, window = "1d" },
  { name = "org", by = "org", algorithm = "sliding_window_counter", limit = 1000000000, window = "1h" },
]'

# A ratelimiter replica named $1 with the [store] section $2, on the next of
# replica_ports; sets $replica_url and $replica_pid.
replica_url=""
replica_pid=""
# The process serving each URL, for its CPU time per run.
declare -A pid_of=()
start_replica() {
    local name="$1" store="$2" port="${replica_ports[0]}" config
    replica_ports=("${replica_ports[@]:1}")
    config="$work/$name.toml"
    printf '%s\n%s\n' "$rules_toml" "$store" >"$config"
    "$ratelimiter_bin" serve --config "$config" --listen "127.0.0.1:$port" >"$out/logs/replica-$name.log" 2>&1 &
    replica_pid=$!
    pids+=("$replica_pid")
    replica_url="http://127.0.0.1:$port"
    pid_of["$replica_url"]="$replica_pid"
    wait_for "replica $name" "$replica_pid" http_ok "$replica_url/health/ready"
}

redis_store() {
    printf '[store]\nbackend = "redis"\nfailure_mode = "closed"\n[store.redis]\npool_size = %s\n%s\n' "$pool_size" "$1"
}

if [[ "$soak" == 0 ]]; then
    "$ceiling_bin" --listen "127.0.0.1:$ceiling_port" >"$out/logs/ceiling.log" 2>&1 &
    pids+=($!)
    ceiling_url="http://127.0.0.1:$ceiling_port"
    pid_of["$ceiling_url"]=$!
    wait_for "ceiling server" $! http_ok "$ceiling_url/health"

    start_replica memory "[store]
backend = \"memory\"
[grpc]
listen = \"127.0.0.1:$grpc_port\"
[[grpc.domains]]
domain = \"edge\"
key_entries = [\"key\"]
endpoint_entry = \"endpoint\"
tier_entry = \"tier\""
    memory_url="$replica_url"

    # The OTLP sink, and a memory replica exporting every request's spans to it.
    "$ceiling_bin" --listen "127.0.0.1:$sink_port" >"$out/logs/otlp-sink.log" 2>&1 &
    pids+=($!)
    sink_url="http://127.0.0.1:$sink_port"
    wait_for "OTLP sink" $! http_ok "$sink_url/health"
    start_replica memory-otlp "[store]
backend = \"memory\"
[telemetry]
otlp_endpoint = \"$sink_url\"
sample_ratio = 1.0"
    otlp_url="$replica_url"
fi
start_replica redis "$(redis_store "mode = \"standalone\"
url = \"redis://127.0.0.1:$redis_port\"")"
redis_url="$replica_url"
redis_replica_pid="$replica_pid"
if [[ "$soak" == 1 ]]; then
    say "replica: redis $redis_url"
else
    start_replica cluster1 "$(redis_store "mode = \"cluster\"
nodes = [\"127.0.0.1:$c1_port\"]")"
    cluster1_url="$replica_url"
    start_replica cluster3 "$(redis_store "mode = \"cluster\"
nodes = [\"127.0.0.1:${c3_ports[0]}\", \"127.0.0.1:${c3_ports[1]}\", \"127.0.0.1:${c3_ports[2]}\"]")"
    cluster3_url="$replica_url"
    say "replicas: memory $memory_url, memory-otlp $otlp_url (OTLP sink $sink_url), redis $redis_url, cluster1 $cluster1_url, cluster3 $cluster3_url; ceiling $ceiling_url"
fi

throughput() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_rps"])' "$1" 2>/dev/null || echo 0
}

commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit (with local changes)"; fi
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)"
machine="$(nproc) × ${cpu:-unknown CPU}"

# ---------------------------------------------------------------- soak
# Microseconds since the Unix epoch.
now_us() {
    echo "${EPOCHREALTIME//[!0-9]/}"
}

# One sample of the soak as a JSON line: $1 microseconds since the load
# started, the Redis replica's RSS and open file descriptors, Redis's
# used_memory.
soak_sample() {
    local rss mem fds
    kill -0 "$redis_replica_pid" 2>/dev/null || die "soak: the replica exited (logs in $out/logs)"
    rss="$(awk '/^VmRSS:/ { printf "%d", $2 * 1024 }' "/proc/$redis_replica_pid/status" 2>/dev/null)" || true
    fds=("/proc/$redis_replica_pid/fd/"*)
    mem="$(redis-cli -h 127.0.0.1 -p "$redis_port" info memory 2>/dev/null | tr -d '\r' | sed -n 's/^used_memory://p')" || true
    printf '{"time_s": %d.%06d, "rss_bytes": %s, "fds": %s, "redis_used_memory": %s}\n' \
        $(($1 / 1000000)) $(($1 % 1000000)) "${rss:-null}" "${#fds[@]}" "${mem:-null}"
}

# The soak: the replica's maximum rate (closed loop for BENCH_SOAK_PROBE),
# then half of it for BENCH_SOAK_DURATION, sampled every BENCH_SOAK_EVERY;
# writes soak.json and soak.md, prints the table and the verdict. Its exit
# status is the script's.
run_soak() {
    local soak_keys="zipf:1000000:1.0" status=0 probe_rps rate t0 next k=1 ended=0
    say "soak: the maximum rate, closed loop for $soak_probe (keys $soak_keys, $connections connections)"
    "$loadgen_bin" --target "$redis_url" --connections "$connections" --duration "$soak_probe" \
        --keys "$soak_keys" --json "$out/soak-probe.json" >"$out/soak-probe.txt" 2>&1 &
    loadgen_pid=$!
    wait "$loadgen_pid" || status=$?
    loadgen_pid=""
    ((status == 0)) || die "soak: loadgen's probe exited with status $status (see $out/soak-probe.txt)"
    probe_rps="$(throughput "$out/soak-probe.json")"
    rate="$(python3 -c 'import sys; print(max(1.0, round(float(sys.argv[1]) / 2)))' "$probe_rps")"
    say "soak: $(printf '%.0f' "$probe_rps") req/s closed loop; now $rate req/s for $soak_duration," \
        "a sample every $((soak_every_us / 1000000)).$((soak_every_us % 1000000 / 100000)) s"

    soak_sample 0 >"$work/soak-samples" # before the load
    # The load goes on a second past the last sample, so that every sample
    # but the first is taken under load.
    "$loadgen_bin" --target "$redis_url" --connections "$connections" --rate "$rate" \
        --duration "$((soak_duration_us + 1000000))us" --keys "$soak_keys" --json "$out/soak-run.json" \
        >"$out/soak-run.txt" 2>&1 &
    loadgen_pid=$!
    t0="$(now_us)"
    while ((ended == 0)); do
        next=$((k * soak_every_us))
        ((next < soak_duration_us)) || next=$soak_duration_us
        # Short sleeps: a signal is handled at once, and a loadgen that
        # stopped early is noticed.
        while (($(now_us) - t0 < next)); do
            if ! kill -0 "$loadgen_pid" 2>/dev/null; then
                ended=1
                break
            fi
            sleep 0.1
        done
        ((ended == 1)) || soak_sample $(($(now_us) - t0)) >>"$work/soak-samples"
        ((next < soak_duration_us)) || break
        k=$((k + 1))
    done
    status=0
    wait "$loadgen_pid" || status=$?
    loadgen_pid=""
    ((status == 0)) || say "soak: loadgen exited with status $status (see $out/soak-run.txt)"
    local loadgen_status="$status"
    status=0

    python3 - "$out" "$work/soak-samples" "$t0" "$soak_every_us" "$soak_duration" "$soak_probe" \
        "$connections" "$soak_keys" "$pool_size" "$profile" "$commit" "$machine" "$ended" "$loadgen_status" <<'PY' || status=$?
"""Reads the samples and loadgen's reports; writes soak.json and soak.md, prints the verdict."""
import datetime
import json
import os
import sys

(out, samples_path, t0_us, every_us, duration, probe_duration, connections, keys, pool, profile,
 commit, machine, ended, loadgen_status) = sys.argv[1:15]
every = int(every_us) / 1e6
samples = [json.loads(line) for line in open(samples_path) if line.strip()]
problems = []


def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"{name}: no report ({e})")
        return None


probe, run = load("soak-probe.json"), load("soak-run.json")
if ended == "1":
    problems.append("loadgen stopped before the end of the soak (see soak-run.txt)")
if loadgen_status != "0":
    problems.append(f"loadgen exited with status {loadgen_status} (see soak-run.txt)")

# Answers other than decisions, over-admission and request errors, in the
# probe and in the soak itself.
statuses, errors, over = {}, 0, 0
for name, r in (("probe", probe), ("soak", run)):
    if r is None:
        continue
    for code, n in (r.get("status") or {}).items():
        statuses[code] = statuses.get(code, 0) + n
    others = {k: v for k, v in (r.get("status") or {}).items() if not (k.startswith("2") or k == "429")}
    if others:
        problems.append(f"{name}: answers other than 2xx/429 {others} (first: {r.get('first_unexpected_answer')})")
    e = (r.get("errors") or {}).get("total", 0)
    errors += e
    if e:
        problems.append(f"{name}: {e} requests without an answer ({(r.get('errors') or {}).get('first')})")
    acc = r.get("accuracy")
    if acc is None:
        problems.append(f"{name}: accuracy unavailable ({r.get('accuracy_unavailable')})")
    elif acc.get("total_over_admission"):
        over += acc["total_over_admission"]
        problems.append(f"{name}: over-admission {acc['total_over_admission']} ({acc.get('over_admitted_keys')} keys)")

# Each interval's p99: the highest p99 of the seconds of loadgen's timeline
# whose middle falls in it (the time of a sample is from the start of the
# load as this script saw it; loadgen's own start is a little later).
if run is not None:
    offset = run.get("started_at_unix_ms", 0) / 1000 - int(t0_us) / 1e6
    for i, s in enumerate(samples):
        if i == 0:
            s["p99_ms"] = None
            continue
        low, high = samples[i - 1]["time_s"], s["time_s"]
        p99s = [sec["p99_ms"] for sec in run.get("timeline", [])
                if sec.get("p99_ms") is not None and low <= offset + sec["second"] + 0.5 < high]
        s["p99_ms"] = max(p99s) if p99s else None
else:
    for s in samples:
        s["p99_ms"] = None

# The verdict: the last sample against the first one after the warm-up
# (the first interval).
verdict, verdict_text, rss_growth, fds_growth = "unknown", "", None, None
if len(samples) >= 3:
    base, last = samples[1], samples[-1]
    if base["rss_bytes"] and last["rss_bytes"] is not None:
        rss_growth = last["rss_bytes"] / base["rss_bytes"] - 1
        fds_growth = last["fds"] - base["fds"]
        flat = rss_growth <= 0.10 and fds_growth <= 5
        verdict = "flat" if flat else "growing"
        mib = 1 << 20
        verdict_text = (f"RSS {base['rss_bytes'] / mib:.1f} MiB → {last['rss_bytes'] / mib:.1f} MiB "
                        f"({rss_growth:+.1%}), fds {base['fds']} → {last['fds']} ({fds_growth:+d}) "
                        f"from {base['time_s']:.0f} s to {last['time_s']:.0f} s (flat: within +10% and +5 fds)")
if verdict == "unknown":
    problems.append(f"too few samples to judge ({len(samples)}, the one before the load included)")

rate = (run or {}).get("rates", [None])[0] if run else None
probe_rps = (probe or {}).get("throughput_rps")
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
summary = {
    "when": now, "duration": duration, "every_s": every, "probe_duration": probe_duration,
    "connections": int(connections), "keys": keys, "redis_pool_size": int(pool), "profile": profile,
    "commit": commit, "machine": machine,
    "probe_rps": probe_rps, "rate_rps": rate,
    "throughput_rps": (run or {}).get("throughput_rps"), "latency_ms": (run or {}).get("latency_ms"),
    "requests": (run or {}).get("requests"), "status": statuses, "errors": errors, "over_admission": over,
    "warm_up_sample": 1, "samples": samples,
    "verdict": verdict, "rss_growth": rss_growth, "fds_growth": fds_growth, "problems": problems,
}
with open(os.path.join(out, "soak.json"), "w") as f:
    json.dump(summary, f, indent=2)


def num(v, scale=1.0, fmt="{:,.1f}"):
    return "—" if v is None else fmt.format(v / scale)


mib = float(1 << 20)
meta = (f"{now}; {duration} at {num(rate, fmt='{:,.0f}')} req/s, half of the "
        f"{num(probe_rps, fmt='{:,.0f}')} req/s measured closed loop in {probe_duration}; {connections} connections, "
        f"keys {keys}, Redis pool {pool}, {profile} build of {commit}; {machine}; load generator, "
        f"service and Redis on the same machine")
lines = ["| time s | replica RSS MiB | replica fds | Redis used_memory MiB | p99 ms |",
         "|---:|---:|---:|---:|---:|"]
for i, s in enumerate(samples):
    when = f"{s['time_s']:.0f}" + (" (before the load)" if i == 0 else " (after the warm-up)" if i == 1 else "")
    lines.append(f"| {when} | {num(s['rss_bytes'], mib)} | {s['fds']} | {num(s['redis_used_memory'], mib)} | "
                 f"{num(s['p99_ms'], fmt='{:.3f}')} |")
r = run or {}
lat = r.get("latency_ms") or {}
answers = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "none"
lines += ["", f"Requests (probe and soak): {answers}; without an answer: {errors}; over-admission: {over}. "
          f"Soak: {num(r.get('throughput_rps'), fmt='{:,.0f}')} req/s, p50 {num(lat.get('p50'), fmt='{:.3f}')} ms, "
          f"p99 {num(lat.get('p99'), fmt='{:.3f}')} ms, p99.9 {num(lat.get('p99_9'), fmt='{:.3f}')} ms."]
md = "\n".join(["# ratelimiter soak", "", meta, ""] + lines) + "\n"
if problems:
    md += "\nProblems:\n" + "".join(f"- {p}\n" for p in problems)
md += f"\nsoak: {verdict}" + (f": {verdict_text}" if verdict_text else "") + "\n"
with open(os.path.join(out, "soak.md"), "w") as f:
    f.write(md)
print(md, end="")
sys.exit(0 if verdict == "flat" and not problems else 1)
PY
    say "soak results in $out/soak.md and soak.json (loadgen's reports: $out/soak-probe.*, soak-run.*)"
    exit "$status"
}

[[ "$soak" == 0 ]] || run_soak

# ---------------------------------------------------------------- scenarios
# loadgen's exit status per scenario, in run order.
scenarios=()
# run NAME URL [loadgen flags...]; with REDIS_PORTS set (the masters the
# replica at URL decides on), the Redis cost of the run is measured too.
run() {
    local name="$1" url="$2"
    shift 2
    say "$name: $*"
    local status=0 pid="${pid_of[$url]:-}" cpu_before=""
    [[ -z "${REDIS_PORTS:-}" ]] || redis_probe >"$work/$name.redis-before"
    [[ -z "$pid" ]] || cpu_before="$(process_cpu "$pid")"
    # In the background and waited for, so that a signal stops the run at
    # once (bash runs traps only between foreground commands).
    "$loadgen_bin" --target "$url" --connections "$connections" --duration "$duration" \
        --json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1 &
    loadgen_pid=$!
    wait "$loadgen_pid" || status=$?
    loadgen_pid=""
    ((status == 0)) || say "$name: loadgen exited with status $status (see $out/$name.txt)"
    if [[ -n "$cpu_before" ]]; then
        printf '{"cpu_s": %s}\n' "$(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' \
            "$cpu_before" "$(process_cpu "$pid")")" >"$out/$name.service.json"
    fi
    if [[ -n "${REDIS_PORTS:-}" ]]; then
        redis_probe >"$work/$name.redis-after"
        python3 - "$work/$name.redis-before" "$work/$name.redis-after" "$REDIS_PORTS" >"$out/$name.redis.json" <<'PY'
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"masters": sys.argv[3].split(),
                  "cpu_s": after["cpu_s"] - before["cpu_s"],
                  "evalsha_calls": after["evalsha_calls"] - before["evalsha_calls"]}))
PY
    fi
    [[ -z "$wrk_bin" ]] || wrk_run "$name" "$url" "$@"
    scenarios+=("$name")
}

# wrk_run NAME URL [loadgen flags...]: the same load with wrk, closed loop,
# from the same connections, duration, --keys, --endpoint and --scope;
# writes NAME.wrk.lua (the script), NAME.wrk.txt (wrk's output) and
# NAME.wrk.json. A fixed rate (--rate) is not run: wrk has none.
wrk_run() {
    local name="$1" url="$2" spec="uniform:1000" endpoint="" rate="" prefix status=0
    local scopes=()
    shift 2
    while (($#)); do
        case "$1" in
        --keys) spec="$2" && shift ;;
        --endpoint) endpoint="$2" && shift ;;
        --scope) scopes+=("$2") && shift ;;
        --rate) rate="$2" && shift ;;
        --grpc) echo '{"skipped": "gRPC: wrk speaks HTTP/1.1 only"}' >"$out/$name.wrk.json" && return 0 ;;
        esac
        shift
    done
    if [[ -n "$rate" ]]; then
        echo '{"skipped": "a fixed rate: wrk only runs closed loops"}' >"$out/$name.wrk.json"
        return 0
    fi
    # A fresh key prefix: no counter of loadgen's run, or of another wrk run.
    prefix="$(python3 -c 'import secrets; print(f"wrk-{secrets.token_hex(3)}:")')"
    python3 - "$prefix" "$spec" "$endpoint" ${scopes[@]+"${scopes[@]}"} >"$out/$name.wrk.lua" <<'PY' || status=$?
"""The wrk script: POST /check with loadgen's body, one key drawn per request."""
import json, sys

prefix, spec, endpoint = sys.argv[1:4]
scopes = sys.argv[4:]


def lua(text):
    """A Lua string literal of text's UTF-8 bytes."""
    return "'" + "".join(chr(b) if 32 <= b < 127 and b not in (39, 92) else "\\%03d" % b
                         for b in text.encode()) + "'"


extra = {}
if endpoint:
    extra["endpoint"] = endpoint
if scopes:
    extra["scopes"] = dict(scope.split("=", 1) for scope in scopes)
before_key = '{"key":' + json.dumps(prefix)[:-1]
after_key = '"' + ("," + json.dumps(extra, separators=(",", ":"))[1:] if extra else "}")
parts = spec.split(":")
print(f"-- POST /check as loadgen sends it: keys {spec}, key prefix {prefix}")
print('wrk.method = "POST"')
print('wrk.path = "/check"')
print('wrk.headers["Content-Type"] = "application/json"')
print(f"local before_key, after_key = {lua(before_key)}, {lua(after_key)}")
if parts[0] == "hot":
    print('wrk.body = before_key .. "0" .. after_key')
    sys.exit(0)
if parts[0] == "uniform" and len(parts) == 2:
    print(f"local n = {int(parts[1])}")
    print("local function draw() return math.random(0, n - 1) end")
elif parts[0] == "zipf" and len(parts) == 3:
    # The index of rank r (1-based) is r - 1, drawn with probability
    # proportional to 1 / r^s, as loadgen draws it.
    print(f"local n, s = {int(parts[1])}, {float(parts[2])!r}")
    print("""local cdf, total = {}, 0
for r = 1, n do
  total = total + r ^ -s
  cdf[r] = total
end
local function draw()
  local u, lo, hi = math.random() * total, 1, n
  while lo < hi do
    local m = math.floor((lo + hi) / 2)
    if cdf[m] < u then lo = m + 1 else hi = m end
  end
  return lo - 1
end""")
else:
    sys.exit(f"wrk: key distribution {spec!r} is not hot, uniform:N or zipf:N:S")
print("""math.randomseed(os.time())
request = function()
  return wrk.format(nil, nil, nil, before_key .. string.format("%d", draw()) .. after_key)
end""")
PY
    if ((status != 0)); then
        echo "{\"error\": \"no wrk script for keys $spec\"}" >"$out/$name.wrk.json"
        return 0
    fi
    say "$name: wrk -c$connections -d$wrk_duration, keys $spec"
    # In the background and waited for, as loadgen is (the cleanup stops it).
    "$wrk_bin" -t1 "-c$connections" "-d$wrk_duration" --latency -s "$out/$name.wrk.lua" "$url/check" \
        >"$out/$name.wrk.txt" 2>&1 &
    loadgen_pid=$!
    wait "$loadgen_pid" || status=$?
    loadgen_pid=""
    ((status == 0)) || say "$name: wrk exited with status $status (see $out/$name.wrk.txt)"
    python3 - "$out/$name.wrk.txt" "$status" "$url/check" "$connections" "$wrk_duration" "$spec" "$prefix" \
        "$endpoint" ${scopes[@]+"${scopes[@]}"} >"$out/$name.wrk.json" <<'PY'
"""wrk's output as JSON."""
import json, re, sys

path, status, url, connections, duration, spec, prefix, endpoint = sys.argv[1:9]
scopes = sys.argv[9:]
text = open(path, errors="replace").read()


def ms(value):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    scale = {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4, "h": 3.6e6}
    return round(float(m.group(1)) * scale[m.group(2)], 6) if m else None


def find(pattern, convert=float):
    m = re.search(pattern, text, re.M)
    return convert(m.group(1)) if m else None


m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
socket = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()) if m else (0, 0, 0, 0)))
report = {
    "url": url, "threads": 1, "connections": int(connections), "duration": duration, "keys": spec,
    "key_prefix": prefix, "endpoint": endpoint or None,
    "scopes": dict(s.split("=", 1) for s in scopes) or None,
    "exit_status": int(status),
    "throughput_rps": find(r"^Requests/sec:\s*([\d.]+)"),
    "requests": find(r"^\s*(\d+) requests in ", int),
    "latency_ms": {"p50": find(r"^\s*50(?:\.0+)?%\s+(\S+)", ms), "p99": find(r"^\s*99(?:\.0+)?%\s+(\S+)", ms)},
    "non_2xx": find(r"^\s*Non-2xx or 3xx responses:\s*(\d+)", int) or 0,
    "socket_errors": socket,
    "errors": sum(socket.values()),
}
if report["throughput_rps"] is None or int(status) != 0:
    report["error"] = (text.strip().splitlines() or [f"exit status {status}"])[-1]
print(json.dumps(report, indent=2))
PY
}

# CPU seconds (user + sys) process $1 has used so far.
process_cpu() {
    python3 -c 'import os, sys
fields = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))' "$1" 2>/dev/null || echo 0
}

# CPU seconds (user + sys) and EVALSHA calls so far, summed over the
# Redis servers on REDIS_PORTS, as JSON.
redis_probe() {
    local port cpu=0 calls=0 info
    for port in $REDIS_PORTS; do
        info="$(redis-cli -h 127.0.0.1 -p "$port" info cpu | tr -d '\r'; redis-cli -h 127.0.0.1 -p "$port" info commandstats | tr -d '\r')"
        cpu="$(python3 -c 'import sys; print(float(sys.argv[1]) + sum(float(l.split(":")[1]) for l in sys.argv[2].splitlines() if l.startswith(("used_cpu_user:", "used_cpu_sys:"))))' "$cpu" "$info")"
        calls="$(python3 -c 'import re, sys; m = re.search(r"cmdstat_evalsha:calls=(\d+)", sys.argv[2]); print(int(sys.argv[1]) + (int(m.group(1)) if m else 0))' "$calls" "$info")"
    done
    printf '{"cpu_s": %s, "evalsha_calls": %s}\n' "$cpu" "$calls"
}

# The ceiling is measured before the first scenario and after each one
# (ceiling, ceiling-2, ...): each scenario's ratio is to the mean of the
# ceiling runs just before and just after it, so the machine's drift during
# a run (other tenants of its CPUs) moves both sides of a ratio alike.
ceilings=0
ceiling_run() {
    ceilings=$((ceilings + 1))
    local name=ceiling
    ((ceilings == 1)) || name="ceiling-$ceilings"
    run "$name" "$ceiling_url" --keys "$keys"
}
ceiling_run
run memory-allowed "$memory_url" --keys "$keys"
ceiling_run
run grpc-memory-allowed "$memory_url" --keys "$keys" --grpc "127.0.0.1:$grpc_port"
ceiling_run
run memory-allowed-otlp "$otlp_url" --keys "$keys"
# What the sink received (the replica exports every 5 s, and at 512 spans).
python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "$sink_url/v1/traces" >"$out/memory-allowed-otlp.sink.json" 2>/dev/null || echo '{}' >"$out/memory-allowed-otlp.sink.json"
ceiling_run
REDIS_PORTS="$redis_port" run redis-allowed "$redis_url" --keys "$keys"
ceiling_run
half="$(python3 -c 'import sys; print(max(1.0, round(float(sys.argv[1]) / 2)))' "$(throughput "$out/redis-allowed.json")")"
REDIS_PORTS="$redis_port" run redis-half-rate "$redis_url" --keys "$keys" --rate "$half"
ceiling_run
REDIS_PORTS="$redis_port" run redis-denied "$redis_url" --keys hot --endpoint "POST /hot"
ceiling_run
REDIS_PORTS="$c1_port" run cluster1-allowed "$cluster1_url" --keys "$keys"
ceiling_run
REDIS_PORTS="${c3_ports[*]}" run cluster3-allowed "$cluster3_url" --keys "$keys"
ceiling_run
run memory-three-limits "$memory_url" --keys "$keys" --endpoint "POST /three" --scope org=acme
ceiling_run
REDIS_PORTS="$redis_port" run redis-three-limits "$redis_url" --keys "$keys" --endpoint "POST /three" --scope org=acme
ceiling_run
REDIS_PORTS="$redis_port" run redis-hot-allowed "$redis_url" --keys hot
ceiling_run
REDIS_PORTS="${c3_ports[*]}" run cluster3-hot-allowed "$cluster3_url" --keys hot
ceiling_run

# ---------------------------------------------------------------- report
status=0
python3 - "$out" "$smoke" "$duration" "$connections" "$keys" "$pool_size" "$profile" "$commit" \
    "$machine" "$wrk_version" "${scenarios[@]}" <<'PY' || status=$?
"""Reads loadgen's and wrk's reports, prints the table, writes results.md and results.json, checks them."""
import datetime
import json
import os
import sys

out, smoke, duration, connections, keys, pool, profile, commit, machine, wrk_version = sys.argv[1:11]
names = sys.argv[11:]
smoke = smoke == "1"

# What each scenario is, and the goal it is reported against (not enforced).
about = {
    "ceiling": ("bare axum, no limiting", "1.00×"),
    "memory-allowed": ("memory store, all allowed", "≥ 0.9× ceiling"),
    "grpc-memory-allowed": ("memory store over gRPC (ShouldRateLimit), all allowed", "≥ 1.0× memory-allowed"),
    "memory-allowed-otlp": ("memory store, all allowed, every request's spans exported over OTLP/HTTP",
                            "≥ 0.8× memory-allowed"),
    "redis-allowed": ("Redis, all allowed", "≥ 0.6× ceiling, p99 ≤ 2 ms"),
    "redis-half-rate": ("Redis, all allowed, half of redis-allowed's req/s", "p99 ≤ 1 ms"),
    "redis-denied": ("Redis, one hot key over its limit", "≥ 0.9× ceiling"),
    "cluster1-allowed": ("Redis Cluster of 1 master, all allowed", "—"),
    "cluster3-allowed": ("Redis Cluster of 3 masters, all allowed", "above 1 master"),
    "memory-three-limits": ("memory store, a rule of 3 limits, all allowed", "—"),
    "redis-three-limits": ("Redis, a rule of 3 limits, all allowed", "≤ 1 script call per check"),
    "redis-hot-allowed": ("Redis, one hot key, all allowed", "≥ 0.5× ceiling"),
    "cluster3-hot-allowed": ("Redis Cluster of 3 masters, one hot key (one slot), all allowed", "≥ 0.5× ceiling"),
}

reports, wrk, problems = {}, {}, []
for name in names:
    try:
        with open(os.path.join(out, name + ".json")) as f:
            reports[name] = json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"{name}: no report ({e})")
    if wrk_version:
        try:
            with open(os.path.join(out, name + ".wrk.json")) as f:
                wrk[name] = json.load(f)
        except (OSError, ValueError) as e:
            problems.append(f"{name}: no wrk report ({e})")

# The ceiling runs: before the first scenario and after each one.
ceiling_runs = [n for n in names if n == "ceiling" or n.startswith("ceiling-")]


def rps_of(name):
    return (reports.get(name) or {}).get("throughput_rps") or 0.0


def wrk_rps_of(name):
    return (wrk.get(name) or {}).get("throughput_rps") or 0.0


ceiling_values = [rps_of(n) for n in ceiling_runs if rps_of(n) > 0]
ceiling = sum(ceiling_values) / len(ceiling_values) if ceiling_values else 0.0
wrk_ceiling_values = [wrk_rps_of(n) for n in ceiling_runs if wrk_rps_of(n) > 0]
wrk_ceiling = sum(wrk_ceiling_values) / len(wrk_ceiling_values) if wrk_ceiling_values else 0.0


def baseline(i, rps=rps_of, mean=None):
    """The mean of the ceiling runs just before and just after names[i]."""
    near = [
        next((rps(names[j]) for j in range(i - 1, -1, -1) if names[j] in ceiling_runs), 0.0),
        next((rps(names[j]) for j in range(i + 1, len(names)) if names[j] in ceiling_runs), 0.0),
    ]
    near = [v for v in near if v > 0]
    return sum(near) / len(near) if near else (ceiling if mean is None else mean)


def ms(v):
    return "—" if v is None else f"{v:.3f}"


rows, summary = [], []
for i, name in enumerate(names):
    r = reports.get(name)
    what, goal = about.get(name, ("", ""))
    if name in ceiling_runs and name != "ceiling":
        what, goal = about["ceiling"]
    if r is None:
        rows.append([name, what, "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", "no report", goal])
        continue
    rps = r.get("throughput_rps") or 0.0
    lat = r.get("latency_ms") or {}
    load = f"fixed rate {r['rates'][0]:.0f} req/s" if r.get("mode") == "fixed_rate" and r.get("rates") else "closed loop"
    status = r.get("status") or {}
    answers = ", ".join(f"{k}: {v}" for k, v in sorted(status.items()))
    acc = r.get("accuracy")
    if acc is not None:
        over = acc.get("total_over_admission", 0)
        over_text = str(over)
        if over:
            problems.append(f"{name}: over-admission {over} ({acc.get('over_admitted_keys')} keys)")
    else:
        over = None
        over_text = "n/a"
        if not name.startswith("ceiling"):
            problems.append(f"{name}: accuracy unavailable ({r.get('accuracy_unavailable')})")
    decided = sum(v for k, v in status.items() if k.startswith("2") or k == "429")
    others = {k: v for k, v in status.items() if not (k.startswith("2") or k == "429")}
    if decided == 0:
        problems.append(f"{name}: no 2xx or 429 answer")
    if others:
        problems.append(f"{name}: unexpected answers {others} (first: {r.get('first_unexpected_answer')})")
    errors = (r.get("errors") or {}).get("total", 0)
    redis_cost = None
    try:
        with open(os.path.join(out, name + ".redis.json")) as f:
            probe = json.load(f)
        if decided:
            redis_cost = {"cpu_us_per_decision": probe["cpu_s"] * 1e6 / decided,
                          "script_calls_per_decision": probe["evalsha_calls"] / decided,
                          "masters": len(probe["masters"])}
    except (OSError, ValueError, KeyError):
        pass
    redis_text = "—" if redis_cost is None else (
        f"{redis_cost['cpu_us_per_decision']:.1f} µs, {redis_cost['script_calls_per_decision']:.2f} calls")
    # The server's own CPU time per answer (the ceiling's, or the replica's),
    # loadgen's run only.
    service_cpu = None
    try:
        with open(os.path.join(out, name + ".service.json")) as f:
            if decided:
                service_cpu = json.load(f)["cpu_s"] * 1e6 / decided
    except (OSError, ValueError, KeyError):
        pass
    service_text = "—" if service_cpu is None else f"{service_cpu:.1f} µs"
    if errors and smoke:
        problems.append(f"{name}: {errors} request errors ({(r.get('errors') or {}).get('first')})")
    if name == "redis-denied" and not status.get("429"):
        problems.append(f"{name}: no 429 answer")
    # wrk: the same load, closed loop. It counts answers other than 2xx
    # without telling 429 from the rest: every scenario but redis-denied
    # should have none, and redis-denied some.
    w = wrk.get(name)
    wrk_answers = ""
    if w is not None and "skipped" not in w:
        if w.get("error") or not w.get("throughput_rps"):
            problems.append(f"{name}: wrk failed ({w.get('error')})")
        if w.get("errors") and smoke:
            problems.append(f"{name}: wrk: {w['errors']} socket errors ({w.get('socket_errors')})")
        if name == "redis-denied":
            if not w.get("non_2xx"):
                problems.append(f"{name}: wrk: no answer other than 2xx (429s expected)")
        elif w.get("non_2xx"):
            problems.append(f"{name}: wrk: {w['non_2xx']} answers other than 2xx (see {name}.wrk.txt)")
        wrk_answers = f"; wrk: {w.get('non_2xx') or 0} non-2xx" + (f", {w['errors']} socket errors" if w.get("errors") else "")
    if name in ceiling_runs:
        # One row for all ceiling runs: their mean, and their spread.
        if name != "ceiling":
            continue
        rps = ceiling
        low, high = (min(ceiling_values), max(ceiling_values)) if ceiling_values else (0.0, 0.0)
        load = f"{load}; mean of {len(ceiling_values)} runs, one before and one after each scenario ({low:,.0f} to {high:,.0f})"
        if wrk_ceiling_values:
            load += f"; wrk {min(wrk_ceiling_values):,.0f} to {max(wrk_ceiling_values):,.0f}"
        ratio = 1.0 if ceiling else None
        wrk_rps = wrk_ceiling
        wrk_ratio = 1.0 if wrk_ceiling else None
    else:
        base = baseline(i)
        ratio = rps / base if base else None
        wrk_rps = wrk_rps_of(name)
        wrk_base = baseline(i, wrk_rps_of, wrk_ceiling)
        wrk_ratio = wrk_rps / wrk_base if wrk_rps and wrk_base else None
    if w is None:
        wrk_cells = ["—", "—"]
        wrk_summary = None
    elif "skipped" in w:
        wrk_cells = ["not run: a fixed rate (wrk runs closed loops only)", "—"]
        wrk_summary = None
    else:
        wrk_cells = [f"{wrk_rps:,.0f}" if wrk_rps else "failed", "—" if wrk_ratio is None else f"{wrk_ratio:.2f}×"]
        wrk_summary = {"throughput_rps": wrk_rps or None, "ratio_to_ceiling": wrk_ratio,
                       "latency_ms": w.get("latency_ms") or {"p50": None, "p99": None},
                       "non_2xx": w.get("non_2xx"), "errors": w.get("errors")}
    rows.append([
        name, f"{what}, {load}", f"{rps:,.0f}", ms(lat.get("p50")), ms(lat.get("p99")), ms(lat.get("p99_9")),
        "—" if ratio is None else f"{ratio:.2f}×", *wrk_cells, over_text, service_text, redis_text,
        answers + (f"; errors: {errors}" if errors else "") + wrk_answers, goal,
    ])
    summary.append({
        "scenario": name, "load": load, "throughput_rps": rps, "latency_ms": lat,
        "ratio_to_ceiling": ratio, "over_admission": over, "status": status, "errors": errors,
        "redis": redis_cost, "wrk": wrk_summary, "server_cpu_us_per_decision": service_cpu,
    })

c1 = reports.get("cluster1-allowed", {}).get("throughput_rps")
c3 = reports.get("cluster3-allowed", {}).get("throughput_rps")

header = ["scenario", "what", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "× ceiling", "wrk req/s", "wrk × ceiling",
          "over-admission", "server CPU per decision", "Redis per decision (CPU, script calls)", "answers", "goal"]
lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 10 + ["---"] * 2) + "|"]
lines += ["| " + " | ".join(row) + " |" for row in rows]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
mode = "smoke (checks the pipeline, not speed)" if smoke else "full"
meta = (f"{now}, {mode}; {duration} per scenario, {connections} connections, keys {keys}, "
        f"Redis pool {pool}, {profile} build of {commit}; {machine}; load generator, service and Redis "
        f"on the same machine; ")
meta += (f"then {wrk_version}, 1 thread, the same connections and body for the same duration in whole seconds"
         if wrk_version else "wrk not installed: no wrk figures")
if c1 and c3:
    meta += f". 3 masters / 1 master: {c3 / c1:.2f}×"
grpc_r, http_r = reports.get("grpc-memory-allowed"), reports.get("memory-allowed")
if grpc_r and http_r and rps_of("memory-allowed"):
    g99 = (grpc_r.get("latency_ms") or {}).get("p99")
    h99 = (http_r.get("latency_ms") or {}).get("p99")
    meta += f". gRPC / HTTP /check (memory): throughput {rps_of('grpc-memory-allowed') / rps_of('memory-allowed'):.2f}×"
    if g99 and h99:
        meta += f", p99 {g99 / h99:.2f}×"
otlp_r = reports.get("memory-allowed-otlp")
if otlp_r and http_r and rps_of("memory-allowed"):
    o99 = (otlp_r.get("latency_ms") or {}).get("p99")
    h99 = (http_r.get("latency_ms") or {}).get("p99")
    meta += (f". Traces exported / not (memory): throughput "
             f"{rps_of('memory-allowed-otlp') / rps_of('memory-allowed'):.2f}×")
    if o99 and h99:
        meta += f", p99 {o99 / h99:.2f}×"
    try:
        with open(os.path.join(out, "memory-allowed-otlp.sink.json")) as f:
            sink = json.load(f)
    except (OSError, ValueError):
        sink = {}
    if sink.get("exports"):
        meta += f" (the sink received {sink['exports']:,} exports, {sink['bytes'] / 1e6:,.1f} MB)"
    else:
        problems.append("memory-allowed-otlp: the OTLP sink received no export")
md = "\n".join(["# ratelimiter benchmark", "", meta, ""] + lines) + "\n"
if problems:
    md += "\nProblems:\n" + "".join(f"- {p}\n" for p in problems)
with open(os.path.join(out, "results.md"), "w") as f:
    f.write(md)
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"when": now, "mode": "smoke" if smoke else "full", "duration": duration,
               "connections": int(connections), "keys": keys, "redis_pool_size": int(pool),
               "profile": profile, "commit": commit, "machine": machine,
               "ceiling_rps": ceiling, "wrk": wrk_version or None, "wrk_ceiling_rps": wrk_ceiling or None,
               "scenarios": summary, "problems": problems}, f, indent=2)
print(md, end="")
sys.exit(1 if problems else 0)
PY
say "results in $out/results.md (loadgen reports: $out/<scenario>.json, .txt${wrk_bin:+; wrk reports: <scenario>.wrk.json, .wrk.txt})"
exit "$status"
