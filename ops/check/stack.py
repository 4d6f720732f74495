#!/usr/bin/env python3
"""One stack of `make stack-test`, for real: up, checked, down (ops/check/README.md).

  stack.py --engine podman|docker plain|scale|secure

For the stack (secure: after `make certs` with no flags, as a user starts it) it
- starts every service and waits until each container is healthy (podman: in depends_on
  order, running the healthchecks itself, as there is no systemd to run them);
- checks that the servers and clients run as uid 10001 on a read-only root;
- sends through client1 and reads the message back through client2 (secure: over TLS with
  tokens);
- runs the course-suite container (plain and scale; `make compose-test[-scale]`) and prints
  its counts;
- checks through Prometheus's API that every target of a running service is up and that
  every alert rule is loaded;
- scale: checks that the three Sentinels agree on the primary and see both Redis replicas and
  each other, then runs a planned switchover (SENTINEL FAILOVER) and the round trip again
  once both server replicas have followed it;
- stops each container within its stop_grace_period, exit code 0, and removes the stack
  (volumes kept, as `make down`).
With podman it runs the file ops/check/stack_derive.py derives and prints each adaptation;
with Docker the project's files and make targets as they are.
"""

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack_derive  # noqa: E402
import stack_sentinel  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "target" / "stack"
PROJECT = "messenger"
HEALTHY_WITHIN = 180  # s, per service
TARGETS_UP_WITHIN = 60  # s; Prometheus scrapes every 5 s
RUNTIME_USER = "10001"
APPS = ("server", "server-b", "client1", "client2")
UP = {"plain": "up", "scale": "up-scale", "secure": "up-secure"}
COURSE = {"plain": "compose-test", "scale": "compose-test-scale"}
failures = []


