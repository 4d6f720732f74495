"""The course suite against server replicas sharing one chat through Redis (issue 14).

With MESSENGER_TEST_REPLICAS=N (N >= 2; `make test-course-replicas` sets 2) and no external stack,
conftest.py starts a redis-server from the Debian package on a free loopback port (no
persistence, files in a temp dir) and N messenger-servers on it (MESSENGER_BROKER_URL); client1
uses replica A, client2 replica B, and grpcurl talks to replica A. Every server the suite starts
joins the same broker, so "the server" of every test is the replicas together, as proto/CONTRACT.md
defines it for MESSENGER_BROKER_URL. Unset or 1: one server on the in-process engine.
"""

import os
import shutil
import socket
import subprocess
import tempfile

ENV_REPLICAS = "MESSENGER_TEST_REPLICAS"
ENV_BROKER_URL = "MESSENGER_BROKER_URL"
ENV_BROKER_STREAM = "MESSENGER_BROKER_STREAM"
BROKER_FLAG = "--broker-url"
# The line redis-server (6.x and 7.x) logs once it accepts connections.
REDIS_READY = "Ready to accept connections"


class ReplicaConfigError(Exception):
    """MESSENGER_TEST_REPLICAS asks for something this machine or build cannot run."""


def replicas_wanted():
    """How many server replicas the suite runs (1: the in-process engine)."""
    raw = os.environ.get(ENV_REPLICAS, "").strip() or "1"
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise ReplicaConfigError(f"{ENV_REPLICAS}={raw!r}: expected a whole number of server replicas, 1 or more")
    return count


def check_broker_support(server_bin):
    """Fails unless messenger-server --help lists --broker-url (the Redis engine is built in)."""
    done = subprocess.run([str(server_bin), "--help"], capture_output=True, text=True, timeout=30)
    if BROKER_FLAG not in done.stdout:
        raise ReplicaConfigError(f"{ENV_REPLICAS} is set but {server_bin} has no {BROKER_FLAG}: "
                                 "this build has no Redis engine to share one chat between replicas")


def redis_argv(port, workdir):
    """redis-server on 127.0.0.1:port only, without RDB snapshots or AOF, files in workdir."""
    found = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not found:
        raise ReplicaConfigError("redis-server not found: `make test-tools` (or "
                                 "ops/check/install-tools.sh redis-server) installs Debian's")
    return [found, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir)]


def free_port():
    """A loopback port that was free a moment ago (redis-server cannot bind port 0 and report it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temp_dir():
    return tempfile.mkdtemp(prefix="course-redis-")
