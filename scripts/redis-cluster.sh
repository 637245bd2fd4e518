#!/usr/bin/env bash
# Runs a throwaway 6-node Redis Cluster (3 masters, 3 replicas) on loopback,
# for trying the Redis backend of ratelimiter by hand.
#
# Usage:
#   scripts/redis-cluster.sh start    # start the nodes, create the cluster, wait until it is healthy
#   scripts/redis-cluster.sh status   # print `cluster info` and `cluster nodes`; exit 1 unless healthy
#   scripts/redis-cluster.sh stop     # kill the nodes and remove their directory
#
# Environment:
#   REDIS_CLUSTER_DIR   where pidfiles, logs and node configs live
#                       (default: ${TMPDIR:-/tmp}/ratelimiter-redis-cluster)
#   REDIS_CLUSTER_PORT  first client port (default: 7100); the nodes use PORT..PORT+5
#                       and their cluster bus ports PORT+10000..PORT+10005.
#
# `start` uses Debian's redis-server and redis-cli, and installs them with
# `apt-get install -y redis-server` when missing (as root only). Every node binds
# 127.0.0.1, keeps nothing on disk (--save '' --appendonly no), and uses
# --cluster-node-timeout 1000 so failovers in experiments take about two seconds.
# `start` when the cluster is already running says so and exits 0; `stop` when
# nothing runs exits 0. `status` and `stop` use the ports recorded by `start`.
set -euo pipefail

DIR="${REDIS_CLUSTER_DIR:-${TMPDIR:-/tmp}/ratelimiter-redis-cluster}"
FIRST_PORT="${REDIS_CLUSTER_PORT:-7100}"
NODES=6
MARKER=".ratelimiter-redis-cluster" # written by `start`; `stop` only removes a directory holding it
WAIT_SECS=30

die() {
    echo "redis-cluster: $*" >&2
    exit 1
}
say() { echo "redis-cluster: $*"; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Ports recorded by a previous `start`, else the configured ones.
ports() {
    local first="$FIRST_PORT"
    if [[ -f "$DIR/$MARKER" ]]; then
        first="$(cat "$DIR/$MARKER")"
    fi
    local i
    for ((i = 0; i < NODES; i++)); do
        echo $((first + i))
    done
}

pid_of() {
    local f="$DIR/$1/redis.pid"
    [[ -f "$f" ]] && cat "$f"
}

# True when the node on port $1 has a live redis-server process.
alive() {
    local pid
    pid="$(pid_of "$1")" || return 1
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

cli() {
    local port="$1"
    shift
    redis-cli -h 127.0.0.1 -p "$port" -e "$@" 2>/dev/null | tr -d '\r'
}

# Something accepts connections on 127.0.0.1:$1.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if command -v ss >/dev/null; then
        ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    fi
    return 1
}

ensure_redis() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return
    fi
    [[ "$(id -u)" -eq 0 ]] || die "redis-server is not installed; run 'apt-get install -y redis-server' as root (or run this script as root)"
    command -v apt-get >/dev/null || die "redis-server is not installed and apt-get is not available"
    say "installing redis-server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y redis-server
    # Debian starts a system instance on 6379; it does not clash with our ports, so leave it alone.
}

# Every node reports cluster_state:ok and every replica master_link_status:up.
healthy() {
    local port info repl
    for port in $(ports); do
        info="$(cli "$port" CLUSTER INFO)" || return 1
        grep -qx 'cluster_state:ok' <<<"$info" || return 1
        grep -qx 'cluster_slots_ok:16384' <<<"$info" || return 1
        repl="$(cli "$port" INFO replication)" || return 1
        if grep -qx 'role:slave' <<<"$repl"; then
            grep -qx 'master_link_status:up' <<<"$repl" || return 1
        fi
    done
}

wait_for() {
    local what="$1"
    shift
    local deadline=$((SECONDS + WAIT_SECS))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
    [[ -z "$what" ]] || say "$what"
}

node_up() { [[ "$(cli "$1" PING)" == PONG ]]; }

seeds() {
    local out="" port
    for port in $(ports); do
        out+="${out:+,}127.0.0.1:$port"
    done
    echo "$out"
}

print_logs() {
    local port
    for port in $(ports); do
        if [[ -f "$DIR/$port/redis.log" ]]; then
            echo "--- $DIR/$port/redis.log (tail)" >&2
            tail -n 15 "$DIR/$port/redis.log" >&2
        fi
    done
}

kill_nodes() {
    local port pid pids=()
    for port in $(ports); do
        if alive "$port"; then
            pid="$(pid_of "$port")"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    local deadline=$((SECONDS + 10))
    for pid in ${pids[@]+"${pids[@]}"}; do
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.05
        done
    done
}

remove_dir() {
    if [[ -d "$DIR" ]]; then
        [[ -f "$DIR/$MARKER" ]] || die "$DIR was not created by this script (no $MARKER); not removing it"
        rm -rf -- "$DIR"
    fi
}

