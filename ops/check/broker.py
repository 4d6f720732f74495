"""The throwaway Redis of the dashboard check, and whether the server can use one.

live.py runs the two-replica topology of ops/compose/scale.yml natively when the release server
has a Redis engine (`--broker-url` in its --help): as in docker-compose.yml, a Redis primary and
two replicas under three Sentinels (`redis-server --sentinel`), each on a free loopback port with
its files in the check's temp dir, stopped with the check. The Sentinels use the timings of the
failover tests (down-after-milliseconds 1000, failover-timeout 5000) so the check's failover
takes seconds.
"""

import shutil
import subprocess

BROKER_FLAG = "--broker-url"
ENV_BROKER_URL = "MESSENGER_BROKER_URL"
ENV_BROKER_STREAM = "MESSENGER_BROKER_STREAM"
ENV_BROKER_MIN_REPLICAS = "MESSENGER_BROKER_MIN_REPLICAS"
MASTER = "messenger"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def server_has_broker(server_bin):
    """True when messenger-server --help lists --broker-url (the Redis engine is built in)."""
    done = subprocess.run([str(server_bin), "--help"], capture_output=True, text=True, timeout=30)
    return BROKER_FLAG in done.stdout


def redis_server_bin(explicit=None):
    found = explicit or shutil.which("redis-server")
    if not found:
        raise SystemExit("FAIL: redis-server not found: ops/check/install-tools.sh redis-server "
                         "(Debian package redis-server)")
    return found


def redis_argv(redis_bin, port, workdir, primary_port=None):
    """redis-server on 127.0.0.1:port only, append-only (as compose runs every node), files in a
    directory of its own under workdir; a replica of primary_port when given."""
    data = workdir / f"redis-{port}"
    data.mkdir()
    argv = [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--dir", str(data), "--protected-mode", "yes"]
    return argv + (["--replicaof", "127.0.0.1", str(primary_port)] if primary_port else [])


def sentinel_argv(redis_bin, port, primary_port, workdir):
    """A Sentinel on 127.0.0.1:port monitoring MASTER at primary_port, quorum 2; its config file
    (which Sentinel rewrites) in workdir."""
    conf = workdir / f"sentinel-{port}.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\n"
                    f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
                    f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n")
    return [redis_bin, str(conf), "--sentinel"]


def sentinel_url(ports):
    return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in ports) + f"/{MASTER}"


# The line redis-server logs once it accepts connections (Redis 6 and 7).
REDIS_READY = r"Ready to accept connections"
# A replica's line once its first sync is done; a Sentinel's per replica and per other Sentinel.
REPLICA_SYNCED = r"MASTER <-> REPLICA sync: Finished with success"
SENTINEL_SEES_REPLICA = r"\+slave slave "
SENTINEL_SEES_SENTINEL = r"\+sentinel sentinel "
