"""The Sentinel checks of make stack-test's two-replica stack (stack.py, scale): the Redis
primary, its replicas and the three Sentinels of docker-compose.yml seen from the Sentinels, and
a planned switchover that both server replicas must follow without a restart.

The engine, the command runner, the failure recorder and the round trip are stack.py's.
"""

import re
import time


def sentinels(engine):
    """The Sentinels of the scale stack: service -> (port, master name), from their commands."""
    out = {}
    for name, svc in engine.services.items():
        command = [str(c) for c in svc.get("command") or []]
        if name.startswith("sentinel-") and len(command) == 5:
            out[name] = (command[3], svc["environment"]["SENTINEL_MASTER"])
    return out


def sentinel_ask(engine, run, service, *args):
    port, master = sentinels(engine)[service]
    done = run([engine.cli, "exec", engine.containers()[service], "redis-cli", "-p", port, "sentinel",
                *[master if a == "$master" else a for a in args]], check=False)
    return done.stdout.split()


def topology(engine, run, fail, within):
    """Every Sentinel sees the primary, every Redis replica and every other Sentinel."""
    nodes = [n for n in engine.services if re.fullmatch(r"redis-\d+", n)]
    others = len(sentinels(engine)) - 1
    start = time.monotonic()
    while True:
        seen = {}
        for service in sentinels(engine):
            fields = sentinel_ask(engine, run, service, "master", "$master")
            info = dict(zip(fields[::2], fields[1::2]))
            seen[service] = (info.get("ip"), info.get("num-slaves"), info.get("num-other-sentinels"), info.get("flags"))
        if all(v[1:] == (str(len(nodes) - 1), str(others), "master") for v in seen.values()):
            break
        if time.monotonic() - start > within:
            return fail(f"Sentinels do not see the whole topology within {within} s: {seen}")
        time.sleep(1)
    primary = {v[0] for v in seen.values()}
    print(f"  sentinels: {len(seen)} agree on primary {', '.join(primary)} with {len(nodes) - 1} replicas, "
          f"each sees {others} other Sentinels")


def failover(engine, run, fail, within, round_trip):
    """A planned switchover (SENTINEL FAILOVER): both server replicas follow it without a restart,
    and a message sent through client1 is read back through client2 again."""
    first = sorted(sentinels(engine))[0]
    before = sentinel_ask(engine, run, first, "get-master-addr-by-name", "$master")
    start = time.monotonic()
    answer = sentinel_ask(engine, run, first, "failover", "$master")
    if answer != ["OK"]:
        return fail(f"SENTINEL FAILOVER answered {answer}")
    after = before
    while after == before and time.monotonic() - start < within:
        time.sleep(0.5)
        after = sentinel_ask(engine, run, first, "get-master-addr-by-name", "$master")
    if after == before:
        return fail(f"SENTINEL FAILOVER: the primary is still {before} after {within} s")
    switched = time.monotonic() - start
    print(f"  failover: SENTINEL FAILOVER moved the primary from {':'.join(before)} to {':'.join(after)} in {switched:.1f} s")
    last = None
    while time.monotonic() - start < within:
        try:
            round_trip(engine, quiet_fail=True)
            print(f"  failover: the replicas followed; the round trip works again "
                  f"{time.monotonic() - start:.1f} s after the command")
            return
        except OSError as e:  # 503 while a replica moves to the new primary
            last = e
        time.sleep(0.5)
    fail(f"after the failover to {after}, no round trip within {within} s: {last}")
