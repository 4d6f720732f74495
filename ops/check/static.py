#!/usr/bin/env python3
"""Static checks of the ops configs that no tool here validates by itself.

- Grafana provisioning: every YAML and dashboard JSON parses; datasource uids and names are
  unique; every datasource a panel, target or variable names exists; dashboard uids and titles
  are unique, panel ids unique per dashboard, every panel has a description; the provider path
  and the home dashboard path match the compose mounts; the dashboards are what
  build_dashboards.py writes.
- Collector: every pipeline names receivers, processors, exporters and connectors that are
  defined; each connector is an exporter in one pipeline and a receiver in another; every
  defined component is used; exporters point at compose services that exist.
- Compose: every bind-mounted ./ops path exists (also in ops/compose/scale.yml).
- The two-replica stack (docker-compose.yml merged with ops/compose/scale.yml, as compose merges
  them): the Redis primary, replicas and Sentinels, and every server replica on them through
  the Sentinel URL (static_broker.py); client1 and client2 on different replicas;
  Prometheus mounting ops/prometheus/prometheus-scale.yml, which is prometheus.yml except that the
  messenger-server job scrapes exactly the replicas' metrics ports, each with its own `replica`
  label; every replica's stop_grace_period above its drain.
- The stack defects of issues 23 and 26 (static_stack.py): multi-arch grpcurl, collector
  metric names, Grafana mounts/log mode/heatmap tooltips, Jaeger's max_traces against its
  memory, image pins, nofile, Dockerfile headers, metrics ports on 127.0.0.1.
- Grafana's entrypoint (ops/grafana/entrypoint.sh, run here with sh): without a password it
  makes a random one at first start, mode 0600 in the data dir, and keeps it across restarts;
  a password the operator sets (even the empty one compose passes when unset counts as unset)
  is used as it is and nothing is written.
- Docs (docs.py): every relative link in every Markdown file resolves (file and heading), and
  every mention of the contract file in the tree is a path to proto/CONTRACT.md.

Usage: static.py (exits 1 listing every problem)
"""

import json
import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

import docs
import static_broker
import static_stack

OPS = Path(__file__).resolve().parents[1]
REPO = OPS.parent
GRAFANA = OPS / "grafana"
errors = []


def check(ok, message):
    if not ok:
        errors.append(message)


def load_yaml(path):
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        errors.append(f"{path}: invalid YAML: {e}")
        return {}


def compose():
    return load_yaml(REPO / "docker-compose.yml")


def merged(base, override):
    """Compose's merge for the keys checked here: mappings merge key by key (environment,
    depends_on, networks), anything else is replaced; volumes merge by container path."""
    out = dict(base)
    for key, value in override.items():
        if key == "volumes" and isinstance(out.get(key), list):
            by_target = {v.split(":")[1]: v for v in out[key]}
            by_target.update({v.split(":")[1]: v for v in value})
            out[key] = list(by_target.values())
        elif isinstance(value, dict) and isinstance(out.get(key), (dict, list)):
            current = out[key] if isinstance(out[key], dict) else {k: {} for k in out[key]}
            out[key] = merged(current, value)
        else:
            out[key] = value
    return out


def grafana(services):
    datasources = {}
    for path in sorted((GRAFANA / "provisioning").rglob("*.y*ml")):
        doc = load_yaml(path) or {}
        for ds in doc.get("datasources", []):
            check(ds.get("uid") and ds["uid"] not in datasources, f"{path}: missing or duplicate uid {ds.get('uid')}")
            datasources[ds.get("uid")] = ds
            host = re.match(r"https?://([^:/]+)", ds.get("url", ""))
            check(host and host.group(1) in services, f"{path}: datasource {ds.get('name')} url {ds.get('url')} "
                                                      "is not a compose service")
        for provider in doc.get("providers", []):
            check(provider["options"]["path"] == "/etc/grafana/dashboards",
                  f"{path}: provider path {provider['options']['path']} is not the compose mount")
    names = [ds["name"] for ds in datasources.values()]
    check(len(names) == len(set(names)), f"duplicate datasource names: {names}")
    for ds in datasources.values():
        for dest in ds.get("jsonData", {}).get("exemplarTraceIdDestinations", []):
            check(dest["datasourceUid"] in datasources, f"exemplar destination {dest} names no datasource")

    uids, titles = set(), set()
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        try:
            board = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            errors.append(f"{path}: invalid JSON: {e}")
            continue
        check(board.get("uid") not in uids, f"{path}: duplicate dashboard uid {board.get('uid')}")
        check(board.get("title") not in titles, f"{path}: duplicate dashboard title {board.get('title')}")
        uids.add(board.get("uid"))
        titles.add(board.get("title"))
        ids, panel_titles = set(), set()
        for var in board.get("templating", {}).get("list", []):
            uid = (var.get("datasource") or {}).get("uid")
            check(uid in datasources, f"{path}: variable {var['name']}: datasource uid {uid} not provisioned")
        for panel in board["panels"]:
            where = f"{path.name}: panel {panel.get('title')!r}"
            check(panel.get("id") not in ids, f"{where}: duplicate id {panel.get('id')}")
            ids.add(panel.get("id"))
            if panel["type"] == "row":
                continue
            check(panel["title"] not in panel_titles, f"{where}: duplicate title")
            panel_titles.add(panel["title"])
            check(len(panel.get("description", "")) > 20, f"{where}: no description of what normal looks like")
            for ds in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
                uid = (ds or {}).get("uid")
                check(uid in datasources, f"{where}: datasource uid {uid} not provisioned")
    env = services.get("grafana", {}).get("environment", {})
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    check(home.startswith("/etc/grafana/dashboards/") and (GRAFANA / "dashboards" / Path(home).name).exists(),
          f"home dashboard {home!r} is not one of ops/grafana/dashboards")
    built = subprocess.run([sys.executable, str(GRAFANA / "build_dashboards.py"), "--check"],
                           capture_output=True, text=True)
    check(built.returncode == 0, f"dashboards are stale: {built.stderr.strip()}")
    return len(uids)


