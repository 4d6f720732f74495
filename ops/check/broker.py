"""A throwaway redis-server for the dashboard check, and whether the server can use one.

live.py runs the two-replica topology of ops/compose/scale.yml natively when the release server
has a Redis engine (`--broker-url` in its --help): one redis-server on a free loopback port,
without persistence, in the check's temp dir, stopped with the check.
"""

import shutil
import subprocess

BROKER_FLAG = "--broker-url"
ENV_BROKER_URL = "MESSENGER_BROKER_URL"
ENV_BROKER_STREAM = "MESSENGER_BROKER_STREAM"


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


def redis_argv(redis_bin, port, workdir):
    """redis-server on 127.0.0.1:port only, no RDB snapshots, no AOF, files in workdir."""
    return [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir), "--protected-mode", "yes"]


# The line redis-server logs once it accepts connections (Redis 6 and 7).
REDIS_READY = r"Ready to accept connections"
