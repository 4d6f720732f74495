#!/usr/bin/env bash
# User-space instructions per delivery of the fan-out (issue 28): the server
# under `valgrind --tool=callgrind`, fanout K subscribers on K connections,
# one publisher at RATE msg/s, for 4 s and for 12 s; (12 s total - 4 s total)
# / (12 s deliveries - 4 s deliveries) is the cost of one delivery with
# start-up and subscription set-up taken out. Instruction counts do not
# depend on how busy the machine is; the kernel's share (the writev and the
# loopback path, about 40% of the server's CPU at K=1000) is not in them, so
# the perf stat of each run (syscalls per delivery) stays in $OUT/run-*/perf.
# At a low rate most batches hold one message: this is the unbatched cost.
# K=1000 does not set up under valgrind (the accept backlog overflows), so
# the default is K=250.
#
# Usage: tests/bench/delivery-cost.sh [BIN_DIR] [OUT] [K] [RATE]
#   (default target/release, target/delivery-cost, 250, 20)
# Needs valgrind, perf (Debian linux-perf) and a C compiler (see trace-cost.sh).
set -euo pipefail
BIN=${1:-target/release}; OUT=${2:-target/delivery-cost}; K=${3:-250}; RATE=${4:-20}
mkdir -p "$OUT"
# shellcheck source=callgrind-common.sh
. "$(dirname "$0")/callgrind-common.sh"
WRAP=$(noauxv_wrapper "$OUT")

# run SECS: prints "instructions deliveries"
run() {
    local secs=$1 d=$OUT/run-$1
    rm -rf "$d"; mkdir -p "$d"
    env MESSENGER_SERVER_HOST=127.0.0.1 MESSENGER_SERVER_PORT=0 MESSENGER_METRICS_PORT=0 \
        "$WRAP" valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" \
        "$BIN/messenger-server" > "$d/server.log" 2>&1 & local server=$!
    local addr; addr=$(wait_for "$d/server.log" grpc_addr)
    perf stat -x, -o "$d/perf" -p $server -e 'syscalls:sys_enter_writev,syscalls:sys_enter_write' \
        -e 'syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex' & local stat=$!
    "$BIN/messenger-bench" fanout --server "$addr" --subscribers "$K" --publishers 1 \
        --rate "$RATE" --duration "$secs" --json "$d/fanout.json" > "$d/bench.log" 2>&1
    kill -INT $stat; wait $stat || true
    kill -TERM $server; wait $server || true
    local ir; ir=$(grep -m1 '^summary:\|^totals:' "$d/cg.out" | awk '{print $2}')
    local n; n=$(grep -o '"deliveries": [0-9]*' "$d/fanout.json" | grep -o '[0-9]*$')
    echo "$secs s: $ir instructions, $n deliveries" >&2
    echo "$ir $n"
}
read -r i1 d1 <<< "$(run 4)"
read -r i2 d2 <<< "$(run 12)"
echo "user instructions per delivery at K=$K, $RATE msg/s: $(( (i2 - i1) / (d2 - d1) ))"
