"""The native stand-in for the compose stack that live.py checks the dashboards against.

messenger-server (or two replicas on a throwaway Redis primary, two replicas and three Sentinels), two messenger-clients and the
Debian prometheus binary, each on a free loopback port, with the compose prometheus.yml (or
prometheus-scale.yml) rewritten to their ports. Every wait is on an event (a log line), bounded
by a timeout.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import yaml

import broker
import promql

TIMEOUT = 60.0
SUBSCRIBER_QUEUE = "16"
# compose target -> native stand-in key (see NativeStack.targets)
COMPOSE_TARGETS = {"server:9464": "server", "server-a:9464": "server", "server-b:9464": "server-b",
                   "client1:8080": "client1", "client2:8081": "client2", "localhost:9090": "prometheus"}


def wait_for(what, predicate, timeout=TIMEOUT, interval=0.2):
    """Polls predicate() until it returns something truthy; fails after timeout."""
    deadline, last_error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError, KeyError) as e:
            last_error = e
        time.sleep(interval)
    raise SystemExit(f"FAIL: timed out after {timeout}s waiting for {what} (last error: {last_error})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Proc:
    """A child process whose output is collected; wait_line blocks until a pattern appears."""

    def __init__(self, name, argv, env=None, cwd=None):
        self.name, self.lines, self.cond = name, [], threading.Condition()
        self.popen = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.popen.stdout:
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip())
                self.cond.notify_all()

    def wait_line(self, pattern, timeout=TIMEOUT, count=1):
        """The first match of pattern in the output, once `count` lines match."""
        regex, deadline = re.compile(pattern), time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in map(regex.search, self.lines) if m]
                if len(found) >= count:
                    return found[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.popen.poll() is not None:
                    tail = "\n".join(self.lines[-20:])
                    raise SystemExit(f"FAIL: {self.name}: no line matching {pattern!r}\n{tail}")
                self.cond.wait(min(remaining, 0.5))

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class NativeStack:
    """server + client1 + client2, or with redis_bin two replicas on a redis-server: server
    (replica A, client1 and the slow subscriber) and server-b (replica B, client2)."""

    def __init__(self, bin_dir, prometheus_bin, workdir, redis_bin=None):
        self.procs, self.workdir, self.redis = [], workdir, []
        self.replicas = ["server", "server-b"] if redis_bin else ["server"]
        base = {"NO_COLOR": "1", "RUST_LOG": "info"}
        for key in list(os.environ):
            if key.startswith(("MESSENGER_", "OTEL_")):
                base[key] = ""  # the stack is configured only by what follows
        server_env = {**base, "MESSENGER_SERVER_HOST": "127.0.0.1", "MESSENGER_SERVER_PORT": "0",
                      "MESSENGER_METRICS_PORT": "0", "MESSENGER_SUBSCRIBER_QUEUE": SUBSCRIBER_QUEUE}
        if redis_bin:
            server_env.update(self.start_redis(redis_bin))
        self.targets, grpc_ports = {}, {}
        for name in self.replicas:
            server = self._spawn(name, [bin_dir / "messenger-server"], server_env)
            m = server.wait_line(r"grpc_addr=([\d.]+):(\d+) metrics_addr=[\d.]+:(\d+)")
            grpc_ports[name] = int(m.group(2))
            self.targets[name] = f"127.0.0.1:{m.group(3)}"
        self.grpc = ("127.0.0.1", grpc_ports["server"])
        for name, replica in (("client1", "server"), ("client2", self.replicas[-1])):
            client = self._spawn(name, [bin_dir / "messenger-client"], {
                **base, "MESSENGER_SERVER_ADDR": f"127.0.0.1:{grpc_ports[replica]}",
                "MESSENGER_HTTP_HOST": "127.0.0.1", "MESSENGER_HTTP_PORT": "0"})
            port = client.wait_line(r"http_addr=[\d.]+:(\d+)").group(1)
            self.targets[name] = f"127.0.0.1:{port}"
        self.targets["prometheus"] = f"127.0.0.1:{free_port()}"
        self.prom_url = f"http://{self.targets['prometheus']}"
        config = self.native_config()
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.prometheus = self._spawn("prometheus", [
            prometheus_bin, f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address={self.targets['prometheus']}"])

    def start_redis(self, redis_bin):
        """The primary (redis-1), its replicas and the Sentinels, as docker-compose.yml has them;
        returns the servers' broker settings (the Sentinel URL, MIN_REPLICAS 1 as scale.yml)."""
        ports = [free_port() for _ in range(3)]
        for i, port in enumerate(ports):
            node = self._spawn(f"redis-{i + 1}", broker.redis_argv(redis_bin, port, self.workdir,
                                                                   ports[0] if i else None))
            node.wait_line(broker.REDIS_READY)
            self.redis.append((port, node))
        for _, node in self.redis[1:]:
            node.wait_line(broker.REPLICA_SYNCED)
        sentinel_ports = [free_port() for _ in range(3)]
        sentinels = [self._spawn(f"sentinel-{i + 1}", broker.sentinel_argv(redis_bin, port, ports[0], self.workdir))
                     for i, port in enumerate(sentinel_ports)]
        for s in sentinels:
            s.wait_line(broker.SENTINEL_SEES_REPLICA, count=2)
            s.wait_line(broker.SENTINEL_SEES_SENTINEL, count=2)
        return {broker.ENV_BROKER_URL: broker.sentinel_url(sentinel_ports),
                broker.ENV_BROKER_MIN_REPLICAS: "1", broker.ENV_BROKER_STREAM: "messenger:ops-check"}

    def kill_primary(self):
        """kill -9 of the first primary (redis-1); returns its port."""
        port, node = self.redis[0]
        node.popen.kill()
        node.popen.wait()
        return port

    def stop_redis(self):
        for _, node in self.redis:
            node.stop()

    def _spawn(self, name, argv, env=None):
        proc = Proc(name, argv, env, cwd=self.workdir)
        self.procs.append(proc)
        return proc

    def native_config(self):
        """The compose prometheus.yml (prometheus-scale.yml for two replicas), scraping every
        second, with each target rewritten."""
        name = "prometheus-scale.yml" if len(self.replicas) > 1 else "prometheus.yml"
        config = yaml.safe_load((promql.OPS / "prometheus" / name).read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [str(p) for p in promql.RULES]
        jobs = []
        for job in config["scrape_configs"]:
            statics = []
            for sc in job.get("static_configs", []):
                native = [self.targets[COMPOSE_TARGETS[t]] for t in sc["targets"] if t in COMPOSE_TARGETS]
                if native:
                    statics.append({**sc, "targets": native})
            if statics:
                jobs.append({**job, "static_configs": statics})
            else:
                print(f"  job {job['job_name']}: no native stand-in for {job['static_configs']}, not scraped")
        config["scrape_configs"] = jobs
        return config

    def stop(self):
        for proc in reversed(self.procs):
            proc.stop()
