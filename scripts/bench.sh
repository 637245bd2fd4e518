#!/usr/bin/env bash
# Throughput benchmark of ratelimiter on loopback, reported against the bare
# HTTP ceiling measured in the same run.
#
# Usage:
#   scripts/bench.sh            # full run: every scenario for BENCH_DURATION with BENCH_CONNECTIONS
#   scripts/bench.sh --smoke    # about 1 s per scenario with 4 connections: checks that the
#                               # pipeline works (answers, table, accuracy), not speed
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
#   redis-allowed     standalone Redis, closed loop, every request allowed
#   redis-half-rate   standalone Redis at a fixed rate of half redis-allowed's
#                     throughput (latency at a load the service keeps up with)
#   redis-denied      standalone Redis, one hot key far over its limit (429s)
#   cluster1-allowed  1-master cluster, closed loop, every request allowed
#   cluster3-allowed  3-master cluster, closed loop, every request allowed
#   memory-three-limits  memory store, a rule of three limits (a user's burst
#                     and daily quota, the org's shared bucket), all allowed
#   redis-three-limits   the same rule on the standalone Redis
#
# with the ceiling measured again after each scenario (ceiling-2 ... -9):
# each scenario's ratio is to the mean of the ceiling runs just before and
# after it, so the machine's drift during the run moves both sides alike.
#
# and prints one table (req/s, p50, p99, p99.9, ratio to the ceiling,
# over-admission and, for every Redis scenario, Redis CPU µs and script
# calls per decision: used_cpu_user + used_cpu_sys of INFO cpu and the
# EVALSHA calls of INFO commandstats, before and after the run, summed over
# the masters, divided by the decisions), also written as Markdown with
# every loadgen report.
# Everything it started is stopped on exit, also on failure or Ctrl-C.
# Exit status: 0 when every scenario was answered (2xx/429 only) with no
# over-admission (and, with --smoke, no request errors); 1 otherwise; 2 for
# bad arguments.
#
# Environment:
#   BENCH_DURATION     per scenario, as loadgen reads it (default 10s; --smoke 1s)
#   BENCH_CONNECTIONS  loadgen connections (default 64; --smoke 4)
#   BENCH_KEYS         key distribution of the allowed scenarios (default uniform:10000)
#   BENCH_POOL_SIZE    Redis connections per replica, store.redis.pool_size (default 4)
#   BENCH_OUT          output directory (default target/bench): results.md, results.json,
#                      <scenario>.json and <scenario>.txt (loadgen's reports), logs/
#   BENCH_PORT         first of 14 consecutive loopback ports to use (Redis cluster bus
#                      ports included); default: free ports chosen by the OS
#   BENCH_SMOKE=1      the same as --smoke
#   BENCH_PROFILE      cargo profile to build and run: release (default) or debug
#   RATELIMITER_BIN, LOADGEN_BIN, CEILING_BIN
#                      use these binaries instead; when all three are set nothing is built
#
# Needs redis-server and redis-cli (Debian: apt-get install redis-server) and python3.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

smoke="${BENCH_SMOKE:-0}"
for arg in "$@"; do
    case "$arg" in
    --smoke) smoke=1 ;;
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
    if ! [[ "$BENCH_PORT" =~ ^[0-9]+$ ]] || ((BENCH_PORT < 1024 || BENCH_PORT + 13 > 65535)); then
        bad "BENCH_PORT must be a port between 1024 and 65522, not '$BENCH_PORT'"
    fi
fi
case "$profile" in
release | debug) ;;
*) bad "BENCH_PROFILE must be release or debug, not '$profile'" ;;
esac

for tool in redis-server redis-cli python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed (redis-server and redis-cli: apt-get install redis-server)"
done

# ---------------------------------------------------------------- binaries
if [[ -n "${RATELIMITER_BIN:-}" && -n "${LOADGEN_BIN:-}" && -n "${CEILING_BIN:-}" ]]; then
    ratelimiter_bin="$RATELIMITER_BIN"
    loadgen_bin="$LOADGEN_BIN"
    ceiling_bin="$CEILING_BIN"
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
for bin in "$ratelimiter_bin" "$loadgen_bin" "$ceiling_bin"; do
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
# 14 loopback ports: BENCH_PORT's, or free ones the OS picks (all sockets are
# held open until every port is chosen, so no two are the same).
if [[ -n "${BENCH_PORT:-}" ]]; then
    mapfile -t free_ports < <(seq "$BENCH_PORT" $((BENCH_PORT + 13)))
else
    mapfile -t free_ports < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(14)]
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
replica_ports=("${free_ports[@]:10:4}")

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
rm -f -- "$out/results.md" "$out/results.json" "$out"/logs/redis-*.log "$out"/logs/replica-*.log \
    "$out/logs/ceiling.log" "$out/logs/cluster3-create.log"
