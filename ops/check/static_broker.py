"""Static checks of the two-replica stack's broker (issue 25): Redis as a primary and replicas
under Sentinel, in docker-compose.yml (profile `scale`), and the server replicas' Sentinel URL.

- Data nodes (`redis-*`): pinned to an exact version, append-only on a named volume of their
  own at /data (a primary without persistence that restarts before its failover wipes its
  replicas), a redis-cli ping healthcheck on their own port, in the `scale` profile only,
  announcing their service name; exactly one starts as the primary, every other one as its
  replica; at least two replicas (so `WAIT 1` still succeeds with one node lost).
- Sentinels (`sentinel-*`): at least three, the same image, ops/compose/sentinel.sh mounted
  and run with the Sentinel's own name, port and a myid of 40 hex digits (distinct), the
  primary they monitor is the data node that starts as primary, quorum a majority,
  down-after-milliseconds and failover-timeout set, a `SENTINEL CKQUORUM` healthcheck on
  their own port; ports distinct across all nodes and Sentinels (they share one loopback in
  make stack-test).
- Every server replica: MESSENGER_BROKER_URL is redis+sentinel:// naming every Sentinel at its
  port and the monitored master's name; MESSENGER_BROKER_MIN_REPLICAS between 1 and the
  number of Redis replicas; it waits for every Sentinel to be healthy.
"""

import re

EXACT_REDIS = r"redis:\d+\.\d+\.\d+(-alpine)?"


def arg(command, flag):
    """The value after `flag` in a command list, or None."""
    return command[command.index(flag) + 1] if flag in command[:-1] else None


def check_broker(check, services, volumes, replicas):
    """Checks the broker services and the replicas' URLs; returns (data nodes, Sentinels)."""
    nodes = {n: s for n, s in services.items() if re.fullmatch(r"redis-\d+", n)}
    sentinels = {n: s for n, s in services.items() if re.fullmatch(r"sentinel-\d+", n)}
    ports, data = {}, set()
    primary = []
    for name, svc in nodes.items():
        where = f"docker-compose.yml: {name}"
        command = [str(c) for c in svc.get("command", [])]
        check(re.fullmatch(EXACT_REDIS, svc.get("image", "")), f"{where}: image {svc.get('image')!r} is not an exact redis:X.Y.Z tag")
        check(arg(command, "--appendonly") == "yes", f"{where}: without --appendonly yes")
        mounts = [v for v in svc.get("volumes", []) if v.split(":")[1:2] == ["/data"]]
        check(mounts and mounts[0].split(":")[0] in volumes, f"{where}: /data is not a named volume")
        data.update(m.split(":")[0] for m in mounts)
        port = arg(command, "--port") or "6379"
        ports[f"{name}:{port}"] = port
        test = str(svc.get("healthcheck", {}).get("test"))
        check("redis-cli" in test and "ping" in test and f"-p {port}" in test,
              f"{where}: healthcheck is not redis-cli -p {port} ping")
        check(svc.get("profiles") == ["scale"], f"{where}: must be in the scale profile only")
        check(arg(command, "--replica-announce-ip") == name, f"{where}: does not announce its service name")
        of = arg(command, "--replicaof")
        if of is None:
            primary.append((name, port))
    check(len(primary) == 1, f"docker-compose.yml: exactly one Redis node must start as the primary: {primary}")
    check(len(data) == len(nodes), "docker-compose.yml: every Redis node needs a data volume of its own")
    check(len(nodes) >= 3, f"docker-compose.yml: a primary and at least two replicas, not {sorted(nodes)}")
    for name, svc in nodes.items():
        of = arg([str(c) for c in svc.get("command", [])], "--replicaof")
        if of is not None and primary:
            command = [str(c) for c in svc["command"]]
            check([of, command[command.index("--replicaof") + 2]] == list(primary[0]),
                  f"docker-compose.yml: {name} is not a replica of {primary[0]}")

    masters, ids = set(), set()
    sentinel_ports = {}
    for name, svc in sentinels.items():
        where = f"docker-compose.yml: {name}"
        command = [str(c) for c in svc.get("command", [])]
        env = svc.get("environment") or {}
        check(re.fullmatch(EXACT_REDIS, svc.get("image", "")), f"{where}: image is not an exact redis:X.Y.Z tag")
        check("./ops/compose/sentinel.sh:/opt/sentinel.sh:ro" in svc.get("volumes", []),
              f"{where}: does not mount ops/compose/sentinel.sh")
        ok = command[:2] == ["sh", "/opt/sentinel.sh"] and len(command) == 5
        check(ok and command[2] == name, f"{where}: not run as sentinel.sh {name} <port> <myid>: {command}")
        if not ok:
            continue
        port, myid = command[3], command[4]
        check(re.fullmatch(r"[0-9a-f]{40}", myid), f"{where}: myid {myid!r} is not 40 hex digits")
        ids.add(myid)
        sentinel_ports[name] = port
        ports[f"{name}:{port}"] = port
        test = str(svc.get("healthcheck", {}).get("test"))
        check(f"-p {port} sentinel ckquorum {env.get('SENTINEL_MASTER')}" in test,
              f"{where}: healthcheck is not SENTINEL CKQUORUM on its port")
        masters.add(env.get("SENTINEL_MASTER"))
        check(primary and env.get("SENTINEL_PRIMARY") == " ".join(primary[0]),
              f"{where}: SENTINEL_PRIMARY {env.get('SENTINEL_PRIMARY')!r} is not the primary {primary}")
        for key in ("SENTINEL_DOWN_AFTER_MS", "SENTINEL_FAILOVER_TIMEOUT_MS"):
            check(str(env.get(key, "")).isdigit(), f"{where}: {key} not set")
        check(int(env.get("SENTINEL_QUORUM", 0)) > len(sentinels) // 2,
              f"{where}: SENTINEL_QUORUM is not a majority of {len(sentinels)}")
        check(svc.get("profiles") == ["scale"], f"{where}: must be in the scale profile only")
    check(len(sentinels) >= 3, f"docker-compose.yml: at least three Sentinels, not {sorted(sentinels)}")
    check(len(ids) == len(sentinels), "docker-compose.yml: every Sentinel needs a myid of its own")
    check(len(masters) == 1, f"docker-compose.yml: the Sentinels monitor different masters: {masters}")
    check(len(set(ports.values())) == len(ports), f"docker-compose.yml: Redis and Sentinel ports must be distinct: {ports}")

    want = "redis+sentinel://" + ",".join(f"{n}:{p}" for n, p in sorted(sentinel_ports.items())) + f"/{next(iter(masters), '')}"
    for name, svc in replicas.items():
        where = f"ops/compose/scale.yml: {name}"
        env = svc.get("environment", {})
        check(env.get("MESSENGER_BROKER_URL") == want,
              f"{where}: MESSENGER_BROKER_URL {env.get('MESSENGER_BROKER_URL')!r} is not {want!r}")
        min_replicas = str(env.get("MESSENGER_BROKER_MIN_REPLICAS", "0"))
        check(min_replicas.isdigit() and 1 <= int(min_replicas) <= len(nodes) - 1,
              f"{where}: MESSENGER_BROKER_MIN_REPLICAS {min_replicas} is not between 1 and the {len(nodes) - 1} Redis replicas")
        deps = svc.get("depends_on") or {}
        for sentinel in sentinels:
            check(deps.get(sentinel, {}).get("condition") == "service_healthy",
                  f"{where}: does not wait for {sentinel} to be healthy")
    return len(nodes), len(sentinels)
