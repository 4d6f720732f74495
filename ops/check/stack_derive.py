"""The compose file make stack-test runs on podman, derived from the project's files.

The project's files are never edited. The derived file (target/stack/<stack>.yml) differs
from what compose merges for a user only by the adaptations issue 23 allows, and `derive`
returns each of them as a sentence, which stack.py prints:
- services that no registry or Debian package provides here (the collector, Jaeger,
  Grafana) are left out, and `depends_on` on them dropped;
- every service shares the network namespace stack-test.sh made (only `lo`): no published
  ports, no compose network, every service name (and alias) mapped to 127.0.0.1 in a hosts
  file mounted at /etc/hosts;
- a service that publishes a port on another host port (replica B: 51076 -> 51075) listens
  on that host port instead, and every reference to it (other services' environment,
  Prometheus's config) follows;
- ulimits above the host's hard limit are capped;
- `build` is dropped: stack-test.sh built each image once beforehand;
- `profiles` are dropped: the stack's services are started by name.
"""

import re
import resource
import subprocess
from pathlib import Path

import yaml

LEFT_OUT = ("otel-collector", "jaeger", "grafana")
STACKS = {
    "plain": (["docker-compose.yml"], ["test"]),
    "scale": (["docker-compose.yml", "ops/compose/scale.yml"], ["scale", "test"]),
    "secure": (["docker-compose.yml", "ops/compose/secure.yml"], []),
}


def merged(repo, stack):
    """The stack as compose merges it (Debian's docker-compose 1.29, `config`)."""
    files, profiles = STACKS[stack]
    cmd = ["docker-compose"] + [a for f in files for a in ("-f", f)]
    cmd += [a for p in profiles for a in ("--profile", p)] + ["config"]
    config = yaml.safe_load(subprocess.run(cmd, cwd=repo, check=True, capture_output=True, text=True).stdout)
    # 1.29's `config` lists every service; compose runs only those of an active profile.
    config["services"] = {name: svc for name, svc in config["services"].items()
                          if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)}
    return config


def published(svc):
    """(host port, container port) of each published port."""
    out = []
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            out.append((int(p["published"]), int(p["target"])))
        else:
            parts = str(p).split("/")[0].split(":")
            out.append((int(parts[-2]), int(parts[-1])))
    return out


def derive(repo, stack, out_dir):
    """Writes the derived file; returns (path, services in start order, adaptations)."""
    config = merged(repo, stack)
    services = config["services"]
    notes = []
    for name in LEFT_OUT:
        if name in services:
            notes.append(f"left out: {name} ({services[name]['image']}): no registry here and no Debian package")
            del services[name]
    names = set(services)
    aliases = {a for svc in services.values() for net in (svc.get("networks") or {}).values()
               for a in ((net or {}).get("aliases") or [])}
    hosts = out_dir / f"{stack}.hosts"
    hosts.write_text("127.0.0.1 localhost " + " ".join(sorted(names | aliases)) + "\n::1 localhost\n")
    notes.append(f"one network namespace with only lo: no ports published, no compose network; "
                 f"{hosts} at /etc/hosts maps {', '.join(sorted(names | aliases))} to 127.0.0.1")

    moved = {}  # (service or alias, container port) -> host port
    for name, svc in services.items():
        svc_aliases = [a for net in (svc.get("networks") or {}).values() for a in ((net or {}).get("aliases") or [])]
        for host, container in published(svc):
            if host != container:
                for n in [name, *svc_aliases]:
                    moved[(n, container)] = host
                env = svc.get("environment") or {}
                for key, value in env.items():
                    if key.endswith("_PORT") and str(value) == str(container):
                        env[key] = str(host)
                        notes.append(f"{name}: {key}={host} (its published port; {container} is taken in the shared namespace)")

    def follow(text):
        for (host_name, container), host in moved.items():
            text = re.sub(rf"\b{re.escape(host_name)}:{container}\b", f"{host_name}:{host}", text)
        return text

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for name, svc in services.items():
        svc.pop("build", None)
        svc.pop("profiles", None)
        svc.pop("ports", None)
        svc.pop("networks", None)
        svc["network_mode"] = "host"
        svc.setdefault("volumes", []).append(f"{hosts.resolve()}:/etc/hosts:ro")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        svc["depends_on"] = {d: c for d, c in deps.items() if d in services}
        env = svc.get("environment") or {}
        for key, value in env.items():
            new = follow(str(value))
            if new != str(value):
                env[key] = new
                notes.append(f"{name}: {key}={new}")
        for limit, value in (svc.get("ulimits") or {}).items():
            soft, hard_value = (value, value) if isinstance(value, int) else (value["soft"], value["hard"])
            if limit == "nofile" and hard_value > hard:
                svc["ulimits"][limit] = {"soft": min(soft, hard), "hard": hard}
                notes.append(f"{name}: ulimits nofile capped at the host's hard limit {hard}")
        for i, volume in enumerate(svc.get("volumes", [])):
            source, _, rest = volume.partition(":") if isinstance(volume, str) else ("", "", "")
            if source.endswith(".yml") and "prometheus" in source:
                text = Path(source).read_text()
                if follow(text) != text:
                    copy = out_dir / f"{stack}-{Path(source).name}"
                    copy.write_text(follow(text))
                    svc["volumes"][i] = f"{copy.resolve()}:{rest}"
                    notes.append(f"{name}: {Path(source).relative_to(repo)} with the moved ports, from {copy}")
    notes.append("build dropped: each image was built once beforehand; profiles dropped: services started by name")
    path = out_dir / f"{stack}.yml"
    path.write_text(yaml.safe_dump({"services": services, "volumes": config.get("volumes") or {}}, sort_keys=False))
    return path, start_order(services), notes


def start_order(services):
    """Services other than `tests`, each after everything it depends on."""
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for dep in services[name].get("depends_on", {}):
            visit(dep)
        order.append(name)

    for name in sorted(services):
        if name != "tests":
            visit(name)
    return order