def collector(services):
    path = OPS / "otel-collector" / "config.yaml"
    config = load_yaml(path)
    defined = {kind: set((config.get(kind) or {}).keys())
               for kind in ("receivers", "processors", "exporters", "connectors")}
    used = {kind: set() for kind in defined}
    as_exporter, as_receiver = set(), set()
    pipelines = config["service"]["pipelines"]
    for name, pipeline in pipelines.items():
        signal = name.split("/")[0]
        check(signal in ("traces", "metrics", "logs"), f"{path}: pipeline {name}: unknown signal")
        for r in pipeline.get("receivers", []):
            check(r in defined["receivers"] | defined["connectors"], f"{path}: pipeline {name}: receiver {r} undefined")
            (as_receiver if r in defined["connectors"] else used["receivers"]).add(r)
        for p in pipeline.get("processors", []):
            check(p in defined["processors"], f"{path}: pipeline {name}: processor {p} undefined")
            used["processors"].add(p)
        for e in pipeline.get("exporters", []):
            check(e in defined["exporters"] | defined["connectors"], f"{path}: pipeline {name}: exporter {e} undefined")
            (as_exporter if e in defined["connectors"] else used["exporters"]).add(e)
        procs = pipeline.get("processors", [])
        if procs:
            check(procs[0] == "memory_limiter", f"{path}: pipeline {name}: memory_limiter must come first")
    for c in defined["connectors"]:
        check(c in as_exporter and c in as_receiver, f"{path}: connector {c} must be an exporter and a receiver")
    for kind in ("receivers", "processors", "exporters"):
        unused = defined[kind] - used[kind]
        check(not unused, f"{path}: {kind} defined but unused: {sorted(unused)}")
    for name, exporter in (config.get("exporters") or {}).items():
        endpoint = (exporter or {}).get("endpoint", "")
        host = re.sub(r"^\w+://", "", endpoint).split(":")[0]
        check(host in services or host in ("0.0.0.0", ""), f"{path}: exporter {name} endpoint {endpoint!r} "
                                                           "is not a compose service")
    return len(pipelines)


def compose_mounts(services):
    scale_services = (load_yaml(OPS / "compose" / "scale.yml") or {}).get("services", {})
    for name, svc in [*services.items(), *scale_services.items()]:
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("./"):
                check((REPO / source).exists(), f"docker-compose.yml: {name} mounts missing {source}")


def grafana_entrypoint(services):
    script = GRAFANA / "entrypoint.sh"
    grafana_svc = services.get("grafana", {})
    check(grafana_svc.get("entrypoint") == ["/bin/sh", "/etc/grafana/messenger-entrypoint.sh"]
          and "./ops/grafana/entrypoint.sh:/etc/grafana/messenger-entrypoint.sh:ro" in grafana_svc.get("volumes", []),
          "docker-compose.yml: grafana does not run ops/grafana/entrypoint.sh")
    check("env_file" not in grafana_svc, "docker-compose.yml: grafana needs an env file a fresh clone lacks")
    show = ["sh", "-c", 'printf %s "$GF_SECURITY_ADMIN_PASSWORD"']
    with tempfile.TemporaryDirectory() as data:
        def run(**env):
            base = {k: v for k, v in os.environ.items() if not k.startswith("GF_")}
            done = subprocess.run(["sh", str(script), *show], env={**base, "GF_PATHS_DATA": data, **env},
                                  capture_output=True, text=True)
            check(done.returncode == 0, f"{script}: exit {done.returncode}: {done.stderr.strip()}")
            return done.stdout.splitlines()[-1] if done.stdout else ""
        kept = Path(data) / "admin-password"
        first = run(GF_SECURITY_ADMIN_PASSWORD="")
        check(re.fullmatch(r"[0-9a-f]{36}", first or "") is not None, f"{script}: generated password {first!r}")
        check(kept.exists() and stat.S_IMODE(kept.stat().st_mode) == 0o600, f"{script}: {kept} is not mode 0600")
        check(run() == first, f"{script}: the password changed across restarts")
        kept.unlink()
        check(run(GF_SECURITY_ADMIN_PASSWORD="s3cret") == "s3cret" and not kept.exists(),
              f"{script}: an operator's password is not used as it is")