for name in ceiling ceiling-2 ceiling-3 ceiling-4 ceiling-5 ceiling-6 ceiling-7 ceiling-8 ceiling-9 \
    memory-allowed redis-allowed redis-half-rate redis-denied cluster1-allowed cluster3-allowed \
    memory-three-limits redis-three-limits; do
    rm -f -- "$out/$name.json" "$out/$name.txt" "$out/$name.redis.json"
done

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
# replica_ports; sets $replica_url.
replica_url=""
start_replica() {
    local name="$1" store="$2" port="${replica_ports[0]}" config
    replica_ports=("${replica_ports[@]:1}")
    config="$work/$name.toml"
    printf '%s\n%s\n' "$rules_toml" "$store" >"$config"
    "$ratelimiter_bin" serve --config "$config" --listen "127.0.0.1:$port" >"$out/logs/replica-$name.log" 2>&1 &
    pids+=($!)
    replica_url="http://127.0.0.1:$port"
    wait_for "replica $name" $! http_ok "$replica_url/health/ready"
}

redis_store() {
    printf '[store]\nbackend = "redis"\nfailure_mode = "closed"\n[store.redis]\npool_size = %s\n%s\n' "$pool_size" "$1"
}

"$ceiling_bin" --listen "127.0.0.1:$ceiling_port" >"$out/logs/ceiling.log" 2>&1 &
pids+=($!)
ceiling_url="http://127.0.0.1:$ceiling_port"
wait_for "ceiling server" $! http_ok "$ceiling_url/health"

start_replica memory '[store]
backend = "memory"'
memory_url="$replica_url"
start_replica redis "$(redis_store "mode = \"standalone\"
url = \"redis://127.0.0.1:$redis_port\"")"
redis_url="$replica_url"
start_replica cluster1 "$(redis_store "mode = \"cluster\"
nodes = [\"127.0.0.1:$c1_port\"]")"
cluster1_url="$replica_url"
start_replica cluster3 "$(redis_store "mode = \"cluster\"
nodes = [\"127.0.0.1:${c3_ports[0]}\", \"127.0.0.1:${c3_ports[1]}\", \"127.0.0.1:${c3_ports[2]}\"]")"
cluster3_url="$replica_url"
say "replicas: memory $memory_url, redis $redis_url, cluster1 $cluster1_url, cluster3 $cluster3_url; ceiling $ceiling_url"

# ---------------------------------------------------------------- scenarios
# loadgen's exit status per scenario, in run order.
scenarios=()
# run NAME URL [loadgen flags...]; with REDIS_PORTS set (the masters the
# replica at URL decides on), the Redis cost of the run is measured too.
run() {
    local name="$1" url="$2"
    shift 2
    say "$name: $*"
    local status=0
    [[ -z "${REDIS_PORTS:-}" ]] || redis_probe >"$work/$name.redis-before"
    # In the background and waited for, so that a signal stops the run at
    # once (bash runs traps only between foreground commands).
    "$loadgen_bin" --target "$url" --connections "$connections" --duration "$duration" \
        --json "$out/$name.json" "$@" >"$out/$name.txt" 2>&1 &
    loadgen_pid=$!
    wait "$loadgen_pid" || status=$?
    loadgen_pid=""
    ((status == 0)) || say "$name: loadgen exited with status $status (see $out/$name.txt)"
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
    scenarios+=("$name")
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

throughput() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_rps"])' "$1" 2>/dev/null || echo 0
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

# ---------------------------------------------------------------- report
status=0
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD 2>/dev/null; then commit="$commit (with local changes)"; fi
cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)"
python3 - "$out" "$smoke" "$duration" "$connections" "$keys" "$pool_size" "$profile" "$commit" \
    "$(nproc) × ${cpu:-unknown CPU}" "${scenarios[@]}" <<'PY' || status=$?
"""Reads loadgen's reports, prints the table, writes results.md and results.json, checks them."""
import datetime
import json
import os
import sys

out, smoke, duration, connections, keys, pool, profile, commit, machine = sys.argv[1:10]
names = sys.argv[10:]
smoke = smoke == "1"

# What each scenario is, and the goal it is reported against (not enforced).
about = {
    "ceiling": ("bare axum, no limiting", "1.00×"),
    "memory-allowed": ("memory store, all allowed", "≥ 0.9× ceiling"),
    "redis-allowed": ("Redis, all allowed", "≥ 0.6× ceiling, p99 ≤ 2 ms"),
    "redis-half-rate": ("Redis, all allowed, half of redis-allowed's req/s", "p99 ≤ 1 ms"),
    "redis-denied": ("Redis, one hot key over its limit", "≥ 0.9× ceiling"),
    "cluster1-allowed": ("Redis Cluster of 1 master, all allowed", "—"),
    "cluster3-allowed": ("Redis Cluster of 3 masters, all allowed", "above 1 master"),
    "memory-three-limits": ("memory store, a rule of 3 limits, all allowed", "—"),
    "redis-three-limits": ("Redis, a rule of 3 limits, all allowed", "≤ 1 script call per check"),
}