any_alive() {
    local port
    for port in $(ports); do
        alive "$port" && return 0
    done
    return 1
}

cmd_start() {
    [[ "$FIRST_PORT" =~ ^[0-9]+$ ]] && ((FIRST_PORT >= 1 && FIRST_PORT + NODES - 1 + 10000 <= 65535)) ||
        die "REDIS_CLUSTER_PORT must be a port between 1 and $((65535 - 10000 - NODES + 1)), got '$FIRST_PORT'"

    if [[ -f "$DIR/$MARKER" ]] && any_alive; then
        if healthy; then
            say "already running in $DIR"
            say "seed nodes: $(seeds)"
            return 0
        fi
        die "nodes in $DIR are running but the cluster is not healthy; run '$0 stop' first"
    fi
    if [[ -e "$DIR" ]]; then
        [[ -f "$DIR/$MARKER" ]] || die "$DIR exists and was not created by this script; set REDIS_CLUSTER_DIR elsewhere"
        say "removing stale $DIR"
        remove_dir
    fi

    local port busy=()
    for port in $(ports); do
        port_in_use "$port" && busy+=("$port")
        port_in_use $((port + 10000)) && busy+=("$((port + 10000)) (cluster bus of $port)")
    done
    if ((${#busy[@]})); then
        die "port(s) already in use on 127.0.0.1: ${busy[*]}; stop whatever uses them or pick other ports with REDIS_CLUSTER_PORT=..."
    fi

    ensure_redis

    mkdir -p "$DIR"
    echo "$FIRST_PORT" >"$DIR/$MARKER"
    # From here on a failure leaves nothing behind.
    trap 'echo "redis-cluster: start failed; cleaning up" >&2; print_logs; kill_nodes; remove_dir' ERR

    for port in $(ports); do
        mkdir -p "$DIR/$port"
        redis-server \
            --port "$port" \
            --bind 127.0.0.1 \
            --dir "$DIR/$port" \
            --daemonize yes \
            --pidfile "$DIR/$port/redis.pid" \
            --logfile "$DIR/$port/redis.log" \
            --cluster-enabled yes \
            --cluster-config-file "$DIR/$port/nodes.conf" \
            --cluster-node-timeout 1000 \
            --cluster-require-full-coverage no \
            --repl-diskless-sync-delay 0 \
            --save '' \
            --appendonly no
    done
    for port in $(ports); do
        wait_for "" node_up "$port" || die_start "node $port did not answer PING within ${WAIT_SECS}s"
    done
    say "$NODES nodes are up on ports $(ports | head -1)..$(ports | tail -1); creating the cluster"

    local addrs=()
    for port in $(ports); do
        addrs+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 ||
        die_start "redis-cli --cluster create failed:
$(cat "$DIR/create.log")"

    wait_for "cluster is healthy (cluster_state:ok everywhere, replicas in sync)" healthy ||
        die_start "cluster not healthy within ${WAIT_SECS}s"
    trap - ERR

    echo
    echo "Redis Cluster running (3 masters, 3 replicas), data in $DIR"
    echo "Seed nodes: $(seeds)"
    echo "Stop it with: ${REDIS_CLUSTER_DIR:+REDIS_CLUSTER_DIR=$DIR }$0 stop"
}

# Fails inside `start` so that the ERR trap cleans up.
die_start() {
    echo "redis-cluster: $*" >&2
    return 1
}

cmd_stop() {
    if [[ ! -e "$DIR" ]]; then
        say "not running (no $DIR)"
        return 0
    fi
    [[ -f "$DIR/$MARKER" ]] || die "$DIR was not created by this script (no $MARKER); not touching it"
    kill_nodes
    remove_dir
    say "stopped; removed $DIR"
}

cmd_status() {
    if [[ ! -f "$DIR/$MARKER" ]] || ! any_alive; then
        say "not running (nothing in ${DIR})"
        return 1
    fi
    local port down=() first=""
    for port in $(ports); do
        if alive "$port" && node_up "$port"; then
            first="${first:-$port}"
        else
            down+=("$port")
        fi
    done
    echo "Directory: $DIR"
    echo "Seed nodes: $(seeds)"
    if ((${#down[@]})); then
        echo "Nodes down: ${down[*]}"
    fi
    if [[ -z "$first" ]]; then
        return 1
    fi
    echo
    echo "== cluster info (127.0.0.1:$first)"
    cli "$first" CLUSTER INFO | grep -E '^cluster_(state|slots_assigned|slots_ok|slots_pfail|slots_fail|known_nodes|size|current_epoch):'
    echo
    echo "== cluster nodes"
    cli "$first" CLUSTER NODES
    echo
    if ((${#down[@]} == 0)) && healthy; then
        echo "healthy"
    else
        echo "NOT healthy"
        return 1
    fi
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) usage ;;
esac
