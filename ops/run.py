#!/usr/bin/env python3
"""`make run`: the server and two clients on this host, as one unit.

- Each process's output (stdout and stderr) is printed line by line, prefixed with its name
  (`server  | `, `client1 | `, `client2 | `), so interleaved logs say who wrote what.
- If any process ends, for whatever reason, the others are stopped (SIGTERM, then SIGKILL after
  the grace period) and one line on stderr says which one ended, how (exit status or signal) and
  why (the last error it logged, else its last line). The exit status is then 1.
- Ctrl-C (SIGINT) or SIGTERM stops all three; the exit status is then 0.

The environment is passed on, so any MESSENGER_* variable applies to all three (e.g.
MESSENGER_SERVER_HOST=127.0.0.1); the ports come from the flags.

Usage: run.py [--bin-dir target/release] [--server-port 51075] [--client1-port 8080]
              [--client2-port 8081] [--grace-secs 15]
"""

import argparse
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

PREFIX_WIDTH = len("client1")
KEEP_LINES = 40
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Child:
    """One supervised process: its output is relayed with a prefix and its last lines kept."""

    def __init__(self, name, argv, env, ended):
        self.name = name
        self.lines = []
        # The child starts with SIGINT and SIGTERM blocked (the mask survives exec) and
        # unblocks them once its handlers are installed, first thing in main: a stop sent
        # while it is still starting stays pending and is handled, instead of killing it
        # before it could stop cleanly.
        saved = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                # Its own process group: the terminal's Ctrl-C reaches the children only
                # through us, so the order of the stop is ours.
                start_new_session=True,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, saved)
        threading.Thread(target=self._relay, args=(ended,), daemon=True).start()

    def _relay(self, ended):
        prefix = f"{self.name:<{PREFIX_WIDTH}} | "
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines = (self.lines + [line])[-KEEP_LINES:]
            sys.stdout.write(prefix + line + "\n")
            sys.stdout.flush()
        self.proc.wait()
        ended.put(self)

    def how(self):
        code = self.proc.returncode
        if code is None:
            return "is running"
        if code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def why(self):
        for line in reversed(self.lines):
            if "ERROR" in line or line.startswith("error:"):
                return line.strip()
        return self.lines[-1].strip() if self.lines else "it wrote nothing"

    def stop(self, sig):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default="target/release")
    ap.add_argument("--server-port", type=int, default=51075)
    ap.add_argument("--client1-port", type=int, default=8080)
    ap.add_argument("--client2-port", type=int, default=8081)
    ap.add_argument("--grace-secs", type=float, default=15.0)
    args = ap.parse_args()
    bin_dir = Path(args.bin_dir)

    stop_requested = threading.Event()
    ended = queue.Queue()

    def on_signal(signum, _frame):
        stop_requested.set()
        ended.put(None)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    env = dict(os.environ)
    server_addr = f"localhost:{args.server_port}"
    children = [
        Child(
            "server",
            [str(bin_dir / "messenger-server")],
            {**env, "MESSENGER_SERVER_PORT": str(args.server_port)},
            ended,
        )
    ]
    for name, port in (("client1", args.client1_port), ("client2", args.client2_port)):
        children.append(
            Child(
                name,
                [str(bin_dir / "messenger-client")],
                {**env, "MESSENGER_SERVER_ADDR": server_addr, "MESSENGER_HTTP_PORT": str(port)},
                ended,
            )
        )

    first = ended.get()
    status = 0
    if first is not None and not stop_requested.is_set():
        others = [c.name for c in children if c is not first]
        print(
            f"make run: {first.name} {first.how()} ({first.why()}); stopping {', '.join(others)}",
            file=sys.stderr,
            flush=True,
        )
        status = 1
    for child in children:
        child.stop(signal.SIGTERM)
    for child in children:
        try:
            child.proc.wait(timeout=args.grace_secs)
        except subprocess.TimeoutExpired:
            print(f"make run: {child.name} still running after {args.grace_secs:g} s; killing it",
                  file=sys.stderr, flush=True)
            child.stop(signal.SIGKILL)
            child.proc.wait()
    summary = ", ".join(f"{c.name} {c.how()}" for c in children)
    print(f"make run: stopped ({summary})", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
