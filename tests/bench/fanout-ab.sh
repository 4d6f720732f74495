#!/usr/bin/env bash
# A/B of two server builds on a shared machine (issue 28): per round and per
# K, the old server, the new one (order alternating by round) and
# nats-server, each fresh, each driven by the same `messenger-bench fanout`
# (or `messenger-bench-nats`) with 4 publishers; `perf stat` counts each of
# our servers' CPU time and syscalls. A ratio is taken within a round, so
# the machine's drift moves both sides. Summarise with fanout-ab.py OUT.
#
# Usage: tests/bench/fanout-ab.sh OLD_DIR NEW_DIR OUT [ROUNDS] [KS] [SECS]
#   (defaults 3, "1000 100", 8). OLD_DIR holds messenger-server,
#   messenger-bench and messenger-bench-nats; NEW_DIR a messenger-server.
#   NONATS=1 leaves nats-server out; RATE=R adds K=1000 at R msg/s (the
#   suite's fixed load is 250; a busy machine may not carry it). PACE=first-receipt
#   paces ours as the NATS driver is paced (the suite's `-paced` runs).
# Needs perf (Debian linux-perf) and nats-server.
set -u
OLD=$1; NEW=$2; OUT=$3; ROUNDS=${4:-3}; KS=${5:-"1000 100"}; SECS=${6:-8}
mkdir -p "$OUT"
BENCH=$OLD/messenger-bench; NATS=$OLD/messenger-bench-nats
EVENTS=task-clock,context-switches,syscalls:sys_enter_writev,syscalls:sys_enter_write
EVENTS=$EVENTS,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom

# addr_of LOG PATTERN: the HOST:PORT after PATTERN once LOG has it (bounded, 20 s).
addr_of() {
    for _ in $(seq 400); do
        a=$(grep -o "$2[=\": ]*[0-9.]*:[0-9]*" "$1" 2>/dev/null | head -1 | grep -o '[0-9.]*:[0-9]*$')
        [ -n "$a" ] && { echo "$a"; return 0; }
        sleep 0.05
    done
    return 1
}

# ours DIR NAME K [FLAGS...]
ours() {
    local dir=$1 name=$2 k=$3; shift 3
    local log=$OUT/$name.server.log
    MESSENGER_SERVER_HOST=127.0.0.1 MESSENGER_SERVER_PORT=0 MESSENGER_METRICS_PORT=0 \
        "$dir/messenger-server" > "$log" 2>&1 &
    local server=$!
    local a; a=$(addr_of "$log" grpc_addr) || { echo "$name: no address"; kill $server; return; }
    perf stat -x, -e "$EVENTS" -o "$OUT/$name.perf" -p $server & local stat=$!
    "$BENCH" fanout --server "$a" --server-pid $server --subscribers "$k" --publishers 4 \
        --duration "$SECS" "$@" --json "$OUT/$name.json" > "$OUT/$name.out" 2>&1
    kill -INT $stat; wait $stat
    kill -TERM $server; wait $server
}

# nats NAME K
nats() {
    local name=$1 k=$2 log=$OUT/$1.server.log
    nats-server -a 127.0.0.1 -p -1 > "$log" 2>&1 &
    local server=$!
    local a; a=$(addr_of "$log" "client connections on") || { echo "$name: no address"; kill $server; return; }
    "$NATS" --server "nats://$a" --server-pid $server --subscribers "$k" --publishers 4 \
        --duration "$SECS" --json "$OUT/$name.json" > "$OUT/$name.out" 2>&1
    kill -TERM $server; wait $server
}

# pair GROUP K [FLAGS...]: old and new, in round r's order (odd rounds old first).
pair() {
    local group=$1; shift
    if [ $((r % 2)) = 1 ]; then
        ours "$OLD" "$group-old-r$r" "$@"; ours "$NEW" "$group-new-r$r" "$@"
    else
        ours "$NEW" "$group-new-r$r" "$@"; ours "$OLD" "$group-old-r$r" "$@"
    fi
}

for r in $(seq "$ROUNDS"); do
    echo "round $r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
    for k in $KS; do
        pair "k$k" "$k" ${PACE:+--pace "$PACE"}
        [ -n "${NONATS:-}" ] || nats "k$k-nats-r$r" "$k"
    done
    [ -z "${RATE:-}" ] || pair "at$RATE" 1000 --rate "$RATE"
done
echo "end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