def run(cmd, check=True, **kw):
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, **kw)
    if check and done.returncode != 0:
        sys.exit(f"FAILED: {' '.join(map(str, cmd))} (exit {done.returncode})\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def fail(message):
    print(f"  FAIL {message}")
    failures.append(message)


class Engine:
    def __init__(self, name, stack):
        self.cli, self.stack = name, stack
        self.env = {"COMPOSE_PROJECT_NAME": PROJECT}
        if name == "podman":
            self.file, self.order, notes = stack_derive.derive(REPO, stack, OUT)
            for note in notes:
                print(f"  adapted: {note}")
            self.compose = [str(REPO / ".venv/bin/podman-compose"), "--in-pod=false", "-p", PROJECT, "-f", str(self.file)]
            self.services = yaml.safe_load(self.file.read_text())["services"]
            self.names = set((OUT / f"{stack}.hosts").read_text().split()) - {"127.0.0.1", "::1", "localhost"}
        else:
            self.services = stack_derive.merged(REPO, stack)["services"]
            self.names = set(self.services) | {a for svc in self.services.values()
                                               for net in (svc.get("networks") or {}).values()
                                               for a in ((net or {}).get("aliases") or [])}

    def containers(self):
        """service -> container name, for this project."""
        ids = run([self.cli, "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]).stdout.split()
        out = {}
        for c in json.loads(run([self.cli, "inspect", *ids]).stdout) if ids else []:
            out[c["Config"]["Labels"]["com.docker.compose.service"]] = c["Name"].lstrip("/")
        return out

    def inspect(self, container):
        return json.loads(run([self.cli, "inspect", container]).stdout)[0]

    def healthy(self, container):
        info = self.inspect(container)
        if not info["Config"].get("Healthcheck") and "Health" not in info["State"]:
            return info["State"]["Running"]
        if self.cli == "podman":
            return run(["podman", "healthcheck", "run", container], check=False).returncode == 0
        return (info["State"].get("Health") or {}).get("Status") == "healthy"

    def up(self):
        run(self.compose + ["down"], check=False) if self.cli == "podman" else None
        if self.cli == "docker":
            run(["make", UP[self.stack]], env=self.make_env())
            for service, container in self.containers().items():
                self.wait_healthy(service, container)
            return
        print(f"  adapted: services started one by one in depends_on order ({', '.join(self.order)}), "
              "each waited for when a later one needs it healthy (podman-compose ignores service_healthy)")
        for service in self.order:
            for dep, cond in self.services[service].get("depends_on", {}).items():
                if cond.get("condition") == "service_healthy":
                    self.wait_healthy(dep, self.containers()[dep], quiet=True)
            run(self.compose + ["up", "-d", "--no-deps", service])
        for service, container in self.containers().items():
            self.wait_healthy(service, container)

    def wait_healthy(self, service, container, quiet=False):
        start = time.monotonic()
        while not self.healthy(container):
            if time.monotonic() - start > HEALTHY_WITHIN:
                logs = run([self.cli, "logs", "--tail", "30", container], check=False)
                sys.exit(f"FAILED: {service} not healthy within {HEALTHY_WITHIN} s\n{logs.stdout}{logs.stderr}")
            time.sleep(1)
        if not quiet:
            print(f"  healthy: {service} ({container}) after {time.monotonic() - start:.1f} s of waiting")

    def make_env(self):
        import os
        return {**os.environ, **self.env}

    def course_suite(self):
        if self.cli == "podman":
            print("  adapted: the course suite runs as `podman-compose run --rm --no-deps tests` (make "
                  f"{COURSE[self.stack]}: the stack is already up and healthy)")
            return run(self.compose + ["run", "--rm", "--no-deps", "tests"], check=False)
        return run(["make", COURSE[self.stack]], check=False, env=self.make_env())

    def stop(self):
        """Each container stopped as `make down` stops it; then removed, volumes kept."""
        containers = self.containers()
        order = [s for s in reversed(getattr(self, "order", list(containers))) if s in containers]
        for service in order:
            grace = stack_derive_seconds(self.services.get(service, {}).get("stop_grace_period", "10s"))
            start = time.monotonic()
            run([self.cli, "stop", "-t", str(int(grace)), containers[service]])
            took = time.monotonic() - start
            code = self.inspect(containers[service])["State"]["ExitCode"]
            print(f"  stopped: {service} exit {code} in {took:.1f} s (grace {grace:g} s)")
            if code != 0 or took >= grace:
                fail(f"{service}: exit {code} after {took:.1f} s (grace {grace:g} s)")
        if self.cli == "podman":
            print("  adapted: `make down` is `podman stop -t <stop_grace_period>` per container in reverse start "
                  "order (to time each and keep its exit code), then `podman-compose down`")
            run(self.compose + ["down"])
        else:
            run(["make", "down"], env=self.make_env())


def stack_derive_seconds(value):
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(value))) or 10.0


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(url, data=data if method == "POST" else None, method=method)
    with urllib.request.urlopen(req, timeout=10) as response:
        return json.loads(response.read() or b"null")


def non_root(engine):
    for service, container in engine.containers().items():
        if service not in APPS:
            continue
        info = engine.inspect(container)
        probe = run([engine.cli, "exec", container, "sh", "-c", "id -u; id -g; touch /probe"], check=False)
        ids = probe.stdout.split()
        readonly = info["HostConfig"].get("ReadonlyRootfs") and "Read-only file system" in probe.stderr
        print(f"  runs as: {service} uid:gid {':'.join(ids[:2])}, root filesystem {'read-only' if readonly else 'WRITABLE'}")
        if ids[:2] != [RUNTIME_USER, RUNTIME_USER] or not readonly:
            fail(f"{service}: uid:gid {ids[:2]}, read-only root {readonly}")


def round_trip(engine, quiet_fail=False):
    """Sends through client1 and reads it back through client2; with quiet_fail, a miss raises
    OSError for the caller to retry instead of failing the stack."""
    text = f"stack-test {engine.stack} {time.time_ns()}"
    # As client1: in the secure stack, client1's token may post only as its author, client1.
    sent = http("POST", "http://127.0.0.1:8080/sendMessage", {"author": "client1", "text": text})
    start, got = time.monotonic(), []
    while not any(m["text"] == text for m in got) and time.monotonic() - start < 10:
        got += http("POST", "http://127.0.0.1:8081/getAndFlushMessages")
        time.sleep(0.2)
    match = [m for m in got if m["text"] == text]
    secure = " over TLS with a token" if engine.stack == "secure" else ""
    if match and match[0]["sendTime"] == sent["sendTime"]:
        via = [engine.services[c]["environment"]["MESSENGER_SERVER_ADDR"] for c in ("client1", "client2")]
        print(f"  round trip: client1 -> {via[0]} ... {via[1]} -> client2{secure}: sendTime {sent['sendTime']} "
              f"read back in {time.monotonic() - start:.2f} s")
    elif quiet_fail:
        raise OSError(f"round trip: sent {text!r} at {sent}, client2 returned {got}")
    else:
        fail(f"round trip: sent {text!r} at {sent}, client2 returned {got}")


def course(engine):
    done = engine.course_suite()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)
    counts = re.findall(r"=+ (.*(?:passed|failed|error).*) in [\d.]+s", plain)
    print(f"  course suite: exit {done.returncode}: {counts[-1] if counts else 'no summary'}")
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-2000:])
        fail(f"course suite exit {done.returncode}")


