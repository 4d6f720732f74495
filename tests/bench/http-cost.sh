#!/usr/bin/env bash
# User-space instructions per `POST /sendMessage` (issue 28): one process of
# the HTTP path (the client, or the server) under `valgrind --tool=callgrind`,
# the other native, `messenger-bench http` with 10 keep-alive connections for
# 3 s and for 9 s; (9 s total - 3 s total) / (9 s requests - 3 s requests) is
# the cost of one request with start-up and connection set-up taken out.
# Instruction counts do not depend on how busy the machine is (wall-clock
# req/s does); the kernel's share is not in them.
#
# Usage: tests/bench/http-cost.sh [BIN_DIR] [OUT] [client|server]
#   (default target/release, target/http-cost, client)
# Needs valgrind and a C compiler (see callgrind-common.sh).
set -euo pipefail
BIN=${1:-target/release}; OUT=${2:-target/http-cost}; WHO=${3:-client}
mkdir -p "$OUT"
# shellcheck source=callgrind-common.sh
. "$(dirname "$0")/callgrind-common.sh"
WRAP=$(noauxv_wrapper "$OUT")

# under NAME LOG CMD...: CMD under callgrind if NAME is the measured process.
under() {
    local name=$1 log=$2; shift 2
    if [ "$name" = "$WHO" ]; then
        "$WRAP" valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" "$@" > "$log" 2>&1 &
    else
        "$@" > "$log" 2>&1 &
    fi
}

# run SECS: prints "instructions requests"
run() {
    local secs=$1; d=$OUT/$WHO-$1
    rm -rf "$d"; mkdir -p "$d"
    MESSENGER_SERVER_HOST=127.0.0.1 MESSENGER_SERVER_PORT=0 MESSENGER_METRICS_PORT=0 \
        under server "$d/server.log" "$BIN/messenger-server"; local server=$!
    local addr; addr=$(wait_for "$d/server.log" grpc_addr)
    MESSENGER_SERVER_ADDR="http://$addr" MESSENGER_HTTP_HOST=127.0.0.1 MESSENGER_HTTP_PORT=0 \
        under client "$d/client.log" "$BIN/messenger-client"; local client=$!
    local http; http=$(wait_for "$d/client.log" http_addr)
    "$BIN/messenger-bench" http --client "$http" --connections 10 --duration "$secs" \
        --json "$d/http.json" > "$d/bench.log" 2>&1
    kill -TERM $client; wait $client || true
    kill -TERM $server; wait $server || true
    local ir; ir=$(grep -m1 '^summary:\|^totals:' "$d/cg.out" | awk '{print $2}')
    local n; n=$(grep -o '"requests": [0-9]*' "$d/http.json" | grep -o '[0-9]*$')
    echo "$secs s: $ir instructions, $n requests" >&2
    echo "$ir $n"
}
read -r i1 n1 <<< "$(run 3)"
read -r i2 n2 <<< "$(run 9)"
echo "user instructions per POST /sendMessage in the $WHO: $(( (i2 - i1) / (n2 - n1) ))"
