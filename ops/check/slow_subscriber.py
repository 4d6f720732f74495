"""A raw HTTP/2 ReadMessages subscriber that never reads a message.

It opens the stream with a stream-level flow-control window of 0, waits for the response headers
(the contract's "subscription registered" signal), and then never reads again, so the server can
send it nothing: its queue fills and the server disconnects it as slow
(messenger_subscriber_disconnects_total{reason="slow"}). Standard library only: the frames and
the HPACK block (literal header fields, no Huffman) are written by hand.
"""

import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS = 0x0, 0x1, 0x4
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
SETTINGS_ENABLE_PUSH, SETTINGS_INITIAL_WINDOW_SIZE = 0x2, 0x4


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    """HPACK 'literal header field without indexing, new name' (RFC 7541 6.2.2)."""
    name, value = name.encode(), value.encode()
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


class SlowSubscriber:
    def __init__(self, host, port, timeout=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        settings = struct.pack(">HI", SETTINGS_ENABLE_PUSH, 0) + struct.pack(">HI", SETTINGS_INITIAL_WINDOW_SIZE, 0)
        block = b"".join(literal(k, v) for k, v in [
            (":method", "POST"), (":scheme", "http"), (":path", "/mes_grpc.MessengerServer/ReadMessages"),
            (":authority", f"{host}:{port}"), ("content-type", "application/grpc"), ("te", "trailers"),
        ])
        empty_message = b"\x00\x00\x00\x00\x00"  # gRPC frame: uncompressed, 0 bytes (google.protobuf.Empty)
        self.sock.sendall(PREFACE + frame(SETTINGS, 0, 0, settings) + frame(HEADERS, END_HEADERS, 1, block)
                          + frame(DATA, END_STREAM, 1, empty_message))
        self._wait_headers(time.monotonic() + timeout)

    def _read_exact(self, n, deadline):
        buf = b""
        while len(buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection before the response headers")
            buf += chunk
        return buf

    def _wait_headers(self, deadline):
        """Reads frames (acknowledging the server's SETTINGS) until HEADERS on stream 1 arrives."""
        while True:
            head = self._read_exact(9, deadline)
            length = int.from_bytes(head[:3], "big")
            kind, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
            self._read_exact(length, deadline)
            if kind == SETTINGS and not flags & ACK:
                self.sock.sendall(frame(SETTINGS, ACK, 0))
            if kind == HEADERS and stream == 1:
                return

    def close(self):
        self.sock.close()
