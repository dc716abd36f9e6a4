"""Hostile peers: each gets a gRPC error or a closed connection; the process
stays up, its memory stays bounded, and the next good call works. The HTTP/2 attacks by name
(floods, slow and stalled peers, protocol violations, connection exhaustion) are in test_http2_attacks.py."""
import signal
import socket
import struct
import time

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

from conftest import EchoServer, mint_token, wait_until
from chatmesh.testing.v1 import echo_pb2, echo_pb2_grpc

SHOP = "shop-hostile"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture(scope="module")
def server(shared_echo_server):
    return shared_echo_server


@pytest.fixture(scope="module")
def token():
    return mint_token(SHOP)


def good_call_works(server, token):
    channel = grpc.insecure_channel(server.address)
    try:
        reply = echo_pb2_grpc.EchoServiceStub(channel).Echo(
            echo_pb2.EchoRequest(shop_id=SHOP, text="still serving"),
            metadata=[("authorization", "Bearer " + token)], timeout=5)
        return reply.text == "still serving"
    finally:
        channel.close()


def connect(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def closed_by_server(sock, timeout=5.0):
    """True once the server closes the connection (reading what it sent first)."""
    sock.settimeout(timeout)
    end = time.time() + timeout
    try:
        while time.time() < end:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def frame(kind, flags, stream_id, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def h2_client(sock):
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    return conn


def grpc_headers(server, token, path="/chatmesh.testing.v1.EchoService/Echo"):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", server.address),
            ("content-type", "application/grpc"), ("te", "trailers"), ("authorization", "Bearer " + token)]


def read_response(conn, sock, stream_id, timeout=5.0):
    """Headers and trailers of one stream as a dict, or 'reset' / 'closed'."""
    sock.settimeout(timeout)
    fields = {}
    end = time.time() + timeout
    while time.time() < end:
        data = sock.recv(65536)
        if not data:
            return "closed"
        for event in conn.receive_data(data):
            if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)) and event.stream_id == stream_id:
                fields.update(dict(event.headers))
            if isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                return "reset"
            if isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                return fields
            if isinstance(event, h2.events.ConnectionTerminated):
                return "closed"
        sock.sendall(conn.data_to_send())
    return fields


def test_garbage_instead_of_the_preface(server, token):
    sock = connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 64)
    assert closed_by_server(sock)
    sock.close()
    assert server.alive() and good_call_works(server, token)


def test_truncated_frame_then_hang_up(server, token):
    sock = connect(server)
    sock.sendall(PREFACE + frame(0x4, 0, 0, b""))
    sock.sendall(struct.pack(">I", 100)[1:] + bytes([0x1, 0x4]) + struct.pack(">I", 1) + b"\x82\x86")  # 2 of 100 bytes
    sock.close()
    assert server.alive() and good_call_works(server, token)


def test_length_prefix_larger_than_the_body(server, token):
    sock = connect(server)
    conn = h2_client(sock)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, grpc_headers(server, token))
    body = echo_pb2.EchoRequest(shop_id=SHOP, text="x").SerializeToString()
    conn.send_data(sid, b"\0" + struct.pack(">I", len(body) + 100) + body, end_stream=True)
    sock.sendall(conn.data_to_send())
    fields = read_response(conn, sock, sid)
    assert isinstance(fields, dict) and fields.get("grpc-status") == "13", fields
    assert "length prefix" in fields.get("grpc-message", "")
    sock.close()
    assert good_call_works(server, token)


def test_prefix_announcing_a_huge_message_is_refused_before_the_body(server, token):
    sock = connect(server)
    conn = h2_client(sock)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, grpc_headers(server, token))
    conn.send_data(sid, b"\0" + struct.pack(">I", 1 << 30) + b"\0" * 100)  # 1 GiB announced, stream left open
    sock.sendall(conn.data_to_send())
    fields = read_response(conn, sock, sid)
    assert isinstance(fields, dict) and fields.get("grpc-status") == "8", fields
    sock.close()


def test_deadline_counts_from_the_headers_not_the_body(server, token):
    """A peer that sends headers with a 300 ms grpc-timeout and then withholds the body is answered
    DEADLINE_EXCEEDED when those 300 ms pass; the body it sends afterwards runs nothing."""
    sock = connect(server)
    conn = h2_client(sock)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, grpc_headers(server, token) + [("grpc-timeout", "300m")])
    sock.sendall(conn.data_to_send())
    started = time.time()
    fields = read_response(conn, sock, sid, timeout=10.0)
    assert isinstance(fields, dict) and fields.get("grpc-status") == "4", fields
    assert time.time() - started < 8, "answered long after its deadline"
    body = echo_pb2.EchoRequest(shop_id=SHOP, text="too late").SerializeToString()
    try:
        conn.send_data(sid, b"\0" + struct.pack(">I", len(body)) + body, end_stream=True)
        sock.sendall(conn.data_to_send())
    except h2.exceptions.StreamClosedError:
        pass  # h2 already knows the stream is over
    sock.close()
    assert good_call_works(server, token)