def seconds(value):
    """A compose duration ("15s", "1m30s", "500ms") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(value))
    return sum(float(n) * units[u] for n, u in parts)


def stop_grace(services):
    """Each service that drains on SIGTERM gets longer than its drain from compose."""
    for name, svc in services.items():
        grace = (svc.get("environment") or {}).get("MESSENGER_SHUTDOWN_GRACE_SECS")
        if grace is None:
            continue
        stop = seconds(svc.get("stop_grace_period", "10s"))
        check(stop > float(grace),
              f"docker-compose.yml: {name} stop_grace_period {stop:g}s is not above "
              f"MESSENGER_SHUTDOWN_GRACE_SECS={grace}")


def host_port(addr):
    host, _, port = addr.rpartition(":")
    return host, port


def scale_stack(base):
    """The two-replica stack: docker-compose.yml merged with ops/compose/scale.yml."""
    where = "ops/compose/scale.yml"
    override = load_yaml(OPS / "compose" / "scale.yml") or {}
    services = {name: merged(base["services"].get(name, {}), svc)
                for name, svc in override.get("services", {}).items()}
    services = {**base["services"], **services}
    replicas = {name: svc for name, svc in services.items() if svc.get("image") == "messenger-server:local"}
    check(len(replicas) >= 2, f"{where}: fewer than two server replicas: {sorted(replicas)}")
    names = {}  # every network name of a replica -> the replica
    for name, svc in replicas.items():
        names[name] = name
        for alias in ((svc.get("networks") or {}).get("default") or {}).get("aliases", []):
            names[alias] = name
    broker = static_broker.check_broker(check, services, base.get("volumes") or {}, replicas)
    reached = {c: names.get(host_port(services[c]["environment"].get("MESSENGER_SERVER_ADDR", ""))[0])
               for c in ("client1", "client2")}
    check(None not in reached.values() and len(set(reached.values())) == 2,
          f"{where}: client1 and client2 must use different replicas: {reached}")
    stop_grace(replicas)
    mount = "./ops/prometheus/prometheus-scale.yml:/etc/prometheus/prometheus.yml:ro"
    check(mount in services["prometheus"].get("volumes", []), f"{where}: prometheus does not mount {mount}")
    single = load_yaml(OPS / "prometheus" / "prometheus.yml")
    scaled = load_yaml(OPS / "prometheus" / "prometheus-scale.yml")
    jobs = {j["job_name"]: j for j in scaled.get("scrape_configs", [])}
    server_job = jobs.get("messenger-server", {})
    strip = lambda cfg: {**cfg, "scrape_configs": [j for j in cfg["scrape_configs"] if j["job_name"] != "messenger-server"]}
    check(strip(single) == strip(scaled), "prometheus-scale.yml differs from prometheus.yml beyond the messenger-server job")
    targets = {t: (sc.get("labels") or {}).get("replica") for sc in server_job.get("static_configs", [])
               for t in sc["targets"]}
    scraped = {names.get(host_port(t)[0]) for t in targets}
    ports = {host_port(t)[1] == replicas.get(names.get(host_port(t)[0]), {}).get("environment", {}).get("MESSENGER_METRICS_PORT")
             for t in targets}
    check(scraped == set(replicas) and ports == {True} and len(targets) == len(replicas),
          f"prometheus-scale.yml: messenger-server targets {sorted(targets)} are not the replicas' metrics ports")
    check(None not in targets.values() and len(set(targets.values())) == len(targets),
          f"prometheus-scale.yml: each replica target needs its own replica label: {targets}")
    return len(replicas), broker


def main():
    base = compose()
    services = base.get("services", {})
    stop_grace(services)
    replicas, (nodes, sentinels) = scale_stack(base)
    boards = grafana(services)
    pipelines = collector(services)
    compose_mounts(services)
    grafana_entrypoint(services)
    static_stack.check_all(check, replicas)
    check(docs.main() == 0, "docs: a Markdown link or a proto/CONTRACT.md mention does not resolve (above)")
    if errors:
        print("FAIL:", *errors, sep="\n  ")
        sys.exit(1)
    print(f"static ops checks OK: {boards} dashboards, {pipelines} collector pipelines, {len(services)} services, "
          f"{replicas} server replicas on {nodes} Redis nodes under {sentinels} Sentinels in the scale stack")


if __name__ == "__main__":
    main()
