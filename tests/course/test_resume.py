"""History and resume through grpcurl: a plain stream is unchanged (exactly author, text,
sendTime), offsets appear only when asked for, and messenger-since replays from history."""

import re
import subprocess

from conftest import READ, WAIT_TIMEOUT, Stream


def opt_in_stream(grpc, *headers):
    flags = ["-v"]
    for h in headers:
        flags += ["-H", h]
    return Stream(grpc.argv(READ, flags=flags))


def header(stream, name):
    """A response header's value as grpcurl -v prints it (the descriptor it also prints mentions
    the same names in comments, so only whole `name: value` lines count)."""
    found = re.search(rf"^{name}: (\S+)$", stream.proc.out.text, re.MULTILINE)
    return found and found.group(1)


def epoch_of(stream):
    found = re.search(r"^messenger-epoch: (\S+)$", stream.proc.out.text, re.MULTILINE)
    assert found, stream.proc.out.text
    return found.group(1)


def first_n(stream, n):
    got = stream.proc.out.wait(lambda t: len(m := Stream.parse(t)) >= n and m, WAIT_TIMEOUT)
    assert got, f"{n} messages not received; got {stream.messages()}"
    return got[:n]


def test_plain_stream_shows_exactly_author_text_send_time(grpc):
    with grpc.stream() as stream:
        assert header(stream, "messenger-epoch"), stream.proc.out.text
        assert header(stream, "messenger-recovered") is None
        sent = grpc.send("alice", "plain")
        got = stream.wait_for(sent)
    assert got == [sent]
    assert set(got[0]) == {"author", "text", "sendTime"}


def test_offsets_only_when_asked_and_since_replays_from_history(grpc):
    with opt_in_stream(grpc, "messenger-offsets: 1") as stream:
        epoch = epoch_of(stream)
        sent = [grpc.send("alice", f"offset {i}") for i in range(3)]
        got = first_n(stream, 3)
    # proto3 JSON prints a uint64 as a string.
    offsets = [int(m.pop("offset")) for m in got]
    assert got == sent
    assert offsets == list(range(offsets[0], offsets[0] + 3)), offsets

    with opt_in_stream(grpc, f"messenger-since: {epoch}:{offsets[0]}") as resumed:
        assert header(resumed, "messenger-recovered") == "true", resumed.proc.out.text
        replayed = first_n(resumed, 2)
    assert [int(m.pop("offset")) for m in replayed] == offsets[1:]
    assert replayed == sent[1:]


def test_malformed_since_is_invalid_argument(grpc):
    argv = [str(a) for a in grpc.argv(READ, flags=["-H", "messenger-since: not-a-position"])]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "InvalidArgument" in r.stderr, r.stderr
    assert "messenger-since" in r.stderr and "<epoch>:<offset>" in r.stderr, r.stderr
