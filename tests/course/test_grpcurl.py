"""grpcurl without -proto: reflection (grpcurl 1.8 speaks only v1alpha) and health."""

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
