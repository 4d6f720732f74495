"""The course's HTTP scenarios through two clients, plus the contract's error handling."""

import pytest
from conftest import TIME_RE, collect_n, flush, post_json, request, send_http

TEXTS = ["hey", "hi", "Привет 👋", 'with "quotes" and \\', "two\nlines"]


def test_every_client_holds_all_messages_sorted(clients):
    sent = []
    for i in range(10):
        addr = clients[i % 2]
        sent.append(send_http(addr, f"user {i % 2 + 1}", f"{TEXTS[i % len(TEXTS)]} #{i}"))
    times = [m["sendTime"] for m in sent]
    assert times == sorted(times) and len(set(times)) == len(times), times
    for addr in clients:
        got = collect_n(addr, len(sent))
        # Whole objects: author, text, and sendTime byte-identical to what /sendMessage returned.
        assert got == sent, addr
        assert flush(addr) == [], addr


def test_empty_strings_round_trip(clients):
    sent = send_http(clients[0], "", "")
    for addr in clients:
        assert collect_n(addr, 1) == [sent]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", None])
def test_body_is_json_whatever_the_content_type(clients, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"author": "alice", "text": "sent like curl -d"}'
    r = request(clients[0], "POST", "/sendMessage", body, headers)
    assert r.status == 200, r
    send_time = r.json()["sendTime"]
    assert TIME_RE.match(send_time)
    expected = {"author": "alice", "text": "sent like curl -d", "sendTime": send_time}
    for addr in clients:
        assert collect_n(addr, 1) == [expected]


BAD_BODIES = {
    "empty": b"",
    "malformed": b'{"author": "alice", "text": ',
    "missing_text": b'{"author": "alice"}',
    "missing_author": b'{"text": "hey"}',
    "wrong_type": b'{"author": "alice", "text": 42}',
    "null_field": b'{"author": null, "text": "hey"}',
    "array": b'[{"author": "alice", "text": "hey"}]',
    "string": b'"hey"',
    "invalid_utf8": b'{"author": "\xff\xfe", "text": "hey"}',
    "deep_nesting": b'{"author": ' + b"[" * 100_000 + b"]" * 100_000 + b', "text": "hey"}',
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_body_is_400_json(clients, body):
    r = request(clients[0], "POST", "/sendMessage", body, {"Content-Type": "application/json"})
    assert r.status == 400, r
    r.error()
    assert flush(clients[0]) == []  # nothing was sent


def test_body_over_1_mib_is_413_json(clients):
    body = b'{"author": "alice", "text": "' + b"x" * (1024 * 1024) + b'"}'
    r = request(clients[0], "POST", "/sendMessage", body, {"Content-Type": "application/json"})
    assert r.status == 413, r.status
    r.error()


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("POST", "/nope", 404),
        ("GET", "/nope", 404),
        # GET / is the chat page (client/BROWSER.md); other methods there are 405.
        ("POST", "/", 405),
        ("GET", "/sendMessage", 405),
        ("GET", "/getAndFlushMessages", 405),
    ],
)
def test_unknown_route_or_method_is_json(clients, method, path, status):
    r = request(clients[0], method, path)
    assert r.status == status, r
    r.error()


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints(stack, path):
    for addr in (stack.client1, stack.client2):
        r = request(addr, "GET", path)
        assert r.status == 200, r


def test_send_response_is_only_send_time(clients):
    r = post_json(clients[1], "/sendMessage", {"author": "bob", "text": "hi"})
    assert r.status == 200, r
    assert list(r.json()) == ["sendTime"]
