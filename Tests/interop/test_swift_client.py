"""The Swift client (`chatmesh echo`, MeshHTTP2's HTTP2Channel) calls a Python grpcio server."""
import json
import os
import socket
import subprocess
import time
from concurrent import futures

import grpc
import pytest

from conftest import AUTH_KEY, binary
from chatmesh.testing.v1 import echo_pb2, echo_pb2_grpc


class PythonEcho(echo_pb2_grpc.EchoServiceServicer):
    def Echo(self, request, context):
        metadata = dict(context.invocation_metadata())
        if request.text == "slow":
            # Up to 10 s, or until the caller gives up: a client that ignored its deadline would wait it out.
            end = time.monotonic() + 10
            while context.is_active() and time.monotonic() < end:
                time.sleep(0.01)
        if request.fail_with_code:
            context.set_trailing_metadata((("x-reason", "out-of-stock"),))
            context.abort(grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == request.fail_with_code).value),
                          "không tìm thấy đơn hàng 100% — " + request.text)
        remaining = context.time_remaining()
        text = request.text
        if "x-trace" in metadata:
            text += " trace=" + metadata["x-trace"]
        if remaining is not None and remaining < 60:
            text += " deadline=yes"
        return echo_pb2.EchoResponse(
            text=text,
            caller_shop_id="bearer-ok" if metadata.get("authorization", "").startswith("Bearer ") else "no-token",
        )


@pytest.fixture(scope="module")
def python_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    echo_pb2_grpc.add_EchoServiceServicer_to_server(PythonEcho(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def swift_echo(target, *args):
    out = subprocess.run([binary("chatmesh"), "echo", "--target", target, *args],
                         env={**os.environ, "CHATMESH_AUTH_KEY": AUTH_KEY}, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_success_with_vietnamese_text(python_server):
    reply = swift_echo(python_server, "--text", "Chào shop, còn áo size M không? 👕")
    assert reply["code"] == "OK"
    assert reply["text"] == "Chào shop, còn áo size M không? 👕"
    assert reply["caller_shop_id"] == "bearer-ok"


def test_deadline_travels_as_grpc_timeout(python_server):
    reply = swift_echo(python_server, "--text", "d", "--timeout-ms", "5000")
    assert reply["text"] == "d deadline=yes"


def test_custom_metadata(python_server):
    reply = swift_echo(python_server, "--text", "m", "--metadata", "x-trace=abc-123")
    assert reply["text"] == "m trace=abc-123"


def test_error_status_message_and_trailers(python_server):
    reply = swift_echo(python_server, "--text", "DH-42", "--fail-code", "5")
    assert reply["code"] == "NOT_FOUND"
    assert reply["message"] == "không tìm thấy đơn hàng 100% — DH-42"
    assert reply["trailer:x-reason"] == "out-of-stock"


def test_every_status_code_is_mapped(python_server):
    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK:
            continue
        reply = swift_echo(python_server, "--text", "x", "--fail-code", str(code.value[0]))
        assert reply["code"] == code.name, (code, reply)


def test_deadline_exceeded_against_a_slow_server(python_server):
    started = time.monotonic()
    reply = swift_echo(python_server, "--text", "slow", "--timeout-ms", "300")
    assert reply["code"] == "DEADLINE_EXCEEDED"
    # The CLI's start counts too; the server would have answered only after 10 s.
    assert time.monotonic() - started < 5


def test_unreachable_server_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reply = swift_echo(f"127.0.0.1:{port}", "--text", "x")
    assert reply["code"] == "UNAVAILABLE"


def test_round_robin_skips_a_dead_address(python_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    reply = swift_echo(f"{dead},{python_server}", "--text", "rr")
    assert reply["code"] == "OK"
