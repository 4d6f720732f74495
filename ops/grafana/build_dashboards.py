#!/usr/bin/env python3
"""Writes the provisioned dashboards in ops/grafana/dashboards/ from this file.

The JSON files are committed (Grafana reads them as they are); this script is their source, so
panels stay uniform: every panel has a description saying what normal looks like, every query
names the provisioned datasource by uid, every server/client query is filtered by the $job and
$instance variables, and every server query also by $replica (the server instances: one for the
single-server stack, one per replica on a broker). `make ops-check` fails if the committed JSON differs from what this writes.

    python3 ops/grafana/build_dashboards.py          # rewrite the JSON files
    python3 ops/grafana/build_dashboards.py --check  # exit 1 if they are stale

Metric names are the ones the binaries export (ops/README.md, Observability) and the collector's
spanmetrics series (ops/otel-collector/spanmetrics-series.txt); the dashboard check runs every
query against a real Prometheus scraping the real binaries.
"""

import json
import sys
import urllib.parse
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
PROM = {"type": "prometheus", "uid": "prometheus"}
JAEGER = {"type": "jaeger", "uid": "jaeger"}
SEL = 'job=~"$job", instance=~"$instance"'
# Server series: also filtered by the replica variable (server instances only).
SRV = f'{SEL}, instance=~"$replica"'
QUANTILES = (0.5, 0.95, 0.99)


def explore_jaeger(service, operation=None):
    """A Grafana Explore URL that opens a Jaeger trace search."""
    query = {"refId": "A", "datasource": JAEGER, "queryType": "search", "service": service}
    if operation:
        query["operation"] = operation
    panes = {"a": {"datasource": "jaeger", "queries": [query], "range": {"from": "${__from}", "to": "${__to}"}}}
    encoded = urllib.parse.quote(json.dumps(panes, separators=(",", ":")))
    # Grafana interpolates ${__from}/${__to} (the panel's time range) in links before opening them.
    for var in ("__from", "__to"):
        encoded = encoded.replace(urllib.parse.quote("${%s}" % var), "${%s}" % var)
    return "/explore?schemaVersion=1&orgId=1&panes=" + encoded


TRACE_LINKS = [
    {"title": "SendMessage traces (Jaeger)", "url": explore_jaeger("messenger-server", "mes_grpc.MessengerServer/SendMessage")},
    {"title": "Client /sendMessage traces (Jaeger)", "url": explore_jaeger("messenger-client", "POST /sendMessage")},
]


class Layout:
    """Places panels left to right in rows of 24 grid units and numbers them."""

    def __init__(self):
        self.panels, self.x, self.y, self.row_h, self.next_id = [], 0, 0, 0, 1

    def row(self, title):
        self._newline()
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def add(self, panel, w=8, h=8):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self):
        self.y += self.row_h
        self.x, self.row_h = 0, 0

    def _id(self):
        self.next_id += 1
        return self.next_id - 1


def target(expr, legend, ref, **extra):
    return {"datasource": PROM, "expr": expr, "legendFormat": legend, "refId": ref, "range": True, **extra}


def timeseries(title, description, targets, unit="short", links=(), stack=False, **options):
    refs = "ABCDEFGHIJ"
    panel = {
        "type": "timeseries", "title": title, "description": description, "datasource": PROM,
        "targets": [target(e, legend, refs[i], **x) for i, (e, legend, *rest) in enumerate(targets)
                    for x in [rest[0] if rest else {}]],
        "fieldConfig": {"defaults": {"unit": unit, "custom": {"fillOpacity": 10, "showPoints": "never",
                                                              "stacking": {"mode": "normal" if stack else "none"}}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}, **options},
    }
    if links:
        panel["links"] = list(links)
    return panel


