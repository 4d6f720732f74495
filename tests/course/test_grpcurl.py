"""grpcurl without -proto: reflection (grpcurl 1.8 speaks only v1alpha) and health."""

import base64
import re

import pytest
from conftest import Grpcurl


@pytest.fixture
def grpcurl(stack):
    return Grpcurl(stack.server, use_proto=False)


def test_list_services(grpcurl):
    services = grpcurl.ok("list").split()
    assert "mes_grpc.MessengerServer" in services
    assert "grpc.health.v1.Health" in services
    assert any(s.startswith("grpc.reflection.") for s in services), services


def test_list_methods(grpcurl):
    methods = grpcurl.ok("list", "mes_grpc.MessengerServer").split()
    assert sorted(methods) == [
        "mes_grpc.MessengerServer.ReadMessages",
        "mes_grpc.MessengerServer.SendMessage",
    ]


def test_describe_server_message(grpcurl):
    out = grpcurl.ok("describe", "mes_grpc.ServerMessageResponse")
    assert re.search(r"\bstring author = 1;", out), out
    assert re.search(r"\bstring text = 2;", out), out
    assert re.search(r"\.?google\.protobuf\.Timestamp sendTime = 3;", out), out


def test_describe_methods(grpcurl):
    out = " ".join(grpcurl.ok("describe", "mes_grpc.MessengerServer").split())
    send = "rpc SendMessage ( .mes_grpc.SendMessageRequest ) returns ( .mes_grpc.TimeResponse )"
    read = (
        "rpc ReadMessages ( .google.protobuf.Empty )"
        " returns ( stream .mes_grpc.ServerMessageResponse )"
    )
    assert send in out, out
    assert read in out, out


@pytest.mark.parametrize("service", ["", "mes_grpc.MessengerServer"])
def test_health_serving(grpcurl, service):
    status = grpcurl.call("grpc.health.v1.Health/Check", {"service": service})
    assert status == {"status": "SERVING"}


# ---------------------------------------------------------------- reflection, as reflection.proto says


def proto_strings(raw, wanted):
    """The string fields numbered `wanted` of one encoded protobuf message (no nesting)."""
    found, i = {n: [] for n in wanted}, 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            b = raw[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    while i < len(raw):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            varint()
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            length = varint()
            if number in found:
                found[number].append(raw[i:i + length].decode())
            i += length
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return found


def described_files(answer):
    """(name, imports) of each FileDescriptorProto in a reflection answer, in order."""
    files = []
    for encoded in answer["fileDescriptorResponse"]["fileDescriptorProto"]:
        fields = proto_strings(base64.b64decode(encoded), (1, 3))  # name, dependency
        files.append((fields[1][0], fields[3]))
    return files


@pytest.mark.parametrize("request_field,value", [
    ("file_containing_symbol", "mes_grpc.MessengerServer"),
    ("file_by_filename", "messenger.proto"),
])
def test_reflection_answers_with_transitive_dependencies(grpcurl, request_field, value):
    # The field report's exact repro (grpcurl 1.8 speaks v1alpha): the answer must carry the file
    # "with transitive dependencies", so a client can build its descriptor pool from it alone.
    answer = grpcurl.call("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                          {request_field: value})
    files = described_files(answer)
    assert files[0][0] == "messenger.proto", files
    names = {name for name, _ in files}
    assert names == {"messenger.proto", "google/protobuf/empty.proto",
                     "google/protobuf/timestamp.proto"}, files
    assert len(names) == len(files), f"a file sent twice: {files}"
    for name, imports in files:
        assert set(imports) <= names, f"{name} imports {imports}, not all in the answer"


def test_reflection_unknown_symbol_is_not_found_in_the_answer(grpcurl):
    answer = grpcurl.call("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                          {"file_containing_symbol": "mes_grpc.NoSuchService"})
    assert answer["errorResponse"]["errorCode"] == 5, answer  # NOT_FOUND, the stream is not failed
    assert "mes_grpc.NoSuchService" in answer["errorResponse"]["errorMessage"], answer


def test_health_check_of_an_unknown_service_is_not_found(grpcurl):
    # health.proto: "If the requested service is unknown, the call will fail with status NOT_FOUND."
    r = grpcurl.run("grpc.health.v1.Health/Check", data={"service": "mes_grpc.NoSuchService"})
    assert r.returncode != 0 and "Code: NotFound" in r.stderr, (r.returncode, r.stdout, r.stderr)
