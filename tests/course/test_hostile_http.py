"""Hostile HTTP input against a real messenger-client (with the real server behind it).

1. schemathesis generates requests from the client's own /openapi.json (fixed seed) and checks
   every response against it: no 5xx, documented status, content type, headers and body schema.
   The client's own request counter confirms the number of requests it answered.
2. Raw garbage the generator would not produce: random bytes, every truncation of a valid body,
   a 10 MiB body (with and without Content-Length), deep nesting, wrong types, invalid UTF-8.
   Each gets a 4xx JSON error, and nothing of it reaches the chat.

After each, the client process is still running and /healthz answers.
"""

import http.client
import json
import random
import re
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
from conftest import collect_n, flush, request, send_http

SEED = 20261122
# Per API operation; schemathesis stops earlier for operations without inputs.
MAX_EXAMPLES = 1500
MIN_SEND_REQUESTS = 1000
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
]
COUNTER_RE = re.compile(r'^http_server_requests_total\{method="(\w+)",route="([^"]*)",status="(\d+)"\} (\d+)$', re.M)


def request_counts(addr):
    """{(method, route, status): count} from the client's /metrics."""
    r = request(addr, "GET", "/metrics")
    assert r.status == 200, r
    text = r.body.decode()
    return {(m, route, int(s)): int(n) for m, route, s, n in COUNTER_RE.findall(text)}


def assert_alive(stack, addr):
    proc = stack.procs.get("client1" if addr == stack.client1 else "client2")
    if proc is not None:
        assert proc.popen.poll() is None, f"client exited: {proc.describe()}"
    r = request(addr, "GET", "/healthz")
    assert r.status == 200 and r.json() == {"status": "ok"}, r


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_5xx_and_no_schema_violation(stack, tmp_path):
    addr = stack.client1
    before = request_counts(addr)
    report = tmp_path / "schemathesis.json"
    argv = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"http://{addr}/openapi.json",
        "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES),
        "--checks", ",".join(CHECKS),
        # GET /events never ends (Server-Sent Events, keep-alives every 15 s); its
        # bad input (Last-Event-ID, ?since=) is tested with a bound in tests/e2e/events.rs.
        "--exclude-path", "/events",
        "--phases", "examples,coverage,fuzzing",
        "--workers", "1",
        "--generation-database", "none",
        "--request-timeout", "30",
        "--report", "json",
        "--report-json-path", str(report),
        "--no-color",
    ]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, timeout=540, cwd=tmp_path)
    output = run.stdout[-20000:] + run.stderr[-5000:]
    assert run.returncode == 0, output
    summary = json.loads(report.read_text())
    assert summary["complete"] and not summary["failures"] and not summary["errors"], output
    cases = summary["test_cases"]["generated"]

    after = request_counts(addr)
    delta = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    server_errors = {k: n for k, n in delta.items() if k[2] >= 500}
    assert not server_errors, f"5xx answered during the run: {server_errors}"
    sends = sum(n for (m, route, _), n in delta.items() if (m, route) == ("POST", "/sendMessage"))
    by_status = {}
    for (_, _, status), n in delta.items():
        by_status[status] = by_status.get(status, 0) + n
    print(
        f"\nschemathesis: {cases} test cases (seed {SEED}); the client answered {sum(delta.values())} "
        f"requests, {sends} of them POST /sendMessage; by status {dict(sorted(by_status.items()))}; 0 failures"
    )
    assert sends >= MIN_SEND_REQUESTS, f"only {sends} /sendMessage requests: {output}"
    assert_alive(stack, addr)
    flush(addr)  # what the generator sent is not for the other tests