def quantiles(metric, selector, by="", unit="s", qs=QUANTILES):
    """histogram_quantile targets for each q, summed by `le` (and `by`)."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))",
             f"p{int(q * 100)}{suffix}") for q in qs]


def heatmap(title, description, expr, links=()):
    return {
        "type": "heatmap", "title": title, "description": description, "datasource": PROM,
        "targets": [target(expr, "{{le}}", "A", format="heatmap", interval="")],
        "options": {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1,
                    "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                    "tooltip": {"mode": "single", "yHistogram": True}},
        "links": list(links),
    }


def stat(title, description, expr, legend, unit="short", thresholds=None, mappings=None):
    steps = thresholds or [{"color": "green", "value": None}]
    return {
        "type": "stat", "title": title, "description": description, "datasource": PROM,
        "targets": [target(expr, legend, "A", instant=True, range=False)],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps},
                                     "mappings": mappings or []}, "overrides": []},
        "options": {"colorMode": "background", "graphMode": "none", "reduceOptions": {"calcs": ["lastNotNull"]}},
    }


def variables(job_query="up", instance_metric="up", replica_metric="messenger_subscribers"):
    def var(name, query):
        return {"name": name, "label": name, "type": "query", "datasource": PROM,
                "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
                "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "sort": 1,
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}

    return [var("job", f"label_values({job_query}, job)"),
            var("instance", f'label_values({instance_metric}{{job=~"$job"}}, instance)'),
            var("replica", f'label_values({replica_metric}{{job=~"$job"}}, instance)')]


def dashboard(uid, title, description, panels, templating, tags):
    return {
        "uid": uid, "title": title, "description": description, "tags": tags, "editable": False,
        "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-30m", "to": "now"},
        "timezone": "utc", "graphTooltip": 1, "liveNow": False, "annotations": {"list": []},
        "templating": {"list": templating}, "panels": panels,
        "links": [
            {"title": "Jaeger: messenger-server traces", "type": "link", "icon": "external link",
             "url": explore_jaeger("messenger-server"), "targetBlank": False},
            {"title": "Messenger dashboards", "type": "dashboards", "tags": ["messenger"], "asDropdown": True},
        ],
    }


def overview():
    server = f'{SRV}, grpc_service="mes_grpc.MessengerServer"'
    send = f'{server}, grpc_method="SendMessage"'
    L = Layout()

    L.row("SendMessage")
    L.add(timeseries(
        "Send rate by gRPC code",
        "SendMessage calls finished per second, by replica and grpc_code. Normal: all OK; InvalidArgument "
        "means bad input from callers, Unauthenticated/PermissionDenied refused credentials, "
        "Unavailable/DeadlineExceeded point at the server (on a broker, "
        "Unavailable also while that replica cannot reach Redis).",
        [(f"sum by (instance, grpc_code) (rate(grpc_server_handled_total{{{send}}}[$__rate_interval]))",
          "{{instance}} {{grpc_code}}")],
        unit="reqps", links=TRACE_LINKS, stack=True))
    L.add(timeseries(
        "SendMessage error ratio",
        "Share of SendMessage calls not OK. Normal: 0. The SendMessageErrorRatioHigh alert fires above 1% for 5 min.",
        [(f'sum(rate(grpc_server_handled_total{{{send}, grpc_code!="OK"}}[$__rate_interval])) / '
          f"sum(rate(grpc_server_handled_total{{{send}}}[$__rate_interval]))", "errors / calls")],
        unit="percentunit", links=TRACE_LINKS))
    L.add(timeseries(
        "SendMessage latency",
        "Server-side SendMessage duration: validate, stamp sendTime, hand to every subscriber queue. "
        "Normal: p99 well under 1 ms with few subscribers, a few ms with a thousand.",
        quantiles("grpc_server_handling_seconds", send), unit="s", links=TRACE_LINKS))

    L.row("Fan-out")
    L.add(heatmap(
        "Delivery latency (fan-out)",
        "Per subscriber and message: acceptance until written to that subscriber's stream. Normal: "
        "the mass sits below 1 ms; a band moving up means a slow subscriber or a saturated CPU.",
        f"sum by (le) (increase(messenger_delivery_latency_seconds_bucket{{{SRV}}}[$__rate_interval]))",
        links=TRACE_LINKS), w=12)
    L.add(timeseries(
        "Delivery latency p50 / p95 / p99",
        "Fan-out latency quantiles. Normal: p99 below 50 ms even with 1000 subscribers; the "
        "DeliveryLatencyP99High alert fires above 250 ms for 5 min.",
        quantiles("messenger_delivery_latency_seconds", SRV), unit="s", links=TRACE_LINKS), w=12)
    L.add(timeseries(
        "Fanout duration",
        "Time one SendMessage spends handing its message to every queue (under the hub lock). "
        "Normal: microseconds; it grows linearly with subscribers.",
        quantiles("messenger_fanout_duration_seconds", SRV), unit="s"))
    L.add(timeseries(
        "Subscribers",
        "Open ReadMessages streams per server. Normal: steady (each client holds one); drops and "
        "recoveries mean disconnects and reconnects.",
        [(f"sum by (instance) (messenger_subscribers{{{SRV}}})", "{{instance}}")]))
    L.add(timeseries(
        "Accepted × subscribers vs delivered",
        "Deliveries per second against messages fanned out times subscribers, per server: its "
        "accepted messages on the in-process engine, every stream entry its reader took on a broker "
        "(a replica also delivers what the others accepted). Normal: the two lines match; delivered "
        "below expected means messages were lost to slow-subscriber disconnects.",
        [(f"sum(rate(messenger_messages_delivered_total{{{SRV}}}[$__rate_interval]))", "delivered"),
         (f"sum((rate(messenger_broker_read_lag_seconds_count{{{SRV}}}[$__rate_interval]) "
          f"or rate(messenger_messages_accepted_total{{{SRV}}}[$__rate_interval])) "
          f"* on (job, instance) messenger_subscribers{{{SRV}}})", "fanned out × subscribers")],
        unit="ops"))
    L.add(timeseries(
        "Subscriber disconnects by reason",
        "Ended ReadMessages streams: cancelled (client went away), slow (fell MESSENGER_SUBSCRIBER_QUEUE "
        "behind and was cut off), shutdown, error. Normal: no slow at all; SlowConsumerDisconnects fires on any.",
        [(f"sum by (reason) (increase(messenger_subscriber_disconnects_total{{{SRV}}}[$__rate_interval]))",
          "{{reason}}")], stack=True), w=12)
    L.add(timeseries(
        "Accepted messages",
        "Messages accepted per second. Normal: follows the send rate; zero with callers active means "
        "every call fails.",
        [(f"sum by (instance) (rate(messenger_messages_accepted_total{{{SRV}}}[$__rate_interval]))",
          "{{instance}}")], unit="ops", links=TRACE_LINKS), w=12)

    L.row("Broker (Redis Streams, MESSENGER_BROKER_URL)")
    L.add(stat(
        "Broker up per replica",
        "1 while the replica reaches Redis. Normal: up for every replica. Down: that replica's "
        "SendMessage answers UNAVAILABLE and its health is NOT_SERVING until Redis is back; BrokerDown "
        "fires after 30 s. Empty on the in-process engine (no MESSENGER_BROKER_URL).",
        f"messenger_broker_up{{{SRV}}}", "{{instance}}",
        thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}],
        mappings=[{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                                "1": {"text": "up", "color": "green"}}}]), w=6)
    L.add(timeseries(
        "Broker publish latency p50 / p99",
        "SendMessage's broker hop per replica: from queueing the message until the atomic script that "
        "stamps sendTime and XADDs it answered. Concurrent sends share one script call (see batch "
        "size). Normal: about one network round trip (sub-ms on one host, a few ms across a network); "
        "under load up to two, while the call ahead finishes.",
        quantiles("messenger_broker_publish_seconds", SRV, by="instance", qs=(0.5, 0.99)), unit="s",
        links=TRACE_LINKS), w=9)
    L.add(timeseries(
        "Broker read lag p99 per replica",
        "From the XADD in Redis until this replica's reader took the entry (measured against Redis "
        "TIME, so clock skew between hosts adds to it). Normal: about 1 ms; BrokerReadLagHigh fires "
        "above 500 ms for 5 min. One replica high and the others low points at that replica.",
        quantiles("messenger_broker_read_lag_seconds", SRV, by="instance", qs=(0.99,)), unit="s"), w=9)
    L.add(timeseries(
        "Broker errors by op",
        "Failed broker operations per replica: publish (the send script), read (the reader's XREAD), "
        "load (history for a resume), decode (a malformed stream entry, skipped with a warning). "
        "Normal: none; publish and read errors while Redis is down, decode when something else "
        "writes to the stream.",
        [(f"sum by (instance, op) (increase(messenger_broker_errors_total{{{SRV}}}[$__rate_interval]))",
          "{{instance}} {{op}}")], stack=True), w=8)
    L.add(timeseries(
        "Broker publish batch size p50 / p99",
        "Messages per publish script call on each replica: concurrent sends share one call and one "
        "round trip (group commit, up to 128). Normal: 1 at low load, growing with concurrent "
        "senders; a p99 near 128 means the replica publishes at its limit.",
        quantiles("messenger_broker_publish_batch_messages", SRV, by="instance", qs=(0.5, 0.99))),
        w=8)
    L.add(timeseries(
        "Stream entries read per replica",
        "Entries each replica's one reader took from the stream per second. Normal: the same rate on "
        "every replica (each reads the whole chat once), equal to the sum of the replicas' send rates.",
        [(f"sum by (instance) (rate(messenger_broker_read_lag_seconds_count{{{SRV}}}[$__rate_interval]))",
          "{{instance}}")], unit="ops"), w=8)

    L.add(timeseries(
        "Broker refusals, room made, WAIT timeouts",
        "Writes Redis refused for a reason a resend cannot fix, by reason (oom, auth, noperm, "
        "wrongtype, noscript, readonly, misconf: the replica is NOT_SERVING until a probe gets "
        "through, BrokerRefusesWrites fires); times a replica trimmed the stream because Redis was at "
        "maxmemory (BrokerStreamTrimmedForMemory); batches fewer replicas than "
        "MESSENGER_BROKER_MIN_REPLICAS confirmed in time (their sends answered UNAVAILABLE, outcome "
        "unknown). Normal: none.",
        [(f"sum by (instance, reason) (increase(messenger_broker_refusals_total{{{SRV}}}[$__rate_interval]))",
          "{{instance}} refused {{reason}}"),
         (f"sum by (instance) (increase(messenger_broker_room_made_total{{{SRV}}}[$__rate_interval]))",
          "{{instance}} room made"),
         (f"sum by (instance) (increase(messenger_broker_wait_timeouts_total{{{SRV}}}[$__rate_interval]))",
          "{{instance}} WAIT timed out")]), w=24)

    L.row("Broker failover (Redis Sentinel, redis+sentinel://)")
    L.add(timeseries(
        "Failovers followed",
        "Times each replica moved its publisher and reader to a new Redis primary (Sentinel "
        "+switch-master, a READONLY answer, a connection failure or the periodic re-resolve found "
        "another primary). Normal: none; one failover shows once on every replica, and BrokerFailover "
        "fires for 15 minutes. Sends answer UNAVAILABLE (fail fast) while a replica moves.",
        [(f"sum by (instance) (increase(messenger_broker_failovers_total{{{SRV}}}[$__rate_interval]))",
          "{{instance}}")]), w=6)
    L.add(timeseries(
        "Primary in use per replica",
        "The Redis primary (server_address:server_port) each replica publishes to and reads from "
        "(the info series at 1; a primary used before stays at 0). Normal: every replica on the same primary; a line moving to another address is a "
        "failover. Two replicas on different primaries for more than a few seconds means one did not "
        "follow (look for BrokerReaderStalled and its log).",
        [(f"messenger_broker_primary_info{{{SRV}}} == 1",
          "{{instance}} → {{server_address}}:{{server_port}}")]), w=6)
    L.add(timeseries(
        "WAIT timeouts",
        "Batches stored on the primary that fewer than MESSENGER_BROKER_MIN_REPLICAS replicas "
        "confirmed in time (Redis WAIT): their sends answered UNAVAILABLE with the outcome unknown. "
        "Normal: none; a burst around a failover (a replica lost or resyncing), steady ones mean a "
        "replica lags or is missing (INFO replication on the primary).",
        [(f"sum by (instance) (increase(messenger_broker_wait_timeouts_total{{{SRV}}}[$__rate_interval]))",
          "{{instance}}")]), w=6)
    L.add(timeseries(
        "Reader stalls",
        "Times a replica's stream reader made no progress while its own publishes succeeded (a "
        "wedged connection, a reader left on a former primary): the replica turned NOT_SERVING "
        "within twice MESSENGER_BROKER_TIMEOUT_MS and reconnected its reader. Normal: none; "
        "BrokerReaderStalled fires for 10 minutes after one.",
        [(f"sum by (instance) (increase(messenger_broker_reader_stalls_total{{{SRV}}}[$__rate_interval]))",
          "{{instance}}")]), w=6)

    L.row("History and resume")
    L.add(timeseries(
        "History size (messages)",
        "Messages held for resuming subscribers. Normal: grows to MESSENGER_HISTORY_SIZE and stays "
        "there, or lower when MESSENGER_HISTORY_BYTES is reached first; resets at a server restart.",
        [(f"messenger_history_messages{{{SRV}}}", "{{instance}}")]))
    L.add(timeseries(
        "History size (bytes)",
        "Accounted bytes of history (author, text, traceparent, a fixed overhead per message). "
        "Normal: at most MESSENGER_HISTORY_BYTES (64 MiB by default).",
        [(f"messenger_history_bytes{{{SRV}}}", "{{instance}}")], unit="bytes"))
    L.add(timeseries(
        "Resumes by result",
        "ReadMessages calls with messenger-since, on the server and in the clients. Normal: recovered "
        "after every reconnect; gap means a client missed messages (evicted, or a server restart) and "
        "ResumeGaps fires.",
        [(f"sum by (result) (increase(messenger_resumes_total{{{SRV}}}[$__rate_interval]))",
          "server {{result}}"),
         (f"sum by (instance, result) (increase(messenger_client_resumes_total{{{SEL}}}[$__rate_interval]))",
          "{{instance}} {{result}}")]))
    L.add(timeseries(
        "Replayed and recovered messages",
        "Messages the server wrote from history to resuming subscribers, and the clients received "
        "from it. Normal: 0 between reconnects; a burst after each one.",
        [(f"sum(rate(messenger_replayed_messages_total{{{SRV}}}[$__rate_interval]))", "replayed (server)"),
         (f"sum by (instance) (rate(messenger_client_recovered_messages_total{{{SEL}}}[$__rate_interval]))",
          "recovered {{instance}}")], unit="ops"), w=24)

    L.row("Clients")
    L.add(timeseries(
        "Client buffered messages",
        "What /getAndFlushMessages would return now, per client. Normal: a sawtooth back to 0 at each "
        "flush; a climb to MESSENGER_CLIENT_BUFFER_LIMIT means nobody flushes and drops start.",
        [(f"messenger_client_buffered_messages{{{SEL}}}", "{{instance}}")]))
    L.add(timeseries(
        "Client received and dropped",
        "Messages streamed into each client's buffer, and dropped (oldest first) on overflow. "
        "Normal: received equals the server's accepted rate, dropped is 0.",
        [(f"sum by (instance) (rate(messenger_client_received_total{{{SEL}}}[$__rate_interval]))",
          "received {{instance}}"),
         (f"sum by (instance) (rate(messenger_client_dropped_total{{{SEL}}}[$__rate_interval]))",
          "dropped {{instance}}")], unit="ops"))
    L.add(timeseries(
        "Client end-to-end latency",
        "Receipt in the client minus the message's sendTime: the whole path server to client buffer. "
        "Normal: p99 in the low milliseconds on one host.",
        quantiles("messenger_client_end_to_end_latency_seconds", SEL), unit="s", links=TRACE_LINKS))
    L.add(timeseries(
        "Client HTTP p99 latency by route",
        "99th percentile of the client's HTTP handling time per route. Normal: /sendMessage about one "
        "gRPC round trip (sub-ms to a few ms), the others under 1 ms.",
        quantiles("http_server_request_duration_seconds", SEL, by="route", qs=(0.99,)), unit="s",
        links=TRACE_LINKS))
    L.add(timeseries(
        "Client HTTP requests by route and status",
        "Requests per second per route and status. Normal: 200s; 400 is bad input, 503 means the "
        "client has no server, 504 a SendMessage deadline.",
        [(f"sum by (route, status) (rate(http_server_requests_total{{{SEL}}}[$__rate_interval]))",
          "{{route}} {{status}}")], unit="reqps"))
    L.add(timeseries(
        "Client calls to the server by code",
        "The clients' gRPC calls by method and code. Normal: SendMessage OK; ReadMessages ends only "
        "on reconnects.",
        [(f"sum by (grpc_method, grpc_code) (rate(grpc_client_handled_total{{{SEL}}}[$__rate_interval]))",
          "{{grpc_method}} {{grpc_code}}")], unit="reqps"))
    L.add(timeseries(
        "Stream connected per client",
        "1 while the client is subscribed to ReadMessages. Normal: 1 for every client; "
        "ClientStreamDisconnected fires after a minute at 0.",
        [(f"messenger_client_stream_connected{{{SEL}}}", "{{instance}}")], unit="bool"), w=12)
    L.add(timeseries(
        "Stream reconnects per client",
        "Re-subscriptions after the first, per client. Normal: 0; a burst follows a server restart "
        "or a slow-subscriber disconnect.",
        [(f"sum by (instance) (increase(messenger_client_stream_reconnects_total{{{SEL}}}[$__rate_interval]))",
          "{{instance}}")]), w=12)
    L.add(timeseries(
        "Browser event streams open (/events)",
        "GET /events streams (the page at / and other Server-Sent Events readers) open per client; "
        "each is also a subscriber on the server. Normal: one per open browser tab, below "
        "MESSENGER_MAX_EVENT_STREAMS (256), past which new ones get 503.",
        [(f"messenger_client_event_streams{{{SEL}}}", "{{instance}}")]), w=12)
    L.add(timeseries(
        "Browser events, resumes and gaps",
        "Events sent to /events streams per second; resumes (Last-Event-ID or ?since) by result; gap "
        "events (a resume the server's history could not cover: the page shows 'messages were lost "
        "here'); streams cut for falling a whole queue behind. Normal: sent follows the chat times the "
        "open tabs, resumes recovered after reconnects, gaps and cuts 0.",
        [(f"sum by (instance) (rate(messenger_client_events_sent_total{{{SEL}}}[$__rate_interval]))",
          "sent {{instance}}"),
         (f"sum by (instance, result) (increase(messenger_client_event_resumes_total{{{SEL}}}[$__rate_interval]))",
          "resumes {{result}} {{instance}}"),
         (f"sum by (instance) (increase(messenger_client_event_gaps_total{{{SEL}}}[$__rate_interval]))",
          "gaps {{instance}}"),
         (f"sum by (instance) (increase(messenger_client_event_streams_cut_total{{{SEL}}}[$__rate_interval]))",
          "cut {{instance}}")]), w=12)

    L.row("Processes")
    L.add(timeseries(
        "CPU",
        "CPU seconds per second per process (1 = one core). Normal: near 0 idle; the server is "
        "bounded by its cpus limit in compose.",
        [(f"rate(process_cpu_seconds_total{{{SEL}}}[$__rate_interval])", "{{instance}}")], unit="short"))
    L.add(timeseries(
        "Resident memory",
        "RSS per process. Normal: a few MiB idle, about 30 KiB more per open subscriber on the server; "
        "steady growth at constant load would be a leak.",
        [(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")], unit="bytes"))
    L.add(timeseries(
        "Open file descriptors",
        "Open fds per process against its limit. Normal: about one per connection plus a dozen; the "
        "server raises its soft limit to the hard limit at start.",
        [(f"process_open_fds{{{SEL}}}", "{{instance}}"),
         (f"process_max_fds{{{SEL}}}", "max {{instance}}")]))
    L.add(timeseries(
        "Closed connections by listener and reason",
        "TCP connections closed per second on every port (grpc and metrics on the server, http on "
        "the clients): handshake_timeout (no request within MESSENGER_HANDSHAKE_TIMEOUT_MS), "
        "idle_timeout (nothing in flight for MESSENGER_IDLE_TIMEOUT_MS), shutdown, ended (by the "
        "peer, an error or a graceful close). Normal: ended only; a rise in handshake_timeout means "
        "something opens connections and never speaks.",
        [(f"sum by (listener, reason) (rate(messenger_connections_closed_total{{{SEL}}}[$__rate_interval]))",
          "{{listener}} {{reason}}")], stack=True), w=24)

    L.row("Traces")
    L.add({
        "type": "table", "title": "Recent SendMessage traces",
        "description": "The latest SendMessage traces in Jaeger; click a trace id to open the whole tree "
                       "(client HTTP span, client and server RPC spans, fanout, one deliver and receive per "
                       "subscriber). Normal: a few ms end to end.",
        "datasource": JAEGER,
        "targets": [{"datasource": JAEGER, "refId": "A", "queryType": "search", "service": "messenger-server",
                     "operation": "mes_grpc.MessengerServer/SendMessage", "limit": 20}],
        "links": TRACE_LINKS,
    }, w=24, h=9)
    return dashboard(
        "messenger-overview", "Messenger overview",
        "Fan-out latency, throughput, subscribers, clients and processes of the messenger stack.",
        L.panels, variables(), ["messenger"])


def spans():
    svc = 'service_name=~"$service"'
    calls, dur = "traces_span_metrics_calls_total", "traces_span_metrics_duration_seconds"
    L = Layout()
    L.row("RED metrics from spans (collector spanmetrics connector)")
    L.add(timeseries(
        "Span rate by operation",
        "Spans per second by service and span name, derived by the collector from the traces. "
        "Normal: POST /sendMessage, the two SendMessage RPC spans and fanout at the send rate; "
        "deliver and receive at send rate × subscribers.",
        [(f"sum by (service_name, span_name) (rate({calls}{{{svc}}}[$__rate_interval]))",
          "{{service_name}} {{span_name}}")], unit="ops", links=TRACE_LINKS), w=12)
    L.add(timeseries(
        "Error spans by operation",
        "Spans with status ERROR per second. Normal: none; each one is a trace to open in Jaeger.",
        [(f'sum by (service_name, span_name) (rate({calls}{{{svc}, status_code="STATUS_CODE_ERROR"}}[$__rate_interval]))',
          "{{service_name}} {{span_name}}")], unit="ops", links=TRACE_LINKS), w=12)
    L.add(timeseries(
        "p99 duration by operation",
        "99th percentile span duration per service and span name; points are exemplars that open "
        "their trace. Normal: RPC spans sub-ms to a few ms; deliver spans track the delivery latency.",
        [(f"histogram_quantile(0.99, sum by (le, service_name, span_name) (rate({dur}_bucket{{{svc}}}[$__rate_interval])))",
          "{{service_name}} {{span_name}}", {"exemplar": True})], unit="s", links=TRACE_LINKS), w=12)
    L.add(timeseries(
        "SendMessage server span p50 / p95 / p99",
        "Duration of the server's SendMessage span. Normal: matches the SendMessage latency panel "
        "of the overview (same work, measured from the trace).",
        quantiles(dur, f'{svc}, span_name="mes_grpc.MessengerServer/SendMessage", span_kind="SPAN_KIND_SERVER"'),
        unit="s", links=TRACE_LINKS), w=12)
    L.add(timeseries(
        "fanout span p99",
        "fanout stays open until the last subscriber took the message, so its p99 is the slowest "
        "delivery per message. Normal: close to the overview's delivery p99.",
        quantiles(dur, f'{svc}, span_name="fanout"', qs=(0.99,)), unit="s", links=TRACE_LINKS), w=12)
    L.add(timeseries(
        "Client HTTP spans by route and status",
        "Client HTTP server spans per second by route and response status. Normal: 200s only.",
        [(f"sum by (http_route, http_response_status_code) (rate({calls}{{{svc}, span_kind=\"SPAN_KIND_SERVER\", http_route!=\"\"}}[$__rate_interval]))",
          "{{http_route}} {{http_response_status_code}}")], unit="reqps", links=TRACE_LINKS), w=12)
    service_var = {"name": "service", "label": "service", "type": "query", "datasource": PROM,
                   "query": {"query": f"label_values({calls}, service_name)", "refId": "service-var"},
                   "definition": f"label_values({calls}, service_name)", "includeAll": True, "multi": True,
                   "allValue": ".*", "refresh": 2, "sort": 1,
                   "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}
    return dashboard(
        "messenger-spans", "Messenger span metrics",
        "RED metrics that the OpenTelemetry collector's spanmetrics connector derives from the traces.",
        L.panels, [service_var], ["messenger"])


def render():
    return {"messenger-overview.json": overview(), "messenger-spans.json": spans()}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, model in render().items():
        text = json.dumps(model, indent=2, ensure_ascii=False) + "\n"
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("stale dashboards (run python3 ops/grafana/build_dashboards.py):", *stale, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
