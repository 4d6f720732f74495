"""The course's server scenarios, through grpcurl, each run with -proto and through reflection."""

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from conftest import EXTERNAL, SEND, TIME_RE, Grpcurl, start_server


def test_send_time_strictly_increasing(grpc):
    times = [grpc.send("alice", f"message {i}")["sendTime"] for i in range(10)]
    for t in times:
        assert TIME_RE.match(t), t
    assert all(a < b for a, b in zip(times, times[1:])), times
    # UTC, and now: the string ends in Z, so it must be close to the current UTC time.
    first = datetime.strptime(times[0][:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
    assert abs(datetime.now(timezone.utc) - first) < timedelta(minutes=1), times[0]


def test_stream_gets_exactly_the_messages_sent_after_it_opened(grpc):
    before = grpc.send("alice", "sent before the stream opened")
    with grpc.stream() as stream:
        chat = [("alice", "hey"), ("bob", "hi alice"), ("alice", "ok")]
        sent = [grpc.send(author, text) for author, text in chat]
        got = stream.wait_for(sent[-1])
    assert before not in got
    assert got == sent


def test_concurrent_streams_receive_identical_sequences(grpc):
    with grpc.stream() as first, grpc.stream() as second:
        # Concurrent senders: the streams must still agree on one order, ascending by sendTime.
        with ThreadPoolExecutor(3) as pool:
            jobs = [("author %d" % (i % 3), "text %d" % i) for i in range(9)]
            sent = list(pool.map(lambda job: grpc.send(*job), jobs))
        expected = sorted(sent, key=lambda m: m["sendTime"])
        got_first = first.wait_for(expected[-1])
        got_second = second.wait_for(expected[-1])
    assert got_first == expected
    assert got_second == expected


def test_empty_author_and_text_allowed(grpc):
    with grpc.stream() as stream:
        sent = [grpc.send("", ""), grpc.send("", "no author"), grpc.send("no text", "")]
        assert stream.wait_for(sent[-1]) == sent


def test_unicode_round_trip(grpc):
    with grpc.stream() as stream:
        sent = [grpc.send("Иван", "Привет 👋 \"quoted\" \\ back\nslash")]
        assert stream.wait_for(sent[-1]) == sent


def test_text_over_64_kib_is_invalid_argument(grpc):
    with grpc.stream() as stream:
        r = grpc.run(SEND, data={"author": "alice", "text": "x" * (64 * 1024 + 1)})
        assert r.returncode != 0, r.stdout[:200]
        assert "Code: InvalidArgument" in r.stderr, r.stderr
        accepted = grpc.send("alice", "x" * (64 * 1024))  # exactly 64 KiB is still fine
        assert stream.wait_for(accepted) == [accepted]  # the rejected one was not broadcast


@pytest.mark.skipif(EXTERNAL, reason="needs a server of its own")
def test_sigterm_with_open_stream_exits_zero():
    server, addr = start_server()
    grpc, stream = Grpcurl(addr, use_proto=False), None
    try:
        stream = grpc.stream()
        sent = grpc.send("alice", "last words")
        stream.wait_for(sent)
        assert server.stop() == 0, server.describe()
        # The subscriber's stream must end too, not hang on a server that is gone.
        assert stream.proc.out.wait_closed(15), "stream still open after the server exited"
    finally:
        if stream:
            stream.proc.stop()
        server.stop()


def test_stream_stays_open(grpc):
    with grpc.stream() as stream:
        one = grpc.send("alice", "one")
        stream.wait_for(one)
        assert stream.proc.popen.poll() is None, stream.proc.describe()
        two = grpc.send("alice", "two")
        assert stream.wait_for(two) == [one, two]
