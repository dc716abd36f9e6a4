"""grpc's interop test cases (doc/interop-test-descriptions.md in grpc/grpc), with grpcio as the
client and ChatMesh's `interop-server` (grpc.testing.TestService on the nghttp2 runtime) as the
server: each case as the descriptions define it. Also health Watch, which gRPC clients' own health
checking uses: the status at once, each change, and NOT_SERVING before a draining server's GOAWAY."""
import os
import threading

import grpc
import pytest
from google.protobuf import descriptor_pb2, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import GEN, ROOT, ServerProcess


def _interop_messages():
    """The grpc.testing message classes, built from proto/grpc/testing at run time (a generated
    `grpc.testing` Python package would shadow grpcio's own `grpc` package)."""
    from grpc_tools import protoc

    out = os.path.join(GEN, "grpc_testing.pb")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{os.path.join(ROOT, 'proto')}", f"-I{include}", "--include_imports",
                      f"--descriptor_set_out={out}", "grpc/testing/test.proto"])
    assert rc == 0, "grpcio-tools could not compile proto/grpc/testing"
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as fh:
        fds.ParseFromString(fh.read())
    return message_factory.GetMessages(list(fds.file))


M = _interop_messages()
Empty = M["grpc.testing.Empty"]
SimpleRequest = M["grpc.testing.SimpleRequest"]
SimpleResponse = M["grpc.testing.SimpleResponse"]
StreamingInputCallRequest = M["grpc.testing.StreamingInputCallRequest"]
StreamingInputCallResponse = M["grpc.testing.StreamingInputCallResponse"]
StreamingOutputCallRequest = M["grpc.testing.StreamingOutputCallRequest"]
StreamingOutputCallResponse = M["grpc.testing.StreamingOutputCallResponse"]
Payload = M["grpc.testing.Payload"]
EchoStatus = M["grpc.testing.EchoStatus"]
ResponseParameters = M["grpc.testing.ResponseParameters"]


class InteropStub:
    """grpc.testing.TestService by hand (generic calls with the message classes above)."""

    def __init__(self, channel, service="grpc.testing.TestService"):
        def method(kind, name, request, response):
            return getattr(channel, kind)(f"/{service}/{name}", request_serializer=request.SerializeToString,
                                          response_deserializer=response.FromString)

        self.EmptyCall = method("unary_unary", "EmptyCall", Empty, Empty)
        self.UnaryCall = method("unary_unary", "UnaryCall", SimpleRequest, SimpleResponse)
        self.StreamingOutputCall = method("unary_stream", "StreamingOutputCall", StreamingOutputCallRequest, StreamingOutputCallResponse)
        self.StreamingInputCall = method("stream_unary", "StreamingInputCall", StreamingInputCallRequest, StreamingInputCallResponse)
        self.FullDuplexCall = method("stream_stream", "FullDuplexCall", StreamingOutputCallRequest, StreamingOutputCallResponse)
        self.HalfDuplexCall = method("stream_stream", "HalfDuplexCall", StreamingOutputCallRequest, StreamingOutputCallResponse)
        self.UnimplementedCall = method("unary_unary", "UnimplementedCall", Empty, Empty)


@pytest.fixture(scope="module")
def server():
    proc = ServerProcess("interop-server", "--host", "127.0.0.1", "--port", "0")
    yield proc
    proc.stop_cleanly()


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.address) as channel:
        yield InteropStub(channel)


def zeros(n):
    return Payload(body=b"\0" * n)


def test_empty_unary(stub):
    assert stub.EmptyCall(Empty(), timeout=30) == Empty()


def test_large_unary(stub):
    response = stub.UnaryCall(SimpleRequest(response_size=314159, payload=zeros(271828)), timeout=30)
    assert response.payload.body == b"\0" * 314159


def test_client_streaming(stub):
    requests = [StreamingInputCallRequest(payload=zeros(n)) for n in (27182, 8, 1828, 45904)]
    response = stub.StreamingInputCall(iter(requests), timeout=30)
    assert response.aggregated_payload_size == 74922


def test_server_streaming(stub):
    sizes = (31415, 9, 2653, 58979)
    request = StreamingOutputCallRequest(response_parameters=[ResponseParameters(size=n) for n in sizes])
    responses = list(stub.StreamingOutputCall(request, timeout=30))
    assert [len(r.payload.body) for r in responses] == list(sizes)
    assert all(r.payload.body == b"\0" * len(r.payload.body) for r in responses)


