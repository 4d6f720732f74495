#!/usr/bin/env bash
# Tracing cost per sampled message, in instructions (issue 28): the server
# under `valgrind --tool=callgrind` (instruction counts do not depend on how
# busy the machine is), fanout K=100, one publisher at 20 msg/s, with no
# trace export ("off") and with 100% sampling into `messenger-bench
# otlp-sink` ("on"). Each mode runs for 5 s and for 15 s: the difference of
# the two totals over the difference in messages is the cost per message
# with start-up and subscription set-up taken out. "on" minus "off" is what
# tracing costs per sampled message. Prints one line per run and a summary;
# each run's callgrind profile stays in $OUT/<mode>-<secs>/cg.out
# (`callgrind_annotate --inclusive=yes` lists the top entries).
#
# Usage: tests/bench/trace-cost.sh [BIN_DIR] [OUT]   (default target/release, target/trace-cost)
# Needs valgrind and a C compiler (Debian: valgrind, gcc); the wrapper that
# lets the server run under valgrind is explained in callgrind-common.sh.
set -euo pipefail
BIN=${1:-target/release}; OUT=${2:-target/trace-cost}
RATE=20; K=100
mkdir -p "$OUT"
# shellcheck source=callgrind-common.sh
. "$(dirname "$0")/callgrind-common.sh"
WRAP=$(noauxv_wrapper "$OUT")

# run MODE SECS: prints "instructions messages spans"
run() {
    local mode=$1 secs=$2 d=$OUT/$1-$2 sink= env=()
    rm -rf "$d"; mkdir -p "$d"
    env=(MESSENGER_SERVER_HOST=127.0.0.1 MESSENGER_SERVER_PORT=0 MESSENGER_METRICS_PORT=0)
    if [ "$mode" = on ]; then
        "$BIN/messenger-bench" otlp-sink > "$d/sink.log" 2>&1 & sink=$!
        env+=(OTEL_EXPORTER_OTLP_ENDPOINT=http://$(wait_for "$d/sink.log" otlp_addr))
    fi
    env "${env[@]}" "$WRAP" valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" \
        "$BIN/messenger-server" > "$d/server.log" 2>&1 & local server=$!
    local addr; addr=$(wait_for "$d/server.log" grpc_addr)
    "$BIN/messenger-bench" fanout --server "$addr" --subscribers $K --publishers 1 \
        --rate $RATE --duration "$secs" --json "$d/fanout.json" > "$d/bench.log" 2>&1
    kill -TERM $server; wait $server || true
    local spans=0
    if [ -n "$sink" ]; then
        kill -TERM "$sink"; wait "$sink" || true
        spans=$(grep -o 'spans_received=[0-9]*' "$d/sink.log" | tail -1 | cut -d= -f2)
    fi
    local ir; ir=$(grep -m1 '^summary:\|^totals:' "$d/cg.out" | awk '{print $2}')
    local msgs; msgs=$(grep -o '"accepted": [0-9]*' "$d/fanout.json" | grep -o '[0-9]*$')
    echo "$mode $secs s: $ir instructions, $msgs messages, $spans spans" >&2
    echo "$ir $msgs $spans"
}

per_message() {
    read -r ir1 m1 s1 <<< "$(run "$1" 5)"
    read -r ir2 m2 s2 <<< "$(run "$1" 15)"
    echo $(( (ir2 - ir1) / (m2 - m1) )) $(( (s2 - s1) / (m2 - m1) ))
}
read -r off _ <<< "$(per_message off)"
read -r on spans <<< "$(per_message on)"
echo "instructions per message at K=$K: off $off, on (100% sampling) $on, tracing $((on - off)) ($spans spans per message)"