def test_a_call_whose_deadline_passed_before_its_body_was_complete_never_starts(server, token):
    """Headers and the whole body in one write, with a deadline of one nanosecond: it has passed by the time
    the body is complete, so the handler is never started (not started and then cancelled)."""
    sock = connect(server)
    conn = h2_client(sock)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, grpc_headers(server, token) + [("grpc-timeout", "1n")])
    body = echo_pb2.EchoRequest(shop_id=SHOP, text="never run").SerializeToString()
    conn.send_data(sid, b"\0" + struct.pack(">I", len(body)) + body, end_stream=True)
    sock.sendall(conn.data_to_send())
    fields = read_response(conn, sock, sid)
    assert isinstance(fields, dict) and fields.get("grpc-status") == "4", fields
    assert "before" in fields.get("grpc-message", ""), fields
    sock.close()
    assert good_call_works(server, token)


def test_request_without_message_is_an_error(server, token):
    sock = connect(server)
    conn = h2_client(sock)
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, grpc_headers(server, token), end_stream=True)
    sock.sendall(conn.data_to_send())
    fields = read_response(conn, sock, sid)
    assert isinstance(fields, dict) and fields.get("grpc-status") == "13", fields
    sock.close()


def test_header_flood(server, token):
    before = server.rss_kib()
    for _ in range(3):
        sock = connect(server)
        conn = h2_client(sock)
        sid = conn.get_next_available_stream_id()
        headers = grpc_headers(server, token) + [(f"x-flood-{i}", "v" * 200) for i in range(2000)]
        try:
            conn.send_headers(sid, headers, end_stream=True)
            sock.sendall(conn.data_to_send())
            result = read_response(conn, sock, sid)
        except (ConnectionResetError, BrokenPipeError):
            result = "closed"
        # 400 KiB of headers against a 16 KiB limit: the stream is reset or the connection closed, never served.
        assert result in ("reset", "closed") or (isinstance(result, dict) and result.get("grpc-status") not in (None, "0")), result
        sock.close()
    assert server.alive() and good_call_works(server, token)
    assert server.rss_kib() - before < 64 * 1024


def test_peer_that_never_reads(token):
    server = EchoServer()
    try:
        sock = connect(server)
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        # A window so large the server may send everything: only the socket holds it back.
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
        conn.increment_flow_control_window((1 << 31) - 1 - 65535)
        sock.sendall(conn.data_to_send())
        sock.settimeout(5)
        while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in conn.receive_data(sock.recv(65536))):
            pass
        before = server.rss_kib()
        body = echo_pb2.EchoRequest(shop_id=SHOP, response_bytes=256 << 10).SerializeToString()
        sent = 0
        sock.settimeout(0.5)
        try:
            for _ in range(1000):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, grpc_headers(server, token))
                conn.send_data(sid, b"\0" + struct.pack(">I", len(body)) + body, end_stream=True)
                sock.sendall(conn.data_to_send())
                sent += 1
        except (socket.timeout, h2.exceptions.TooManyStreamsError):
            pass
        # From now on nothing is read: 1000 answers of 256 KiB would be 250 MiB if the server queued them all.
        time.sleep(1.5)
        grown = server.rss_kib() - before
        print(f"never-reading peer: {sent} requests sent, server grew {grown} KiB")
        assert sent >= 100
        assert grown < 160 * 1024, f"server grew by {grown} KiB for a peer that never reads"
        assert good_call_works(server, token)
        sock.close()
        assert wait_until(lambda: good_call_works(server, token))
    finally:
        server.stop_cleanly()


def test_sigterm_while_100_calls_are_in_flight(token):
    server = EchoServer()
    channel = grpc.insecure_channel(server.address)
    stub = echo_pb2_grpc.EchoServiceStub(channel)
    # Connected first, so that the wait below covers only 100 streams on an open connection, not a connect
    # on a loaded machine (the Swift twin of this test once lost that race).
    grpc.channel_ready_future(channel).result(timeout=10)
    calls = [stub.Echo.future(echo_pb2.EchoRequest(shop_id=SHOP, text=f"call {i}", delay_ms=3000),
                              metadata=[("authorization", "Bearer " + token)], timeout=20) for i in range(100)]
    time.sleep(1)  # every call has reached the server and is waiting in its handler
    server.proc.send_signal(signal.SIGTERM)
    texts = sorted(call.result().text for call in calls)
    assert texts == sorted(f"call {i}" for i in range(100))
    assert server.proc.wait(timeout=20) == 0
    server.stop_cleanly()
    channel.close()


def test_connection_flood_is_capped(token):
    server = EchoServer("--max-connections", "8", "--max-connections-per-peer", "8")
    try:
        socks = [connect(server) for _ in range(20)]
        time.sleep(0.3)
        closed = [i for i, s in enumerate(socks) if closed_by_server(s, timeout=0.3)]
        # Beyond the cap, each new connection takes the place of the oldest that has not completed its
        # handshake (none has): eight stay open, mostly the last ones (the server's two event loops accept
        # side by side, so not exactly); test_http2_attacks has the rest of the story.
        assert len(closed) == 12, closed
        for s in socks:
            s.close()

        def works():
            # Until the server has seen the eight close, a new connection is still over the cap and reset.
            try:
                return good_call_works(server, token)
            except grpc.RpcError:
                return False
        assert wait_until(works, timeout=10)
    finally:
        server.stop_cleanly()