def raw_exchange(addr, data, timeout=30):
    """Writes raw bytes (from a thread, so an early answer is still read) and reads the reply."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        import threading

        def send():
            try:
                sock.sendall(data)
            except OSError:
                pass

        t = threading.Thread(target=send, daemon=True)
        t.start()
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
        t.join(10)
    reply = b"".join(chunks)
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head[9:12]), head.decode(errors="replace"), body


def garbage_bodies():
    rng = random.Random(SEED)
    valid = b'{"author": "alice", "text": "hello \xd0\xbc\xd0\xb8\xd1\x80"}'
    cases = {}
    for i in range(40):
        cases[f"random_bytes_{i}"] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
        # Random bytes after an opening brace, so the object path is taken.
        cases[f"random_object_{i}"] = b"{" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 512)))
    for n in range(len(valid)):
        cases[f"truncated_{n}"] = valid[:n]
    values = ["1", "1.5", "-0", "1e999", "true", "false", "null", "[]", '["a"]', "{}", '{"a":"b"}']
    for v in values:
        cases[f"author_{v}"] = f'{{"author": {v}, "text": "t"}}'.encode()
        cases[f"text_{v}"] = f'{{"author": "a", "text": {v}}}'.encode()
    for name, bad in {
        "lone_continuation": b"\x80",
        "overlong_slash": b"\xc0\xaf",
        "utf16_surrogate": b"\xed\xa0\x80",
        "truncated_multibyte": b"\xe2\x82",
        "beyond_unicode": b"\xf4\x90\x80\x80",
        "ff": b"\xff",
    }.items():
        cases[f"utf8_{name}_author"] = b'{"author": "a' + bad + b'", "text": "t"}'
        cases[f"utf8_{name}_key"] = b'{"author": "a", "text": "t", "k' + bad + b'": 1}'
    cases["escaped_lone_surrogate"] = b'{"author": "\\ud800", "text": "t"}'
    cases["deep_object_nesting"] = b'{"author": "a", "text": "t", "x": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}"
    cases["deep_unclosed"] = b"{" + b"[" * 1_000_000
    cases["duplicate_field_wrong_type"] = b'{"author": "a", "text": "t", "text": 5}'
    cases["trailing_garbage"] = b'{"author": "a", "text": "t"} x'
    cases["nul_bytes"] = b"\x00" * 1000
    return cases


GARBAGE = garbage_bodies()


def test_garbage_bodies_get_400_json_and_reach_nobody(stack, clients):
    addr = clients[0]
    wrong = {}
    for name, body in GARBAGE.items():
        r = request(addr, "POST", "/sendMessage", body, {"Content-Type": "application/json"})
        if r.status != 400 or "application/json" not in r.content_type or not json.loads(r.body).get("error"):
            wrong[name] = (r.status, r.body[:200])
    assert not wrong, f"{len(wrong)} of {len(GARBAGE)} bodies not answered 400 JSON: {wrong}"
    print(f"\n{len(GARBAGE)} garbage bodies, each answered 400 with a JSON error")
    assert_alive(stack, addr)
    marker = send_http(addr, "after", "garbage")
    assert collect_n(clients[1], 1) == [marker], "no garbage reached the chat"
    assert collect_n(addr, 1) == [marker]


def test_garbage_to_flush_is_ignored(clients):
    r = request(clients[0], "POST", "/getAndFlushMessages", GARBAGE["random_bytes_0"])
    assert r.status == 200 and r.json() == [], r


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_10_mib_body_is_413_json(stack, clients, framing):
    addr = clients[0]
    body = b'{"author": "a", "text": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    head = f"POST /sendMessage HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n"
    if framing == "chunked":
        step = 64 * 1024
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[i : i + step] for i in range(0, len(body), step)))
        data = (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"
    else:
        data = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    status, head_text, reply = raw_exchange(addr, data)
    assert status == 413, head_text
    assert "application/json" in head_text.lower() and json.loads(reply)["error"], reply
    assert_alive(stack, addr)


def events_positions():
    """Last-Event-ID / ?since= values: valid, near-valid and random (seeded)."""
    rng = random.Random(SEED)
    fixed = ["e:0", "e:1", "abc:18446744073709551615", "a:b:7", "", ":", "e:", ":1", "e:-1", "e:1x",
             "e:99999999999999999999", "e 1:2", "é:1", "e:1\t", "%00:1", "e:+1"]
    alphabet = "abcdef0123456789:-_ %+é\t"
    return fixed + ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 24))) for _ in range(120)]


def open_events(addr, query="", headers=None, bound=5.0):
    """GET /events read with a bound: (status, headers, the first event block or the error body)."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=bound)
    try:
        conn.request("GET", "/events" + query, headers=headers or {})
        r = conn.getresponse()
        if r.status != 200:
            return r.status, r, r.read()
        first = b""
        while b"\n\n" not in first:
            first += r.read1(4096)
        return r.status, r, first
    finally:
        conn.close()


def test_events_answers_every_position_within_a_bound(stack):
    """GET /events never ends, so the generator above skips it; here every position is read with
    a bound instead: 200 with a `ready` event first, or a documented 4xx JSON error."""
    addr = stack.client1
    statuses = {}
    for value in events_positions():
        cases = [("?since=" + urllib.parse.quote(value, safe=""), None)]
        if all(32 <= ord(c) < 127 for c in value):
            cases.append(("", {"Last-Event-ID": value}))
        for query, headers in cases:
            status, r, first = open_events(addr, query, headers)
            statuses[status] = statuses.get(status, 0) + 1
            assert status in (200, 400), (value, status, first)
            if status == 200:
                assert r.getheader("Content-Type").startswith("text/event-stream"), value
                assert first.startswith(b"event: ready\n"), (value, first)
            else:
                assert r.getheader("Content-Type") == "application/json", value
                assert "<epoch>:<offset>" in json.loads(first)["error"], (value, first)
    print(f"\n/events: {sum(statuses.values())} positions, by status {statuses}")
    assert statuses.get(200) and statuses.get(400), statuses
    assert_alive(stack, addr)
