#!/usr/bin/env bash
# The ceiling of one stream itself: how many messages per second one Redis
# accepts through our publish script (server/src/core/broker/script.rs),
# one message per call and in group-commit batches, driven by
# redis-benchmark on a fresh redis-server (free loopback port, no
# persistence). The end-to-end ceiling through replicas is `make bench`'s
# redis-ceiling run; this one leaves the replicas out.
#
# usage: tests/bench/stream-ceiling.sh [requests per size, default 20000]
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-20000}
for tool in redis-server redis-cli redis-benchmark python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (Debian: apt-get install redis-server)" >&2; exit 1; }
done
lua=$(python3 - <<'PY'
import re
s = open("server/src/core/broker/script.rs").read()
grab = lambda name: re.search(r'const ' + name + r': &str = r"(.*?)";', s, re.S).group(1)
print(grab("PRELUDE") + grab("PUBLISH"))
PY
)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
sha=$(redis-cli -p "$port" SCRIPT LOAD "$lua")
text=$(printf 'x%.0s' $(seq 64))
echo "| messages per script call | calls/s | messages/s | p50 ms |"
echo "|---|---|---|---|"
for batch in 1 16 128; do
  args=()
  for _ in $(seq "$batch"); do args+=(a "$text" ''); done
  line=$(redis-benchmark -p "$port" -n "$n" -c 4 -q EVALSHA "$sha" 2 s s:meta 100000 '' 0 "${args[@]}" 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | tail -1)
  rps=$(sed -E 's/.*: ([0-9.]+) requests per second.*/\1/' <<<"$line")
  p50=$(sed -E 's/.*p50=([0-9.]+) msec.*/\1/' <<<"$line")
  python3 -c "print(f'| $batch | {float(\"$rps\"):,.0f} | {float(\"$rps\")*$batch:,.0f} | $p50 |')"
done
