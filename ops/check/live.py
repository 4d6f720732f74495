#!/usr/bin/env python3
"""The dashboards and alert rules against a real Prometheus scraping the real binaries.

1. Starts messenger-server and two messenger-clients (release binaries, free ports, a small
   MESSENGER_SUBSCRIBER_QUEUE) and the Debian `prometheus` binary (free port, temp storage),
   scraping them every second. Its config is ops/prometheus/prometheus.yml with each compose
   target rewritten to the native process standing in for that service; the collector's jobs
   have no native stand-in and are dropped (and said so).
2. Drives traffic through both clients, plus a raw HTTP/2 subscriber that never reads, so the
   server disconnects it as slow, and one oversized author (InvalidArgument).
3. Runs every PromQL expression of every dashboard panel, template variable and alert rule
   through the HTTP API, with Grafana's variables substituted.
4. Fails if a query errors, if a metric it names was not scraped (span-metric names, which only
   the collector exports, are checked against ops/otel-collector/spanmetrics-series.txt), if a
   core panel returns no data, or if the SlowConsumerDisconnects alert does not fire.

Broker mode (--broker on; `auto`, the default, turns it on when messenger-server --help lists
--broker-url): the topology of ops/compose/scale.yml instead, scraped with
ops/prometheus/prometheus-scale.yml: a Redis primary, two replicas and three Sentinels on free
loopback ports (broker.py), two server replicas on them (MESSENGER_BROKER_URL=redis+sentinel://),
client1 on replica A (with the slow subscriber), client2 on replica B. Then every broker panel and
broker alert quantity (messenger_broker_*) must return data, and both replicas must report
messenger_broker_up 1; then the primary is killed (-9): both replicas must follow the failover
(messenger_broker_primary_info names the new primary, messenger_broker_failovers_total 1) and
BrokerFailover must fire for each; finally Redis is stopped, and both must report 0 and the
BrokerDown alert must fire for each (about 30 s, its `for`). Without a broker those queries still run, but
their metrics are not required to exist or to return data (they are listed as skipped).

Every wait is on an event (a log line, /-/ready, target health, a series value), bounded by a
timeout. Usage: live.py [--bin-dir target/release] [--prometheus prometheus] [--broker auto|on|off]
[--redis-server redis-server]
"""

import argparse
import json
import math
import re
import shutil
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import broker
import promql
from native import SUBSCRIBER_QUEUE, TIMEOUT, NativeStack, http, wait_for
from slow_subscriber import SlowSubscriber

CORE_PANELS = {"Send rate by gRPC code", "Delivery latency p50 / p95 / p99", "Subscribers",
               "Accepted × subscribers vs delivered"}
BROKER_METRIC_PREFIX = "messenger_broker_"