def prometheus(engine):
    running = engine.names  # service names and aliases
    start, pending = time.monotonic(), None
    while pending != [] and time.monotonic() - start < TARGETS_UP_WITHIN:
        targets = http("GET", "http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
        ours = [t for t in targets if t["labels"]["instance"].split(":")[0] in running | {"localhost"}]
        # Empty until Prometheus has loaded its config; "unknown" until a target's first scrape.
        pending = [t for t in ours if t["health"] != "up"] if ours else None
        time.sleep(1)
    if not ours:
        fail(f"Prometheus lists no target of a running service within {TARGETS_UP_WITHIN} s")
    for t in targets:
        instance = t["labels"]["instance"]
        mine = t in ours
        print(f"  target: {t['labels']['job']:<16} {instance:<22} {t['health'] if mine else 'not run (left out)'}")
        if mine and t["health"] != "up":
            fail(f"target {instance}: {t['health']} {t.get('lastError')}")
    groups = http("GET", "http://127.0.0.1:9090/api/v1/rules")["data"]["groups"]
    loaded = sum(len(g["rules"]) for g in groups)
    expected = sum(len(g.get("rules", [])) for f in sorted((REPO / "ops/prometheus/rules").glob("*.yml"))
                   for g in yaml.safe_load(f.read_text())["groups"])
    print(f"  rules: {loaded} of {expected} loaded in {len(groups)} groups")
    if loaded != expected:
        fail(f"rules: {loaded} loaded, {expected} in ops/prometheus/rules")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=["podman", "docker"], required=True)
    parser.add_argument("stack", choices=sorted(stack_derive.STACKS))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    print(f"--- stack {args.stack} ({args.engine})")
    if args.stack == "secure":
        certs = run(["make", "certs"])
        for line in (certs.stdout + certs.stderr).splitlines():
            if line.startswith(("ops/secure", "wrote")) or "keeping it" in line:
                print(f"  make certs: {line}")
    engine = Engine(args.engine, args.stack)
    started = time.monotonic()
    try:
        engine.up()
        print(f"  up and healthy in {time.monotonic() - started:.1f} s")
        non_root(engine)
        round_trip(engine)
        if args.stack in COURSE:
            course(engine)
        prometheus(engine)
        if args.stack == "scale":
            stack_sentinel.topology(engine, run, fail, HEALTHY_WITHIN)
            stack_sentinel.failover(engine, run, fail, HEALTHY_WITHIN, round_trip)
    finally:
        engine.stop()
    if failures:
        sys.exit(f"stack {args.stack}: FAILED: " + "; ".join(failures))
    print(f"--- stack {args.stack}: OK in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