def test_ping_pong(stub):
    pairs = ((31415, 27182), (9, 8), (2653, 1828), (58979, 45904))
    outgoing = []
    ready = threading.Condition()

    def requests():
        for i in range(len(pairs)):
            with ready:
                ready.wait_for(lambda: len(outgoing) > i, timeout=30)
                item = outgoing[i]
            yield item

    def send(i):
        with ready:
            outgoing.append(StreamingOutputCallRequest(response_parameters=[ResponseParameters(size=pairs[i][0])],
                                                       payload=zeros(pairs[i][1])))
            ready.notify_all()

    send(0)
    call = stub.FullDuplexCall(requests(), timeout=30)
    for i, (size, _) in enumerate(pairs):
        # The next request goes only after this response arrived: one at a time, as the case says.
        response = next(call)
        assert len(response.payload.body) == size
        if i + 1 < len(pairs):
            send(i + 1)
    with pytest.raises(StopIteration):
        next(call)
    assert call.code() == grpc.StatusCode.OK


def test_empty_stream(stub):
    assert list(stub.FullDuplexCall(iter([]), timeout=30)) == []


def test_half_duplex_answers_after_the_requests_end(stub):
    sizes = (5, 17, 0, 1000)
    requests = [StreamingOutputCallRequest(response_parameters=[ResponseParameters(size=n)]) for n in sizes]
    assert [len(r.payload.body) for r in stub.HalfDuplexCall(iter(requests), timeout=30)] == list(sizes)


def test_timeout_on_sleeping_server(stub):
    never = threading.Event()

    def requests():
        yield StreamingOutputCallRequest(payload=zeros(27182))
        never.wait(30)

    call = stub.FullDuplexCall(requests(), timeout=0.001)
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    never.set()
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_cancel_after_begin(stub):
    never = threading.Event()

    def requests():
        never.wait(30)
        return
        yield

    future = stub.StreamingInputCall.future(requests(), timeout=30)
    future.cancel()
    never.set()
    assert future.cancelled()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()


def test_cancel_after_first_response(stub):
    never = threading.Event()

    def requests():
        yield StreamingOutputCallRequest(response_parameters=[ResponseParameters(size=31415)], payload=zeros(27182))
        never.wait(30)

    call = stub.FullDuplexCall(requests(), timeout=30)
    assert len(next(call).payload.body) == 31415
    call.cancel()
    never.set()
    with pytest.raises(grpc.RpcError) as err:
        next(call)
    assert err.value.code() == grpc.StatusCode.CANCELLED