reports, problems = {}, []
for name in names:
    try:
        with open(os.path.join(out, name + ".json")) as f:
            reports[name] = json.load(f)
    except (OSError, ValueError) as e:
        problems.append(f"{name}: no report ({e})")

# The ceiling runs: before the first scenario and after each one.
ceiling_runs = [n for n in names if n == "ceiling" or n.startswith("ceiling-")]


def rps_of(name):
    return (reports.get(name) or {}).get("throughput_rps") or 0.0


ceiling_values = [rps_of(n) for n in ceiling_runs if rps_of(n) > 0]
ceiling = sum(ceiling_values) / len(ceiling_values) if ceiling_values else 0.0


def baseline(i):
    """The mean of the ceiling runs just before and just after names[i]."""
    near = [
        next((rps_of(names[j]) for j in range(i - 1, -1, -1) if names[j] in ceiling_runs), 0.0),
        next((rps_of(names[j]) for j in range(i + 1, len(names)) if names[j] in ceiling_runs), 0.0),
    ]
    near = [v for v in near if v > 0]
    return sum(near) / len(near) if near else ceiling


def ms(v):
    return "—" if v is None else f"{v:.3f}"


rows, summary = [], []
for i, name in enumerate(names):
    r = reports.get(name)
    what, goal = about.get(name, ("", ""))
    if name in ceiling_runs and name != "ceiling":
        what, goal = about["ceiling"]
    if r is None:
        rows.append([name, what, "—", "—", "—", "—", "—", "—", "—", "no report", goal])
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
    if errors and smoke:
        problems.append(f"{name}: {errors} request errors ({(r.get('errors') or {}).get('first')})")
    if name == "redis-denied" and not status.get("429"):
        problems.append(f"{name}: no 429 answer")
    if name in ceiling_runs:
        # One row for all ceiling runs: their mean, and their spread.
        if name != "ceiling":
            continue
        rps = ceiling
        low, high = (min(ceiling_values), max(ceiling_values)) if ceiling_values else (0.0, 0.0)
        load = f"{load}; mean of {len(ceiling_values)} runs, one before and one after each scenario ({low:,.0f} to {high:,.0f})"
        ratio = 1.0 if ceiling else None
    else:
        base = baseline(i)
        ratio = rps / base if base else None
    rows.append([
        name, f"{what}, {load}", f"{rps:,.0f}", ms(lat.get("p50")), ms(lat.get("p99")), ms(lat.get("p99_9")),
        "—" if ratio is None else f"{ratio:.2f}×", over_text, redis_text,
        answers + (f"; errors: {errors}" if errors else ""), goal,
    ])
    summary.append({
        "scenario": name, "load": load, "throughput_rps": rps, "latency_ms": lat,
        "ratio_to_ceiling": ratio, "over_admission": over, "status": status, "errors": errors,
        "redis": redis_cost,
    })

c1 = reports.get("cluster1-allowed", {}).get("throughput_rps")
c3 = reports.get("cluster3-allowed", {}).get("throughput_rps")

header = ["scenario", "what", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "× ceiling", "over-admission",
          "Redis per decision (CPU, script calls)", "answers", "goal"]
lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * 7 + ["---"] * 2) + "|"]
lines += ["| " + " | ".join(row) + " |" for row in rows]
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
mode = "smoke (checks the pipeline, not speed)" if smoke else "full"
meta = (f"{now}, {mode}; {duration} per scenario, {connections} connections, keys {keys}, "
        f"Redis pool {pool}, {profile} build of {commit}; {machine}; load generator, service and Redis "
        f"on the same machine")
if c1 and c3:
    meta += f". 3 masters / 1 master: {c3 / c1:.2f}×"
md = "\n".join(["# ratelimiter benchmark", "", meta, ""] + lines) + "\n"
if problems:
    md += "\nProblems:\n" + "".join(f"- {p}\n" for p in problems)
with open(os.path.join(out, "results.md"), "w") as f:
    f.write(md)
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"when": now, "mode": "smoke" if smoke else "full", "duration": duration,
               "connections": int(connections), "keys": keys, "redis_pool_size": int(pool),
               "profile": profile, "commit": commit, "machine": machine,
               "ceiling_rps": ceiling, "scenarios": summary, "problems": problems}, f, indent=2)
print(md, end="")
sys.exit(1 if problems else 0)
PY
say "results in $out/results.md (loadgen reports: $out/<scenario>.json, .txt)"
exit "$status"