class Prometheus:
    def __init__(self, url):
        self.url = url

    def api(self, path, **params):
        status, body = http("GET", f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        data = json.loads(body)
        if status != 200 or data.get("status") != "success":
            raise ValueError(f"{path} {params}: HTTP {status}: {data.get('error', body[:200])}")
        return data["data"]

    def value(self, expr):
        """The first sample of an instant query, or None."""
        result = self.api("query", query=expr)["result"]
        return float(result[0]["value"][1]) if result else None


def drive_traffic(stack, prom):
    c1, c2 = (f"http://{stack.targets[c]}" for c in ("client1", "client2"))
    send = lambda base, author, text: http("POST", f"{base}/sendMessage",
                                           json.dumps({"author": author, "text": text}).encode())
    slow = SlowSubscriber(*stack.grpc)
    wait_for("3 subscribers in Prometheus", lambda: prom.value("sum(messenger_subscribers)") == 3)
    accepted = 0
    # Enough messages to fill the slow subscriber's queue (its window is 0, so nothing drains it).
    for i in range(4 * int(SUBSCRIBER_QUEUE)):
        status, body = send(c1 if i % 2 else c2, "loader", "x" * 2048)
        assert status == 200, (status, body)
        accepted += 1
    wait_for('messenger_subscriber_disconnects_total{reason="slow"} >= 1 in Prometheus',
             lambda: (prom.value('sum(messenger_subscriber_disconnects_total{reason="slow"})') or 0) >= 1)
    slow.close()
    status, _ = send(c1, "a" * 300, "author over the 256-byte limit")
    assert status == 400, status  # the server's InvalidArgument, mapped by the client
    # Steady traffic for a few scrape intervals, flushing the buffers as a user would.
    end = time.monotonic() + 6
    while time.monotonic() < end:
        for base in (c1, c2):
            assert send(base, "steady", "hello")[0] == 200
            accepted += 1
            assert http("POST", f"{base}/getAndFlushMessages")[0] == 200
        time.sleep(0.05)  # pacing of the load, not a readiness wait
    # Calls answered OK, summed over the replicas, whichever replica delivered what.
    ok_sends = 'sum(grpc_server_handled_total{grpc_method="SendMessage", grpc_code="OK"})'
    wait_for(f"{ok_sends} == {accepted} in Prometheus", lambda: prom.value(ok_sends) == accepted)
    if len(stack.replicas) > 1:
        wait_for("messenger_broker_up 1 on every replica in Prometheus",
                 lambda: prom.value("sum(messenger_broker_up)") == len(stack.replicas))
    return accepted


def firing(prom, alertname):
    return {a["labels"].get("instance") for a in prom.api("alerts")["alerts"]
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"}


def failover(stack, prom):
    """Kills the primary: every replica must move to the one the Sentinels promote, count one
    failover, report messenger_broker_up 1 again, and BrokerFailover must fire for each."""
    n = len(stack.replicas)
    old = stack.kill_primary()
    in_use = 'messenger_broker_primary_info == 1'
    moved = lambda: [r["metric"].get("server_port") for r in prom.api("query", query=in_use)["result"]]
    wait_for(f"both replicas on a primary other than port {old} in Prometheus",
             lambda: len(moved()) == n and str(old) not in moved(), timeout=TIMEOUT + 30)
    wait_for("messenger_broker_failovers_total 1 and messenger_broker_up 1 on every replica",
             lambda: prom.value("sum(messenger_broker_failovers_total)") == n
             and prom.value("sum(messenger_broker_up)") == n)
    wait_for(f"alert BrokerFailover firing for all {n} replicas", lambda: len(firing(prom, "BrokerFailover")) == n)
    print(f"  primary killed (port {old}): both replicas on port {moved()[0]}, one failover each, "
          f"BrokerFailover firing on {n} replicas")


def broker_down(stack, prom):
    """Stops Redis: every replica must report messenger_broker_up 0 and BrokerDown must fire for
    each (its `for` is 30 s, so this takes about that long)."""
    stack.stop_redis()
    wait_for("messenger_broker_up 0 on every replica in Prometheus",
             lambda: prom.value("sum(messenger_broker_up)") == 0 and
             prom.value("count(messenger_broker_up)") == len(stack.replicas))
    wait_for(f"alert BrokerDown firing for all {len(stack.replicas)} replicas",
             lambda: len(firing(prom, "BrokerDown")) == len(stack.replicas), timeout=TIMEOUT + 30)
    print(f"  Redis stopped: messenger_broker_up 0 and BrokerDown firing on {len(stack.replicas)} replicas")


def has_data(result):
    for series in result:
        for _, v in series.get("values", []):
            if not math.isnan(float(v)):
                return True
    return False


def without_threshold(expr):
    """An alert expression without its final comparison with a constant: the quantity it watches."""
    m = re.fullmatch(r"(.*?)\s*(?:>|<|==|!=|>=|<=)\s*[0-9.]+\s*", expr, re.S)
    return m.group(1) if m else None


def run_queries(prom, start, scraped, with_broker):
    spanmetrics = promql.spanmetrics_series()
    queries = promql.all_queries(CORE_PANELS)
    # An alert is quiet on a healthy stack, so its condition returns nothing; the quantity it
    # compares must still return data, which proves the expression watches real series.
    for q in [q for q in queries if q.source.startswith("rule ")]:
        inner = without_threshold(q.expr)
        if inner is None:
            raise SystemExit(f"FAIL: {q.source}: no final comparison with a constant in {q.expr!r}")
        queries.append(promql.Query(f"{q.source} (without threshold)", inner, core=True,
                                    metrics=promql.metric_names(inner)))
    failures, with_data, empty, skipped = [], 0, [], []
    for q in queries:
        is_broker = lambda name: name.startswith(BROKER_METRIC_PREFIX)
        on_broker = any(is_broker(name) for name in q.metrics)
        broker_only = on_broker and all(is_broker(name) for name in q.metrics)
        if with_broker:
            # Broker panels must show data on a broker (an alert's condition stays quiet; its
            # thresholdless quantity is already core).
            q.core = q.core or (on_broker and q.source.startswith("dashboard "))
        elif broker_only:
            q.core = False  # nothing exports these without a broker; the query must still run
        try:
            result = prom.api("query_range", query=q.expr, start=f"{start:.3f}", end=f"{time.time():.3f}", step="1")
        except ValueError as e:
            failures.append(f"{q.source}: query failed: {e}")
            continue
        for name in sorted(q.metrics):
            known = spanmetrics if name.startswith("traces_span_metrics_") else scraped
            if name not in known and not (is_broker(name) and not with_broker):
                where = "the collector's spanmetrics list" if known is spanmetrics else "what Prometheus scraped"
                failures.append(f"{q.source}: metric {name} is not in {where}")
        if has_data(result["result"]):
            with_data += 1
        elif broker_only and not with_broker:
            skipped.append(q)
        else:
            empty.append(q)
            if q.core:
                failures.append(f"{q.source}: core panel returned no data: {q.expr}")
    return queries, with_data, empty, skipped, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = promql.OPS.parent
    parser.add_argument("--bin-dir", type=Path, default=repo / "target" / "release")
    parser.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    parser.add_argument("--broker", choices=("auto", "on", "off"), default="auto",
                        help="two replicas on a redis-server (auto: when the server has --broker-url)")
    parser.add_argument("--redis-server", default=None, help="redis-server binary (default: on PATH)")
    args = parser.parse_args()
    server_bin = args.bin_dir.resolve() / "messenger-server"
    with_broker = args.broker == "on" or (args.broker == "auto" and broker.server_has_broker(server_bin))
    redis_bin = broker.redis_server_bin(args.redis_server) if with_broker else None
    workdir = Path(tempfile.mkdtemp(prefix="ops-check-"))
    stack = None
    try:
        if with_broker:
            print("dashboard check: a Redis primary, 2 replicas and 3 Sentinels, 2 native server replicas on them, "
                  "2 clients (one per replica) "
                  "and Prometheus (prometheus-scale.yml)")
        else:
            print("dashboard check: native server, 2 clients and Prometheus "
                  "(the plain stack: no broker)")
        stack = NativeStack(args.bin_dir.resolve(), args.prometheus, workdir, redis_bin)
        prom = Prometheus(stack.prom_url)
        wait_for("Prometheus /-/ready", lambda: http("GET", f"{stack.prom_url}/-/ready", timeout=2)[0] == 200)
        expected = len([t for t in stack.targets])
        wait_for(f"{expected} scrape targets up",
                 lambda: [t["health"] for t in prom.api("targets")["activeTargets"]].count("up") == expected)
        start = time.time() - 2
        accepted = drive_traffic(stack, prom)
        wait_for("alert SlowConsumerDisconnects firing",
                 lambda: any(a["labels"]["alertname"] == "SlowConsumerDisconnects" and a["state"] == "firing"
                             for a in prom.api("alerts")["alerts"]))
        scraped = set(prom.api("label/__name__/values"))
        queries, with_data, empty, skipped, failures = run_queries(prom, start, scraped, with_broker)
        print(f"  traffic: {accepted} messages accepted over {len(stack.replicas)} replica(s), "
              "1 slow subscriber disconnected, 1 InvalidArgument")
        print(f"  {len(queries)} queries ran (dashboard panels, template variables, alert rules and "
              f"their thresholdless quantities); "
              f"{with_data} returned data, {len(empty)} empty, {len(skipped)} skipped:")
        for q in empty:
            print(f"    empty: {q.source}")
        for q in skipped:
            print(f"    skipped (no broker): {q.source}")
        if failures:
            print("FAIL:", *failures, sep="\n  ")
            sys.exit(1)
        if stack.redis:
            failover(stack, prom)
            broker_down(stack, prom)
        print("dashboard check: OK")
    finally:
        if stack:
            stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
