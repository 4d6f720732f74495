"""Summary of a fanout-ab.sh run: per group (k1000, k100, at250) and side
(old, new, nats), the median (min-max) over rounds of deliveries/s, delivery
p99, server CPU per delivery (perf task-clock) and writes per delivery; then
the ratios new/old, old/nats and new/nats taken within each round.

Usage: python3 tests/bench/fanout-ab.py OUT
"""

import glob
import json
import os
import re
import statistics
import sys


def load(out, name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            j = json.load(f)
    except (OSError, ValueError):
        return None
    return None if j.get("error") else j


def perf(out, name):
    """perf stat -x, counters of one run, by event name."""
    counts = {}
    try:
        with open(os.path.join(out, name + ".perf")) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) > 3 and fields[0][:1].isdigit():
                    counts[fields[2]] = float(fields[0])
    except OSError:
        pass
    return counts


def spread(values):
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    return f"{statistics.median(v):.3g} ({min(v):.3g}-{max(v):.3g})"


def figures(out, name):
    """(deliveries/s, p99 ms, CPU µs per delivery, writes per delivery)."""
    j = load(out, name)
    if not j or not j["deliveries"]:
        return (None, None, None, None)
    n = j["deliveries"]
    if j.get("lost", 0) + j.get("duplicated", 0) + j.get("reordered", 0):
        print(f"  !! {name}: lost, duplicated or reordered deliveries")
    p = perf(out, name)
    cpu = p["task-clock"] * 1e3 / n if "task-clock" in p else j["server_cpu_seconds"] * 1e6 / n
    writes = sum(v for k, v in p.items() if "sys_enter_write" in k) / n if p else None
    return (j["deliveries_per_sec"], j["delivery_latency_ms"]["p99"], cpu, writes)


def main(out):
    groups = {}
    for path in glob.glob(os.path.join(out, "*.json")):
        m = re.match(r"(.*)-(old|new|nats)-r(\d+)$", os.path.basename(path)[:-5])
        if m:
            groups.setdefault(m[1], {}).setdefault(m[2], {})[int(m[3])] = m[0]
    for group, sides in sorted(groups.items()):
        rounds = sorted({r for runs in sides.values() for r in runs})
        print(f"== {group}, rounds {rounds}")
        rows = {}
        for side, runs in sorted(sides.items()):
            rows[side] = [figures(out, runs[r]) if r in runs else (None,) * 4 for r in rounds]
            cols = list(zip(*rows[side]))
            print(
                f"  {side:4} deliveries/s {spread(cols[0])}  p99 ms {spread(cols[1])}"
                f"  CPU µs/delivery {spread(cols[2])}  writes/delivery {spread(cols[3])}"
            )
        for a, b in [("new", "old"), ("old", "nats"), ("new", "nats")]:
            if a in rows and b in rows:
                for i, label in [(1, "p99"), (0, "deliveries/s"), (2, "CPU/delivery")]:
                    ratio = [
                        x[i] / y[i] if x[i] and y[i] else None for x, y in zip(rows[a], rows[b])
                    ]
                    each = ", ".join("-" if r is None else f"{r:.2f}" for r in ratio)
                    print(f"    {a}/{b} {label}: {spread(ratio)}  rounds: {each}")


if __name__ == "__main__":
    main(sys.argv[1])
