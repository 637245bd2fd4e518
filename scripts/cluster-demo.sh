#!/usr/bin/env bash
# Runs the production topology of ratelimiter on one machine, without Docker:
# clients -> nginx (load balancer) -> 3 stateless ratelimiter replicas -> Redis
# Cluster (3 masters, 3 replicas), all on 127.0.0.1.
#
# Usage:
#   scripts/cluster-demo.sh up       # build if needed, start everything, wait until it answers, print the URLs
#   scripts/cluster-demo.sh status   # print each component's state; exit 1 unless all are healthy
#   scripts/cluster-demo.sh down     # stop everything `up` started and remove the demo directory
#
# Environment:
#   DEMO_DIR            where configs, pidfiles and logs live
#                       (default: ${TMPDIR:-/tmp}/ratelimiter-cluster-demo)
#   DEMO_PORT           the load balancer's port (default: 8100); the replicas listen
#                       on PORT+1..PORT+3 and their admin APIs on PORT+4..PORT+6
#   REDIS_CLUSTER_PORT  first Redis port (default: 7100); the nodes use PORT..PORT+5
#                       and PORT+10000..PORT+10005 for their cluster bus
#   RATELIMITER_BIN     the ratelimiter binary to run; without it `up` runs
#                       `cargo build --release --bin ratelimiter` and uses target/release/ratelimiter
#
# The Redis Cluster is started by scripts/redis-cluster.sh (in DEMO_DIR/redis).
# nginx runs unprivileged from deploy/nginx/nginx.conf, rendered with these
# ports into DEMO_DIR/nginx; its health checks are passive (max_fails,
# proxy_next_upstream). The replicas share DEMO_DIR/ratelimiter.toml (edit it:
# every replica reloads it within a second); the admin token is in
# DEMO_DIR/admin-token. `up` when everything runs says so and exits 0, and
# starts only what is missing otherwise; if it fails, it stops everything
# again. `down` when nothing runs exits 0. `status` and `down` use the ports
# recorded by `up`. nginx and redis-server come from Debian's packages;
# `up` installs them with apt-get when missing (as root only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${DEMO_DIR:-${TMPDIR:-/tmp}/ratelimiter-cluster-demo}"
[[ "$DIR" == /* ]] || DIR="$PWD/$DIR"
MARKER=".ratelimiter-cluster-demo" # written by `up`; `down` only removes a directory holding it
REPLICAS=3
WAIT_SECS=30

die() {
    echo "cluster-demo: $*" >&2
    exit 1
}
say() { echo "cluster-demo: $*"; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Ports: recorded by a previous `up`, else from the environment.
load_ports() {
    BASE="${DEMO_PORT:-8100}"
    REDIS_PORT="${REDIS_CLUSTER_PORT:-7100}"
    if [[ -f "$DIR/$MARKER" ]]; then
        local base redis
        base="$(sed -n 's/^DEMO_PORT=\([0-9]*\)$/\1/p' "$DIR/$MARKER")"
        redis="$(sed -n 's/^REDIS_CLUSTER_PORT=\([0-9]*\)$/\1/p' "$DIR/$MARKER")"
        [[ -n "$base" && -n "$redis" ]] || die "$DIR/$MARKER is damaged; remove $DIR by hand"
        if [[ "$base" != "$BASE" || "$redis" != "$REDIS_PORT" ]] && [[ -n "${DEMO_PORT:-}${REDIS_CLUSTER_PORT:-}" ]]; then
            say "using the ports recorded in $DIR (DEMO_PORT=$base, REDIS_CLUSTER_PORT=$redis)"
        fi
        BASE="$base"
        REDIS_PORT="$redis"
    fi
    [[ "$BASE" =~ ^[0-9]+$ ]] && ((BASE >= 1 && BASE + 2 * REPLICAS <= 65535)) ||
        die "DEMO_PORT must be a port between 1 and $((65535 - 2 * REPLICAS)), got '$BASE'"
    [[ "$REDIS_PORT" =~ ^[0-9]+$ ]] && ((REDIS_PORT >= 1 && REDIS_PORT + 5 + 10000 <= 65535)) ||
        die "REDIS_CLUSTER_PORT must be a port between 1 and $((65535 - 10000 - 5)), got '$REDIS_PORT'"
    LB_PORT="$BASE"
}

replica_port() { echo $((BASE + $1)); }
admin_port() { echo $((BASE + REPLICAS + $1)); }
redis_ports() { seq "$REDIS_PORT" $((REDIS_PORT + 5)); }

redis_cluster() {
    REDIS_CLUSTER_DIR="$DIR/redis" REDIS_CLUSTER_PORT="$REDIS_PORT" "$ROOT/scripts/redis-cluster.sh" "$@"
}

# --- processes ---------------------------------------------------------------

# The pid in file $1 when that process is alive and its command line contains $2.
live_pid() {
    local file="$1" needle="$2" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle" || return 1
    echo "$pid"
}

# Pids of the children of process $1.
children_of() {
    local stat line ppid
    for stat in /proc/[0-9]*/stat; do
        read -r line <"$stat" 2>/dev/null || continue
        # pid (comm) state ppid ...; comm may hold spaces, so split after ')'.
        read -r _ ppid _ <<<"${line##*) }"
        [[ "$ppid" == "$1" ]] && echo "${line%% *}"
    done
    return 0
}

# Sends $1 to the pids $2..., waits up to 10 s for all of them to exit, then SIGKILLs the rest.
stop_pids() {
    local signal="$1" pid
    shift
    (($#)) || return 0
    kill "-$signal" "$@" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                kill -KILL "$pid" 2>/dev/null || true
            fi
            sleep 0.05
        done
    done
}

# Something accepts connections on 127.0.0.1:$1.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    if command -v ss >/dev/null; then
        ss -Hltn "sport = :$1" 2>/dev/null | grep -q . && return 0
    fi
    return 1
}

# The HTTP status of GET http://127.0.0.1:$1$2 (empty when nothing answers within 2 s).
http_status() {
    timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
        read -r _ code _ <&3 && echo "$code"' _ "$1" "$2" 2>/dev/null || true
}

wait_for() {
    local deadline=$((SECONDS + WAIT_SECS))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# --- components ----------------------------------------------------------------

CONFIG() { echo "$DIR/ratelimiter.toml"; }
replica_dir() { echo "$DIR/replica-$1"; }
replica_pid() { live_pid "$(replica_dir "$1")/ratelimiter.pid" "$(CONFIG)"; }
replica_ready() { [[ "$(http_status "$(replica_port "$1")" /health/ready)" == 200 ]]; }
NGINX_DIR() { echo "$DIR/nginx"; }
nginx_pid() { live_pid "$(NGINX_DIR)/logs/nginx.pid" "$(NGINX_DIR)/nginx.conf"; }
lb_ready() {
    [[ "$(http_status "$LB_PORT" /lb/health)" == 200 && "$(http_status "$LB_PORT" /health/ready)" == 200 ]]
}

ensure_package() {
    local command="$1" package="$2"
    command -v "$command" >/dev/null && return 0
    [[ "$(id -u)" -eq 0 ]] || die "$command is not installed; run 'apt-get install -y $package' as root (or run this script as root)"
    command -v apt-get >/dev/null || die "$command is not installed and apt-get is not available"
    say "installing $package with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$package"
    # Debian starts a system nginx on port 80; it does not clash with our ports, so leave it alone.
}

# Sets BIN; builds the release binary first unless RATELIMITER_BIN names one.
find_binary() {
    if [[ -n "${RATELIMITER_BIN:-}" ]]; then
        [[ -x "$RATELIMITER_BIN" ]] || die "RATELIMITER_BIN=$RATELIMITER_BIN is not an executable file"
        BIN="$(cd "$(dirname "$RATELIMITER_BIN")" && pwd)/$(basename "$RATELIMITER_BIN")"
        return
    fi
    command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain, or set RATELIMITER_BIN to a built ratelimiter binary"
    say "building the release binary (cargo build --release --bin ratelimiter)"
    (cd "$ROOT" && cargo build --release --bin ratelimiter) || die "cargo build failed"
    BIN="$ROOT/target/release/ratelimiter"
}

write_config() {
    local nodes="" port
    for port in $(redis_ports); do
        nodes+="${nodes:+, }\"redis://127.0.0.1:$port\""
    done
    cat >"$(CONFIG)" <<EOF
# The configuration of the demo's three replicas, written by
# scripts/cluster-demo.sh. Each replica gets its own listeners from the
# command line (--listen) and RATELIMITER__ADMIN__LISTEN, and the admin token
# from RATELIMITER__ADMIN__TOKEN. Edit the rules: every replica reloads this
# file within a second.

[server]
listen = "127.0.0.1:$(replica_port 1)"

[store]
backend = "redis"
failure_mode = "local"     # if Redis is unreachable, each replica enforces ...
local_divisor = $REPLICAS          # ... ceil(limit / $REPLICAS) on its own

[store.redis]
mode = "cluster"
nodes = [$nodes]
key_prefix = "demo"
pool_size = 4
command_timeout = "1s"     # generous: the demo shares one machine with everything else

[log]
format = "human"
level = "info"

# Any key without a rule of its own: at most 100 checks in any 60 seconds,
# shared by all replicas.
[defaults]
algorithm = "sliding_window_log"
tier = "free"
limit = 100
window = "1m"

[[rules]]
endpoint = "POST /login"
algorithm = "fixed_window"
limit = 5
window = "60s"
EOF
}

write_prometheus_config() {
    cat >"$DIR/prometheus.yml" <<EOF
# Scrapes the demo's three replicas (written by scripts/cluster-demo.sh).
# prometheus --config.file=$DIR/prometheus.yml --storage.tsdb.path=$DIR/prometheus
global:
  scrape_interval: 5s
scrape_configs:
  - job_name: ratelimiter
    static_configs:
      - targets: ['127.0.0.1:$(replica_port 1)', '127.0.0.1:$(replica_port 2)', '127.0.0.1:$(replica_port 3)']
EOF
}

start_replica() {
    local i="$1" dir port admin
    dir="$(replica_dir "$i")"
    port="$(replica_port "$i")"
    admin="$(admin_port "$i")"
    port_in_use "$port" && die "port $port (replica $i) is already in use on 127.0.0.1; pick other ports with DEMO_PORT=..."
    port_in_use "$admin" && die "port $admin (admin API of replica $i) is already in use on 127.0.0.1; pick other ports with DEMO_PORT=..."
    [[ -n "${BIN:-}" ]] || find_binary
    mkdir -p "$dir"
    # The inner shell records its own pid, then becomes the replica (exec);
    # setsid detaches it from this terminal's signals.
    RATELIMITER__ADMIN__LISTEN="127.0.0.1:$admin" \
        RATELIMITER__ADMIN__TOKEN="$(cat "$DIR/admin-token")" \
        setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$dir/ratelimiter.pid" \
        "$BIN" serve --config "$(CONFIG)" --listen "127.0.0.1:$port" \
        </dev/null >>"$dir/ratelimiter.log" 2>&1 &
    say "replica $i starting on 127.0.0.1:$port (admin 127.0.0.1:$admin)"
}

# Waits until replica $1 is ready; fails at once when its process has exited.
wait_for_replica() {
    local i="$1" log
    log="$(replica_dir "$i")/ratelimiter.log"
    local deadline=$((SECONDS + WAIT_SECS))
    until replica_ready "$i"; do
        # A pidfile without a live process: the replica exited (the inner
        # shell writes the pidfile before it becomes the replica).
        if [[ -s "$(replica_dir "$i")/ratelimiter.pid" ]] && ! replica_pid "$i" >/dev/null; then
            die "replica $i exited; the end of $log:
$(tail -n 20 "$log")"
        fi
        ((SECONDS < deadline)) || die "replica $i is not ready on 127.0.0.1:$(replica_port "$i") within ${WAIT_SECS}s (log: $log)"
        sleep 0.1
    done
}

render_nginx_config() {
    local dir
    dir="$(NGINX_DIR)"
    mkdir -p "$dir/logs" "$dir/tmp"
    sed -e "s|@LB_LISTEN@|127.0.0.1:$LB_PORT|g" \
        -e "s|@REPLICA_1@|127.0.0.1:$(replica_port 1)|g" \
        -e "s|@REPLICA_2@|127.0.0.1:$(replica_port 2)|g" \
        -e "s|@REPLICA_3@|127.0.0.1:$(replica_port 3)|g" \
        "$ROOT/deploy/nginx/nginx.conf" >"$dir/nginx.conf"
}

start_nginx() {
    local dir
    dir="$(NGINX_DIR)"
    port_in_use "$LB_PORT" && die "port $LB_PORT (load balancer) is already in use on 127.0.0.1; pick other ports with DEMO_PORT=..."
    nginx -t -q -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" ||
        die "nginx rejected $dir/nginx.conf (see above and $dir/logs/error.log)"
    # nginx daemonizes; its master writes logs/nginx.pid.
    nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" </dev/null >>"$dir/logs/error.log" 2>&1 ||
        die "nginx failed to start; the end of $dir/logs/error.log:
$(tail -n 20 "$dir/logs/error.log")"
    say "nginx starting on 127.0.0.1:$LB_PORT"
}

# --- commands ------------------------------------------------------------------

# Stops nginx, the replicas and the cluster, and removes $DIR.
stop_all() {
    local pid workers i pids=()
    if pid="$(nginx_pid)"; then
        # SIGTERM to the master: it stops its workers (a SIGKILLed master would orphan them).
        mapfile -t workers < <(children_of "$pid")
        stop_pids TERM "$pid"
        stop_pids KILL ${workers[@]+"${workers[@]}"}
        say "nginx stopped"
    fi
    for ((i = 1; i <= REPLICAS; i++)); do
        if pid="$(replica_pid "$i")"; then
            pids+=("$pid")
        fi
    done
    if ((${#pids[@]})); then
        stop_pids TERM "${pids[@]}"
        say "replicas stopped"
    fi
    if [[ -d "$DIR/redis" ]]; then
        redis_cluster stop | sed 's/^/  /'
    fi
    [[ -f "$DIR/$MARKER" ]] || die "$DIR was not created by this script (no $MARKER); not removing it"
    rm -rf -- "$DIR"
}

on_up_exit() {
    local rc=$?
    if ((rc != 0)); then
        echo "cluster-demo: up failed; stopping everything in $DIR" >&2
        stop_all || true
    fi
}

cmd_up() {
    load_ports
    if [[ -e "$DIR" && ! -f "$DIR/$MARKER" ]]; then
        die "$DIR exists and was not created by this script; set DEMO_DIR elsewhere"
    fi
    local fresh=1 i p
    [[ -f "$DIR/$MARKER" ]] && fresh=0
    if ((fresh)); then
        local busy=()
        for ((p = BASE; p <= BASE + 2 * REPLICAS; p++)); do
            port_in_use "$p" && busy+=("$p")
        done
        ((${#busy[@]} == 0)) ||
            die "port(s) already in use on 127.0.0.1: ${busy[*]}; stop whatever uses them or pick other ports with DEMO_PORT=..."
    fi
    ensure_package nginx nginx
    ensure_package redis-server redis-server

    mkdir -p "$DIR"
    printf 'DEMO_PORT=%s\nREDIS_CLUSTER_PORT=%s\n' "$BASE" "$REDIS_PORT" >"$DIR/$MARKER"
    trap on_up_exit EXIT

    # Build (or find) the binary first when a replica is to be started, so
    # that a failed build starts nothing.
    for ((i = 1; i <= REPLICAS; i++)); do
        replica_pid "$i" >/dev/null || {
            find_binary
            break
        }
    done

    local started=0 out
    if ! redis_cluster status >/dev/null 2>&1; then
        say "starting the Redis Cluster on 127.0.0.1:$REDIS_PORT..$((REDIS_PORT + 5)) (scripts/redis-cluster.sh)"
        out="$(redis_cluster start 2>&1)" || die "scripts/redis-cluster.sh start failed:
$out"
        grep '^redis-cluster:' <<<"$out" | sed 's/^/  /' || true
        started=1
    fi

    if [[ ! -f "$DIR/admin-token" ]]; then
        (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$DIR/admin-token")
    fi
    [[ -f "$(CONFIG)" ]] || write_config
    write_prometheus_config

    local waiting=()
    for ((i = 1; i <= REPLICAS; i++)); do
        if ! replica_pid "$i" >/dev/null; then
            rm -f "$(replica_dir "$i")/ratelimiter.pid"
            start_replica "$i"
            waiting+=("$i")
            started=1
        fi
    done
    for i in ${waiting[@]+"${waiting[@]}"}; do
        wait_for_replica "$i"
        say "replica $i is ready"
    done

    render_nginx_config
    if ! nginx_pid >/dev/null; then
        start_nginx
        started=1
    fi
    wait_for lb_ready || die "the load balancer does not answer on 127.0.0.1:$LB_PORT within ${WAIT_SECS}s (log: $(NGINX_DIR)/logs/error.log)"
    trap - EXIT

    echo
    if ((started)); then
        echo "The demo is up (everything in $DIR):"
    else
        echo "The demo is already up (everything in $DIR):"
    fi
    print_endpoints
}

print_endpoints() {
    local i port role masters="" replicas="" down=""
    for port in $(redis_ports); do
        role="$(redis-cli -h 127.0.0.1 -p "$port" ROLE 2>/dev/null | head -1 | tr -d '\r')" || true
        case "$role" in
        master) masters+=" 127.0.0.1:$port" ;;
        slave) replicas+=" 127.0.0.1:$port" ;;
        *) down+=" 127.0.0.1:$port" ;;
        esac
    done
    echo
    echo "  Load balancer (nginx)  http://127.0.0.1:$LB_PORT        POST /check, GET /rules, /health/ready, ..."
    echo "                         http://127.0.0.1:$LB_PORT/lb/health  (nginx itself), /lb/status (its connections)"
    for ((i = 1; i <= REPLICAS; i++)); do
        echo "  Replica $i              http://127.0.0.1:$(replica_port "$i")        admin API http://127.0.0.1:$(admin_port "$i")/admin"
    done
    echo "  Redis Cluster          masters$masters"
    echo "                         replicas$replicas${down:+ (not answering:$down)}"
    local label="Prometheus metrics"
    for ((i = 1; i <= REPLICAS; i++)); do
        printf '  %-22s http://127.0.0.1:%s/metrics\n' "$label" "$(replica_port "$i")"
        label=""
    done
    echo "                         scrape configuration: $DIR/prometheus.yml"
    echo "  Admin token            $DIR/admin-token"
    echo "  Configuration          $DIR/ratelimiter.toml (shared by the replicas, reloaded on change)"
    echo "  Logs                   $DIR/replica-{1,2,3}/ratelimiter.log, $(NGINX_DIR)/logs/{access,error}.log"
    echo
    echo "Try: curl -si http://127.0.0.1:$LB_PORT/check -H 'content-type: application/json' -d '{\"key\": \"user:42\"}'"
    echo "     (100 per minute per key, whichever replica answers: see the X-Served-By header)"
    echo "Stop: ${DEMO_DIR:+DEMO_DIR=$DIR }$0 down"
}

cmd_status() {
    if [[ ! -f "$DIR/$MARKER" ]]; then
        say "not running (nothing in $DIR)"
        return 1
    fi
    load_ports
    local healthy=1 i pid code
    echo "Directory: $DIR"
    if redis_cluster status >/dev/null 2>&1; then
        echo "Redis Cluster     127.0.0.1:$REDIS_PORT..$((REDIS_PORT + 5))  healthy"
    else
        echo "Redis Cluster     127.0.0.1:$REDIS_PORT..$((REDIS_PORT + 5))  NOT healthy ($0 uses scripts/redis-cluster.sh; REDIS_CLUSTER_DIR=$DIR/redis scripts/redis-cluster.sh status shows why)"
        healthy=0
    fi
    for ((i = 1; i <= REPLICAS; i++)); do
        if pid="$(replica_pid "$i")"; then
            code="$(http_status "$(replica_port "$i")" /health/ready)"
            if [[ "$code" == 200 ]]; then
                echo "Replica $i         http://127.0.0.1:$(replica_port "$i")  ready (pid $pid)"
            else
                echo "Replica $i         http://127.0.0.1:$(replica_port "$i")  NOT ready (pid $pid, /health/ready: ${code:-no answer})"
                healthy=0
            fi
        else
            echo "Replica $i         http://127.0.0.1:$(replica_port "$i")  NOT running"
            healthy=0
        fi
    done
    if pid="$(nginx_pid)"; then
        if lb_ready; then
            echo "Load balancer     http://127.0.0.1:$LB_PORT  ready (nginx master pid $pid)"
        else
            echo "Load balancer     http://127.0.0.1:$LB_PORT  NOT ready (nginx master pid $pid; /health/ready through it: $(http_status "$LB_PORT" /health/ready))"
            healthy=0
        fi
    else
        echo "Load balancer     http://127.0.0.1:$LB_PORT  NOT running"
        healthy=0
    fi
    if ((healthy)); then
        echo "healthy"
    else
        echo "NOT healthy"
        return 1
    fi
}

cmd_down() {
    if [[ ! -e "$DIR" ]]; then
        say "not running (no $DIR)"
        return 0
    fi
    [[ -f "$DIR/$MARKER" ]] || die "$DIR was not created by this script (no $MARKER); not touching it"
    load_ports
    stop_all
    say "stopped; removed $DIR"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*) usage ;;
esac
