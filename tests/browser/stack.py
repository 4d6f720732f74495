"""Real binaries for the browser tests: a messenger-server and messenger-clients on loopback
ports read from their logs, a TCP cut-proxy, and the Chromium launch. Nothing sleeps for
readiness: every wait is for an event (a log line, a DOM state), bounded by a timeout."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("MESSENGER_BIN_DIR") or REPO / "target" / "release")
OUT_DIR = Path(os.environ.get("MESSENGER_BROWSER_OUT") or REPO / "target" / "browser")
CHROMIUM = os.environ.get("MESSENGER_CHROMIUM") or "/usr/bin/chromium"
START_TIMEOUT = 30.0
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")

# Headless, no sandbox (root in CI), and nothing but loopback: no background or component
# traffic, and every host name other than localhost resolves to nothing.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]


class Proc:
    """A child process whose combined output is collected in the background."""

    def __init__(self, name, env):
        self.name = name
        path = BIN_DIR / name.split("#")[0]
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"{path} not found: run `make build` or set MESSENGER_BIN_DIR")
        self.popen = subprocess.Popen(
            [str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NO_COLOR": "1", **env},
        )
        self._text = ""
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        while chunk := os.read(self.popen.stdout.fileno(), 65536):
            with self._cond:
                self._text += chunk.decode("utf-8", "replace")
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_addr(self, key):
        """Waits for a `key=HOST:PORT` log line; returns 127.0.0.1:PORT."""
        pattern = re.compile(re.escape(key) + r"=[^\s:]+:(\d+)")
        deadline = time.monotonic() + START_TIMEOUT
        with self._cond:
            while not (found := pattern.search(ANSI_RE.sub("", self._text))):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name}: no {key}= line\n{self._text[-4000:]}")
                self._cond.wait(remaining)
        return f"127.0.0.1:{found.group(1)}"

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class Stack:
    """One server and the clients started against it; stopped by close()."""

    def __init__(self):
        self.procs = []
        self.server = None
        self.server_addr = None

    def start_server(self, port=0):
        env = {
            "MESSENGER_SERVER_HOST": "127.0.0.1",
            "MESSENGER_SERVER_PORT": str(port),
            "MESSENGER_METRICS_PORT": "0",
        }
        self.server = Proc("messenger-server", env)
        self.procs.append(self.server)
        self.server_addr = self.server.wait_addr("grpc_addr")
        return self.server_addr

    def start_client(self, **env):
        client = Proc(
            "messenger-client",
            {
                "MESSENGER_SERVER_ADDR": self.server_addr,
                "MESSENGER_HTTP_HOST": "127.0.0.1",
                "MESSENGER_HTTP_PORT": "0",
                "MESSENGER_RECONNECT_MAX_BACKOFF_MS": "200",
                **env,
            },
        )
        self.procs.append(client)
        return client.wait_addr("http_addr")

    def kill9_server(self):
        self.server.stop(signal.SIGKILL)

    def restart_server(self):
        return self.start_server(port=int(self.server_addr.rsplit(":", 1)[1]))

    def close(self):
        for p in reversed(self.procs):
            p.stop()


class CutProxy:
    """A loopback TCP proxy in front of a client whose connections can be cut: while cut, open
    connections are closed and new ones are accepted and closed at once."""

    def __init__(self, target):
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.cut = threading.Event()
        self.lock = threading.Lock()
        self.open = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                downstream.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open.update((downstream, upstream))
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def set_cut(self, cut):
        if not cut:
            self.cut.clear()
            return
        self.cut.set()
        with self.lock:
            sockets, self.open = self.open, set()
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.set_cut(True)
        self.listener.close()