ECHO = (("x-grpc-test-echo-initial", "test_initial_metadata_value"), ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab"))


def test_custom_metadata_unary(stub):
    response, call = stub.UnaryCall.with_call(SimpleRequest(response_size=314159, payload=zeros(271828)), metadata=ECHO, timeout=30)
    assert len(response.payload.body) == 314159
    assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in call.initial_metadata()
    assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in call.trailing_metadata()


def test_custom_metadata_full_duplex(stub):
    request = StreamingOutputCallRequest(response_parameters=[ResponseParameters(size=314159)], payload=zeros(271828))
    call = stub.FullDuplexCall(iter([request]), metadata=ECHO, timeout=30)
    assert [len(r.payload.body) for r in call] == [314159]
    assert ("x-grpc-test-echo-initial", "test_initial_metadata_value") in call.initial_metadata()
    assert ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in call.trailing_metadata()


@pytest.mark.parametrize("message", ["test status message", "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"])
def test_status_code_and_message(stub, message):
    status = EchoStatus(code=2, message=message)
    with pytest.raises(grpc.RpcError) as err:
        stub.UnaryCall(SimpleRequest(response_status=status), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNKNOWN and err.value.details() == message
    call = stub.FullDuplexCall(iter([StreamingOutputCallRequest(response_status=status)]), timeout=30)
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    assert err.value.code() == grpc.StatusCode.UNKNOWN and err.value.details() == message


def test_unimplemented_method(stub):
    with pytest.raises(grpc.RpcError) as err:
        stub.UnimplementedCall(Empty(), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unimplemented_service(server):
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as err:
            InteropStub(channel, service="grpc.testing.UnimplementedService").UnimplementedCall(Empty(), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_client_that_stops_reading_holds_the_server_stream(server):
    """Flow control end to end: 2,000 responses of 64 KiB asked for, none read for a while; the server
    must hold its handler (bounded memory), then deliver every one once the client reads."""
    with grpc.insecure_channel(server.address) as channel:
        stub = InteropStub(channel)
        before = server.rss_kib()
        request = StreamingOutputCallRequest(response_parameters=[ResponseParameters(size=65536)] * 2000)
        call = stub.StreamingOutputCall(request, timeout=120)
        first = next(call)
        # Without back-pressure the server would queue 2,000 × 64 KiB = 125 MiB by now.
        deadline = threading.Event()
        deadline.wait(1.0)
        grown = server.rss_kib() - before
        assert grown < 48 * 1024, f"server grew by {grown} KiB while the client did not read"
        count = 1 + sum(1 for _ in call)
        assert len(first.payload.body) == 65536 and count == 2000


def test_health_watch_reports_now_then_not_serving_when_draining():
    proc = ServerProcess("interop-server", "--host", "127.0.0.1", "--port", "0")
    try:
        with grpc.insecure_channel(proc.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            unknown = health.Watch(health_pb2.HealthCheckRequest(service="grpc.testing.Nope"), timeout=60)
            assert next(unknown).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
            unknown.cancel()
            proc.proc.send_signal(15)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            # The watch then ends, so the drain does not wait for it.
            assert list(watch) == []
        assert proc.proc.wait(timeout=30) == 0
    finally:
        proc.stop()


# --- Compression (client_compressed_unary, server_compressed_unary, client_compressed_streaming,
# server_compressed_streaming), and what the gRPC spec says of encodings the server does not speak.

def BoolValue(value):
    return M["grpc.testing.BoolValue"](value=value)


def test_client_compressed_unary(stub):
    # The probe: a request that claims to be compressed and is not must be refused.
    with pytest.raises(grpc.RpcError) as err:
        stub.UnaryCall(SimpleRequest(expect_compressed=BoolValue(True), response_size=314159, payload=zeros(271828)), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for encoding in (grpc.Compression.Gzip, grpc.Compression.Deflate):
        response = stub.UnaryCall(SimpleRequest(expect_compressed=BoolValue(True), response_size=314159, payload=zeros(271828)),
                                  compression=encoding, timeout=30)
        assert response.payload.body == b"\0" * 314159
    response = stub.UnaryCall(SimpleRequest(expect_compressed=BoolValue(False), response_size=314159, payload=zeros(271828)), timeout=30)
    assert len(response.payload.body) == 314159


def test_server_compressed_unary(stub):
    for compressed in (True, False):
        response = stub.UnaryCall(SimpleRequest(response_compressed=BoolValue(compressed), response_size=314159, payload=zeros(271828)), timeout=30)
        assert response.payload.body == b"\0" * 314159


def test_client_compressed_streaming(stub):
    # grpcio compresses every message of a call or none: both calls, each checked by the server.
    compressed = [StreamingInputCallRequest(expect_compressed=BoolValue(True), payload=zeros(n)) for n in (27182, 45904)]
    assert stub.StreamingInputCall(iter(compressed), compression=grpc.Compression.Gzip, timeout=30).aggregated_payload_size == 73086
    plain = [StreamingInputCallRequest(expect_compressed=BoolValue(False), payload=zeros(n)) for n in (27182, 45904)]
    assert stub.StreamingInputCall(iter(plain), timeout=30).aggregated_payload_size == 73086


def test_server_compressed_streaming(stub):
    request = StreamingOutputCallRequest(response_parameters=[
        ResponseParameters(size=31415, compressed=BoolValue(True)), ResponseParameters(size=92653, compressed=BoolValue(False))])
    assert [len(r.payload.body) for r in stub.StreamingOutputCall(request, timeout=30)] == [31415, 92653]


def _raw_unary(server, path, message, headers=(), flag=0):
    """One call over a raw HTTP/2 connection: (response headers and trailers, the DATA bytes)."""
    import socket
    import struct

    import h2.config
    import h2.connection
    import h2.events

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", server.address),
                              ("content-type", "application/grpc"), ("te", "trailers"), *headers])
        conn.send_data(1, bytes([flag]) + struct.pack(">I", len(message)) + message, end_stream=True)
        sock.sendall(conn.data_to_send())
        fields, data = {}, b""
        while True:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection"
            for event in conn.receive_data(chunk):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    fields.update(dict(event.headers))
                if isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    return fields, data
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def test_a_compressed_response_has_the_flag_and_the_declared_encoding(server):
    import gzip

    request = SimpleRequest(response_compressed=BoolValue(True), response_size=100000).SerializeToString()
    fields, data = _raw_unary(server, "/grpc.testing.TestService/UnaryCall", request, headers=[("grpc-accept-encoding", "gzip")])
    assert fields.get("grpc-status") == "0" and fields.get("grpc-encoding") == "gzip"
    assert data[0] == 1, "the response message must carry the compressed flag"
    body = gzip.decompress(data[5:])
    assert len(SimpleResponse.FromString(body).payload.body) == 100000 and len(data) < 2000


def test_an_unsupported_encoding_is_unimplemented_naming_the_supported_ones(server):
    fields, _ = _raw_unary(server, "/grpc.testing.TestService/EmptyCall", b"", headers=[("grpc-encoding", "snappy")], flag=1)
    assert fields.get("grpc-status") == str(grpc.StatusCode.UNIMPLEMENTED.value[0])
    assert "gzip" in fields.get("grpc-accept-encoding", "") and "snappy" in fields.get("grpc-message", "")


def test_the_compressed_flag_without_an_encoding_is_internal(server):
    fields, _ = _raw_unary(server, "/grpc.testing.TestService/EmptyCall", b"\x00", flag=1)
    assert fields.get("grpc-status") == str(grpc.StatusCode.INTERNAL.value[0])


def test_a_zip_bomb_is_resource_exhausted_without_inflating_it(server):
    """8 MiB of zeros gzip to ~8 KiB: past the 4 MiB limit once inflated, and refused when it gets there."""
    import gzip

    bomb = gzip.compress(SimpleRequest(payload=zeros(8 << 20)).SerializeToString())
    assert len(bomb) < 64 * 1024
    before = server.rss_kib()
    fields, _ = _raw_unary(server, "/grpc.testing.TestService/UnaryCall", bomb, headers=[("grpc-encoding", "gzip")], flag=1)
    assert fields.get("grpc-status") == str(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]), fields
    assert server.rss_kib() - before < 32 * 1024


# --- Keepalive and connection ageing, seen on the wire.

def _raw_connection(server):
    import socket

    import h2.config
    import h2.connection

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return sock, conn


def _until_goaway(sock, conn, timeout=30):
    """The GOAWAY the server sends (error code, debug data), reading until it comes."""
    import time

    import h2.events

    sock.settimeout(timeout)
    end = time.time() + timeout
    while time.time() < end:
        data = sock.recv(65536)
        assert data, "closed without a GOAWAY"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ConnectionTerminated):
                return event.error_code, event.additional_data
        sock.sendall(conn.data_to_send())
    raise AssertionError("no GOAWAY")


def test_a_client_that_pings_too_often_gets_goaway_enhance_your_calm():
    proc = ServerProcess("interop-server", "--host", "127.0.0.1", "--port", "0", env={"CHATMESH_KEEPALIVE_MIN_PING_INTERVAL_S": "5"})
    try:
        sock, conn = _raw_connection(proc)
        for i in range(5):
            conn.ping(b"%08d" % i)
        sock.sendall(conn.data_to_send())
        code, debug = _until_goaway(sock, conn)
        assert code == 11 and debug == b"too_many_pings"  # ENHANCE_YOUR_CALM
        sock.close()
    finally:
        proc.stop_cleanly()


def test_an_idle_connection_gets_a_graceful_goaway():
    proc = ServerProcess("interop-server", "--host", "127.0.0.1", "--port", "0", env={"CHATMESH_MAX_CONNECTION_IDLE_S": "0.3"})
    try:
        sock, conn = _raw_connection(proc)
        code, _ = _until_goaway(sock, conn)
        assert code == 0  # NO_ERROR: a drain, not a failure
        sock.close()
    finally:
        proc.stop_cleanly()
