"""The HTTP/2 attacks of recent years, and gRPC framing abuse, against a real server (mesh-echo).

Each attack is written frame by frame (the `h2` library's HPACK encoder, raw frames where h2 would refuse
to misbehave) and must end as the protocol says: the attacker's connection closed with a GOAWAY naming
the right code, or its stream reset, or a gRPC status. While it runs, another client's health checks keep
answering (every one, within a latency bound); afterwards the server's RSS has grown less than a stated
bound and it holds no more sockets than before (descriptors listed on failure).

The server under attack runs with a 2 s handshake timeout (CHATMESH_HANDSHAKE_TIMEOUT_S; 10 s by
default) and a 3 s send-stall timeout (CHATMESH_SEND_STALL_TIMEOUT_S; 60 s by default) so that the slow
attacks end quickly.
"""
import contextlib
import os
import resource
import socket
import statistics
import struct
import threading
import time

import grpc
import hpack
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import EchoServer, mint_token, wait_until
from chatmesh.testing.v1 import echo_pb2, echo_pb2_grpc

SHOP = "shop-attack"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ECHO = "/chatmesh.testing.v1.EchoService/Echo"
HANDSHAKE_TIMEOUT_S = 2
SEND_STALL_TIMEOUT_S = 3

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
NO_ERROR, PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR = 0x0, 0x1, 0x3, 0x5, 0x6
COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x9, 0xb

# Every attack's memory bound: what the server may grow by while it is attacked.
RSS_BOUND_KIB = 64 * 1024


def frame(kind, flags, stream_id, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream_id) + payload


def settings_frame(pairs=()):
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


class Peer:
    """One raw HTTP/2 client connection: sends bytes, reads frames, knows how it ended."""

    def __init__(self, server, source="127.0.0.1", handshake=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", server.port))
        self.encoder = hpack.Encoder()
        # One decoder for every HEADERS frame in order: the server's encoder uses its dynamic table.
        self.decoder = hpack.Decoder()
        self.decoded = {}
        self.buffer = b""
        self.frames = []
        self.closed = False
        self.authority = server.address
        if handshake:
            self.send(PREFACE + settings_frame())

    def send(self, data):
        """False once the server has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            return False

    def headers_block(self, token, path=ECHO, extra=()):
        return self.encoder.encode(
            [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", self.authority),
             ("content-type", "application/grpc"), ("te", "trailers"), ("authorization", "Bearer " + token), *extra])

    def request(self, stream_id, token, message=b"", end_stream=True, extra=()):
        body = frame(HEADERS, END_HEADERS, stream_id, self.headers_block(token, extra=extra))
        if message is not None:
            body += frame(DATA, END_STREAM if end_stream else 0, stream_id, message)
        return body

    def read(self, until, timeout=5.0):
        """Reads frames until `until(frame)` is true for one (returned), the connection closes or time runs out
        (None)."""
        end = time.time() + timeout
        while time.time() < end:
            while len(self.buffer) >= 9:
                length = int.from_bytes(self.buffer[:3], "big")
                if len(self.buffer) < 9 + length:
                    break
                kind, flags = self.buffer[3], self.buffer[4]
                stream_id = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
                f = (kind, flags, stream_id, self.buffer[9:9 + length])
                self.buffer = self.buffer[9 + length:]
                self.frames.append(f)
                if kind == HEADERS:
                    self.decoded[id(f)] = {k.decode(): v.decode() for k, v in self.decoder.decode(f[3], raw=True)}
                if until(f):
                    return f
            if self.closed:
                return None
            self.sock.settimeout(max(0.01, min(1.0, end - time.time())))
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            self.buffer += data
        return None

    def goaway(self, timeout=5.0):
        """The GOAWAY's (error code, debug data), read already or read now; None without one."""
        f = next((f for f in self.frames if f[0] == GOAWAY), None) or self.read(lambda f: f[0] == GOAWAY, timeout)
        if f is None:
            return None
        code = int.from_bytes(f[3][4:8], "big")
        return code, f[3][8:]

    def closed_by_server(self, timeout=5.0):
        self.read(lambda f: False, timeout)
        return self.closed

    def rst(self, stream_id, timeout=5.0):
        f = next((f for f in self.frames if f[0] == RST_STREAM and f[2] == stream_id), None) \
            or self.read(lambda f: f[0] == RST_STREAM and f[2] == stream_id, timeout)
        return None if f is None else int.from_bytes(f[3][:4], "big")

    def grpc_status(self, stream_id, timeout=5.0):
        """The grpc-status of a stream's response (HEADERS with END_STREAM), decoded with the peer's decoder."""
        f = self.read(lambda f: f[0] == HEADERS and f[2] == stream_id and f[1] & END_STREAM, timeout)
        return None if f is None else self.decoded[id(f)]

    def statuses(self):
        """grpc-status of every stream answered so far."""
        return [self.decoded[id(f)].get("grpc-status") for f in self.frames if f[0] == HEADERS and f[1] & END_STREAM]

    def ends_with(self, *codes):
        """The server ends the connection with a GOAWAY carrying one of `codes`, and closes it."""
        ended = self.goaway()
        assert ended is not None and ended[0] in codes, ended
        assert self.closed_by_server()

    def error_code(self):
        """The code of the first RST_STREAM or GOAWAY the server sends."""
        f = self.read(lambda f: f[0] in (RST_STREAM, GOAWAY))
        assert f is not None, self.frames[-3:]
        return int.from_bytes(f[3][4:8] if f[0] == GOAWAY else f[3][:4], "big")

    def served(self, stream_id, token, message):
        """A good call on this connection is answered OK."""
        self.send(self.request(stream_id, token, message))
        fields = self.grpc_status(stream_id)
        return fields is not None and fields.get("grpc-status") == "0"

    def close(self):
        self.sock.close()


def grpc_message(payload, compressed=False, length=None):
    return bytes([1 if compressed else 0]) + struct.pack(">I", len(payload) if length is None else length) + payload


def echo_request(text="x", **kw):
    return echo_pb2.EchoRequest(shop_id=SHOP, text=text, **kw).SerializeToString()


class HealthProbe:
    """Another client's health checks, one after another on their own connection, for as long as an attack
    runs: how many, how many failed, and their latencies."""

    def __init__(self, server, deadline=2.0):
        self.channel = grpc.insecure_channel(server.address)
        self.stub = health_pb2_grpc.HealthStub(self.channel)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.deadline = deadline
        self.latencies = []
        self.failures = []
        self.running = False

    def check_once(self):
        started = time.perf_counter()
        try:
            reply = self.stub.Check(health_pb2.HealthCheckRequest(), timeout=self.deadline)
            ok = reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError as error:
            self.failures.append(error.code())
            return
        if ok:
            self.latencies.append(time.perf_counter() - started)
        else:
            self.failures.append("NOT_SERVING")

    def baseline(self, count=200):
        for _ in range(count):
            self.check_once()
        latencies, self.latencies = self.latencies, []
        assert not self.failures, self.failures
        return statistics.median(latencies)

    def _loop(self):
        while self.running:
            self.check_once()
            time.sleep(0.005)

    @contextlib.contextmanager
    def during(self, least=5):
        """Checks all along; an attack over quickly is followed by enough checks to judge (`least`)."""
        self.latencies, self.failures, self.running = [], [], True
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            wait_until(lambda: len(self.latencies) + len(self.failures) >= least, timeout=10)
            self.running = False
            thread.join()

    def close(self):
        self.channel.close()


def fd_links(server):
    path = f"/proc/{server.proc.pid}/fd"
    return sorted(os.readlink(f"{path}/{fd}") for fd in os.listdir(path))


def socket_count(server):
    """The server's open sockets: its listener, its connections. What an attack could leak is a connection;
    the runtime makes a few other descriptors (timers, event fds) lazily, once, and those are not counted."""
    return sum(1 for link in fd_links(server) if link.startswith("socket:"))


@pytest.fixture(scope="module")
def server():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = EchoServer(env={"CHATMESH_HANDSHAKE_TIMEOUT_S": str(HANDSHAKE_TIMEOUT_S),
                             "CHATMESH_SEND_STALL_TIMEOUT_S": str(SEND_STALL_TIMEOUT_S)})
    # A call that sleeps, first: libdispatch makes its timer thread's descriptors (an epoll, an eventfd,
    # timerfds) on the first Task.sleep, once, and they are not the attacks' to count.
    with grpc.insecure_channel(server.address) as channel:
        echo_pb2_grpc.EchoServiceStub(channel).Echo(echo_pb2.EchoRequest(shop_id=SHOP, text="warm", delay_ms=1),
                                                    metadata=[("authorization", "Bearer " + mint_token(SHOP))], timeout=10)
    yield server
    server.stop_cleanly()


@pytest.fixture(scope="module")
def token():
    return mint_token(SHOP)


def probing(server):
    """A health probe of `server` with its normal latency measured, for a fixture to yield."""
    probe = HealthProbe(server)
    probe.normal = probe.baseline()
    yield probe
    probe.close()


@pytest.fixture(scope="module")
def probe(server):
    yield from probing(server)


@contextlib.contextmanager
def under_attack(server, probe, rss_bound_kib=RSS_BOUND_KIB):
    """Runs an attack while the probe checks health; then the server must be alive, within its memory bound,
    back to its sockets, and every health check must have answered, within 20× the normal median
    latency at the median and within the probe's deadline each (the attack and the server share two cores)."""
    sockets_before, fds_before = socket_count(server), fd_links(server)
    rss_before = server.rss_kib()
    with probe.during():
        yield
    grown = server.rss_kib() - rss_before
    assert server.alive(), server.log()[-4000:]
    assert not probe.failures, f"health checks failed during the attack: {probe.failures[:5]}"
    assert len(probe.latencies) >= 3, "the health probe hardly ran"
    median = statistics.median(probe.latencies)
    print(f"health: {len(probe.latencies)} checks, median {median * 1e3:.2f} ms (normal {probe.normal * 1e3:.2f}),"
          f" max {max(probe.latencies) * 1e3:.1f} ms; RSS +{grown} KiB")
    assert median < max(20 * probe.normal, 0.05), f"health checks slowed to a median of {median * 1e3:.1f} ms"
    assert grown < rss_bound_kib, f"the server grew by {grown} KiB"
    # The attacker's sockets are closed by now: the server must let go of every one.
    assert wait_until(lambda: socket_count(server) <= sockets_before, timeout=10), \
        f"descriptors before: {fds_before}\nafter: {fd_links(server)}"


# MARK: stream floods


def test_rapid_reset(server, token, probe):
    """CVE-2023-44487: streams opened and reset at once, thousands per second, each a whole request the
    server would start. The server lets a burst through (nghttp2's reset limit: 1000, then 33 a second)
    and then sends GOAWAY and closes."""
    with under_attack(server, probe):
        peer = Peer(server)
        message = grpc_message(echo_request(delay_ms=1000))
        sent, stream_id, alive = 0, 1, True
        started = time.time()
        while alive and sent < 20000 and time.time() - started < 10:
            batch = b""
            for _ in range(100):
                batch += peer.request(stream_id, token, message) + frame(RST_STREAM, 0, stream_id, struct.pack(">I", 0x8))
                stream_id += 2
            alive = peer.send(batch)
            sent += 100
        rate = sent / (time.time() - started)
        ended = peer.goaway(timeout=10)
        print(f"rapid reset: {sent} streams at {rate:.0f}/s before the GOAWAY {ended}")
        assert ended is not None and ended[0] in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR), ended
        assert peer.closed_by_server()
        peer.close()


def test_continuation_flood(server, token, probe):
    """CVE-2024-27316 family: a HEADERS frame without END_HEADERS, then CONTINUATION frames that never end.
    nghttp2 allows 8 CONTINUATIONs: the connection is closed long before the 16 KiB header list limit."""
    with under_attack(server, probe):
        peer = Peer(server)
        literal = b"\x40\x0ax-flood-aa" + bytes([0x7f, 0x81, 0x07]) + b"v" * 1000
        peer.send(frame(HEADERS, 0, 1, b"\x83\x86"))
        sent = 0
        for _ in range(5000):
            if not peer.send(frame(CONTINUATION, 0, 1, literal)):
                break
            sent += 1
        assert peer.closed_by_server()
        print(f"continuation flood: closed after {sent} frames sent; frames received {[f[0] for f in peer.frames]}")
        assert sent < 5000
        peer.close()


def test_hpack_bomb(server, token, probe):
    """A 4 KB header value put in the dynamic table, then referenced by one byte each, 16,000 times: 64 MB of
    headers from a 20 KB block. The stream is reset at the 16 KiB header list limit, not decoded whole, and
    the connection goes on."""
    with under_attack(server, probe):
        peer = Peer(server)
        peer.read(lambda f: f[0] == SETTINGS and not f[1] & ACK)
        value = b"b" * 4000
        # Literal with incremental indexing, new name: it becomes dynamic index 62.
        # The value goes into the dynamic table once; each repeat is then one byte (an index).
        block = peer.headers_block(token, extra=[("x-bomb", value)] * 16001)
        assert len(block) < 20000, len(block)
        rest = block[16384:]
        frames = frame(HEADERS, 0 if rest else END_HEADERS, 1, block[:16384])
        while rest:
            chunk, rest = rest[:16384], rest[16384:]
            frames += frame(CONTINUATION, 0 if rest else END_HEADERS, 1, chunk)
        peer.send(frames + frame(DATA, END_STREAM, 1, grpc_message(echo_request())))
        code = peer.rst(1)
        print(f"hpack bomb: stream reset with {code}, closed={peer.closed}, GOAWAY {peer.goaway(timeout=0.1)}")
        assert code is not None, peer.frames[-3:]
        assert not any(f[0] == HEADERS and f[2] == 1 for f in peer.frames), "the bomb was served"
        # The connection is still good: a call on it is answered.
        peer.send(peer.request(3, token, grpc_message(echo_request())))
        assert peer.grpc_status(3)["grpc-status"] == "0"
        peer.close()


def _hpack_int_tail(n):
    """The continuation bytes of an HPACK integer past its prefix."""
    out = b""
    while n >= 128:
        out += bytes([(n % 128) + 128])
        n //= 128
    return out + bytes([n])


def test_hpack_table_size_update_past_the_limit(server, token, probe):
    """A dynamic table size update to 1 MiB when the server allows 4 KiB: COMPRESSION_ERROR."""
    with under_attack(server, probe):
        peer = Peer(server)
        update = b"\x3f" + _hpack_int_tail((1 << 20) - 31)
        peer.send(frame(HEADERS, END_HEADERS, 1, update + peer.headers_block(token)))
        peer.ends_with(COMPRESSION_ERROR)
        peer.close()


def test_settings_flood(server, token, probe):
    """SETTINGS after SETTINGS, each costing the server an ACK: past a burst of 64 (then 8 a second) the
    server answers GOAWAY ENHANCE_YOUR_CALM "too_many_settings" and closes."""
    with under_attack(server, probe):
        peer = Peer(server)
        sent = 0
        for _ in range(100):
            if not peer.send(settings_frame([(0x4, 65535)]) * 100):
                break
            sent += 100
        ended = peer.goaway()
        print(f"settings flood: {sent} sent, GOAWAY {ended}")
        assert ended == (ENHANCE_YOUR_CALM, b"too_many_settings"), ended
        assert peer.closed_by_server()
        peer.close()


def test_settings_flood_without_reading(server, token, probe):
    """The same flood from a peer that never reads its ACKs: nghttp2 holds at most 1000 unsent ACKs, the
    guard stops it sooner; either way the connection is closed and nothing piles up."""
    with under_attack(server, probe):
        peer = Peer(server)
        peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sent = 0
        for _ in range(100):
            if not peer.send(settings_frame([(0x4, 65535)]) * 100):
                break
            sent += 100
        assert peer.closed_by_server(timeout=10)
        peer.close()


def test_ping_flood(server, token, probe):
    """PINGs back to back: after two strikes the server answers GOAWAY ENHANCE_YOUR_CALM "too_many_pings",
    as gRPC servers do, and closes."""
    with under_attack(server, probe):
        peer = Peer(server)
        for i in range(100):
            if not peer.send(b"".join(frame(PING, 0, 0, struct.pack(">Q", i * 100 + j)) for j in range(100))):
                break
        ended = peer.goaway()
        assert ended == (ENHANCE_YOUR_CALM, b"too_many_pings"), ended
        assert peer.closed_by_server()
        peer.close()


# MARK: slow and stalled peers


def test_zero_window_peer(server, token, probe):
    """A peer that opens no window (INITIAL_WINDOW_SIZE 0) and asks for 256 KiB answers on 200 streams: the
    server may not send a byte of them. It holds at most its 32 MiB answer budget for the connection (later
    calls are refused RESOURCE_EXHAUSTED, a status that needs no window), and lets the peer go with GOAWAY
    "send_stalled" once nothing has moved for the stall timeout."""
    with under_attack(server, probe, rss_bound_kib=RSS_BOUND_KIB + 32 * 1024):
        peer = Peer(server, handshake=False)
        peer.send(PREFACE + settings_frame([(0x4, 0)]))
        message = grpc_message(echo_request(response_bytes=256 << 10))
        started = time.time()
        for i in range(200):
            assert peer.send(peer.request(1 + 2 * i, token, message))
        ended = peer.goaway(timeout=SEND_STALL_TIMEOUT_S + 10)
        took = time.time() - started
        refused = peer.statuses().count("8")
        print(f"zero window: GOAWAY {ended} after {took:.1f} s, {refused} of 200 calls refused")
        assert not any(f[0] == DATA and f[3] for f in peer.frames), "data sent past a zero window"
        assert ended == (NO_ERROR, b"send_stalled"), ended
        assert SEND_STALL_TIMEOUT_S - 0.5 < took < SEND_STALL_TIMEOUT_S + 10
        # 32 MiB of 256 KiB answers is 128 calls; the rest were refused.
        assert 60 <= refused <= 80, refused
        assert peer.closed_by_server()
        peer.close()


def test_slowloris_preface(server, token, probe):
    """The preface one byte at a time, 5 a second: the handshake timeout closes the connection."""
    with under_attack(server, probe):
        peer = Peer(server, handshake=False)
        started = time.time()
        for byte in PREFACE:
            if not peer.send(bytes([byte])) or peer.closed_by_server(timeout=0.2):
                break
        assert peer.closed_by_server(timeout=HANDSHAKE_TIMEOUT_S + 5)
        took = time.time() - started
        print(f"slow preface: closed after {took:.1f} s")
        assert HANDSHAKE_TIMEOUT_S - 0.5 < took < HANDSHAKE_TIMEOUT_S + 5
        peer.close()


def test_slowloris_headers(server, token, probe):
    """The handshake at once, then a HEADERS frame one byte at a time, 5 a second: the header block's timeout
    (the handshake timeout) ends the connection with GOAWAY "header_timeout"."""
    with under_attack(server, probe):
        peer = Peer(server)
        peer.read(lambda f: f[0] == SETTINGS and not f[1] & ACK)
        headers = frame(HEADERS, END_HEADERS, 1, peer.headers_block(token))
        peer.send(headers[:12])
        started = time.time()
        for byte in headers[12:]:
            if not peer.send(bytes([byte])) or peer.closed_by_server(timeout=0.2):
                break
        ended = peer.goaway(timeout=HANDSHAKE_TIMEOUT_S + 5)
        took = time.time() - started
        print(f"slow headers: GOAWAY {ended} after {took:.1f} s")
        assert ended == (NO_ERROR, b"header_timeout"), ended
        assert took < 3 * HANDSHAKE_TIMEOUT_S + 2
        assert peer.closed_by_server()
        peer.close()


# MARK: protocol violations


@pytest.mark.parametrize("first,second", [(5, 3), (1, 1)], ids=["going backwards", "reused"])
def test_stream_id_going_backwards_or_reused(server, token, probe, first, second):
    """Stream 5 then stream 3, or stream 1 again once it is closed: a HEADERS whose id is not above every id
    used before is a connection PROTOCOL_ERROR (RFC 9113 §5.1.1); the first stream is still answered."""
    with under_attack(server, probe):
        peer = Peer(server)
        message = grpc_message(echo_request())
        assert peer.served(first, token, message)
        peer.send(peer.request(second, token, message))
        peer.ends_with(PROTOCOL_ERROR)
        peer.close()


def test_data_on_a_closed_stream(server, token, probe):
    """DATA on a stream both sides have closed: STREAM_CLOSED (a stream or a connection error)."""
    with under_attack(server, probe):
        peer = Peer(server)
        message = grpc_message(echo_request())
        assert peer.served(1, token, message)
        peer.send(frame(DATA, END_STREAM, 1, message))
        assert peer.error_code() == STREAM_CLOSED
        peer.close()


def test_window_update_past_the_largest_window(server, token, probe):
    """WINDOW_UPDATEs that take the connection's window past 2^31-1: FLOW_CONTROL_ERROR; on a stream, that
    stream is reset with FLOW_CONTROL_ERROR and the connection goes on."""
    with under_attack(server, probe):
        peer = Peer(server)
        peer.send(peer.request(1, token, None))
        peer.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0x7FFFFFFF)))
        assert peer.rst(1) == FLOW_CONTROL_ERROR
        peer.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF)))
        peer.ends_with(FLOW_CONTROL_ERROR)
        peer.close()


def test_frame_past_the_max_frame_size(server, token, probe):
    """A 1 MiB DATA frame when SETTINGS_MAX_FRAME_SIZE is 16 KiB: FRAME_SIZE_ERROR."""
    with under_attack(server, probe):
        peer = Peer(server)
        peer.send(peer.request(1, token, None))
        peer.send(struct.pack(">I", 1 << 20)[1:] + bytes([DATA, 0]) + struct.pack(">I", 1) + b"\0" * 65536)
        peer.ends_with(FRAME_SIZE_ERROR)
        peer.close()


def test_headers_after_trailers(server, token, probe):
    """Request trailers (HEADERS with END_STREAM), then another HEADERS on the same stream: it is closed on
    the client's side, so STREAM_CLOSED."""
    with under_attack(server, probe):
        peer = Peer(server)
        peer.send(peer.request(1, token, grpc_message(echo_request()), end_stream=False))
        peer.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, peer.encoder.encode([("x-trailer", "1")])))
        peer.send(frame(HEADERS, END_HEADERS, 1, peer.encoder.encode([("x-after", "1")])))
        assert peer.error_code() in (STREAM_CLOSED, PROTOCOL_ERROR)
        peer.close()


# MARK: gRPC framing


def test_length_prefix_of_4_gib(server, token, probe):
    """A message prefix announcing 4 GiB - 1: RESOURCE_EXHAUSTED at once, before any of it is buffered."""
    with under_attack(server, probe):
        peer = Peer(server)
        peer.send(peer.request(1, token, b"\0\xff\xff\xff\xff" + b"\0" * 1000, end_stream=False))
        fields = peer.grpc_status(1)
        assert fields is not None and fields["grpc-status"] == "8", fields
        peer.close()


def test_truncated_message(server, token, probe):
    """A prefix of 100 bytes and 10 bytes of message, then END_STREAM: INTERNAL."""
    with under_attack(server, probe):
        peer = Peer(server)
        peer.send(peer.request(1, token, grpc_message(b"\x0a\x08" + b"x" * 8, length=100)))
        fields = peer.grpc_status(1)
        assert fields is not None and fields["grpc-status"] == "13", fields
        peer.close()


def test_compressed_flag_without_grpc_encoding(server, token, probe):
    """The compressed flag on a call that declared no grpc-encoding: INTERNAL, as the gRPC spec says
    (not UNIMPLEMENTED, which is for an encoding the server does not speak)."""
    with under_attack(server, probe):
        peer = Peer(server)
        peer.send(peer.request(1, token, grpc_message(echo_request(), compressed=True)))
        fields = peer.grpc_status(1)
        assert fields is not None and fields["grpc-status"] == "13", fields
        assert "compressed flag" in fields.get("grpc-message", ""), fields
        peer.close()


# MARK: connection exhaustion

MAX_CONNECTIONS, PER_PEER = 64, 16


@pytest.fixture(scope="module")
def small_server():
    """A server with room for 64 connections, 16 a host, so that floods reach its limits."""
    server = EchoServer("--max-connections", str(MAX_CONNECTIONS), "--max-connections-per-peer", str(PER_PEER),
                        env={"CHATMESH_HANDSHAKE_TIMEOUT_S": str(HANDSHAKE_TIMEOUT_S)})
    yield server
    server.stop_cleanly()


@pytest.fixture(scope="module")
def small_probe(small_server):
    yield from probing(small_server)


def silent_connections(server, count, sources):
    """`count` connections that never send a byte, spread over the `sources` addresses."""
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(True)
        s.bind((sources[i % len(sources)], 0))
        s.connect(("127.0.0.1", server.port))
        socks.append(s)
    return socks


def all_closed_by_server(socks, timeout):
    """True once the server has closed every one of `socks` (EOF or reset), within `timeout`."""
    import selectors
    selector = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
    open_ = len(socks)
    end = time.time() + timeout
    while open_ and time.time() < end:
        for key, _ in selector.select(timeout=0.2):
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                open_ -= 1
    selector.close()
    return open_ == 0


def a_new_client_is_served(server, token, source="127.0.0.1"):
    peer = Peer(server, source=source)
    try:
        peer.send(peer.request(1, token, grpc_message(echo_request("new client"))))
        fields = peer.grpc_status(1)
        return fields is not None and fields.get("grpc-status") == "0"
    finally:
        peer.close()


def test_connection_exhaustion_by_silent_connections(small_server, token, small_probe):
    """4,200 connections that never send a byte, from eight addresses, against a limit of 64: every new client
    still gets in — the connections that never completed a handshake make room, oldest first — a client on
    an attacker's own address too; health checks keep answering; the handshake timeout closes every silent
    connection the server still holds; the server's descriptors are back where they were."""
    sources = [f"127.0.0.{i}" for i in range(2, 10)]
    with under_attack(small_server, small_probe):
        socks = silent_connections(small_server, 4200, sources)
        try:
            assert a_new_client_is_served(small_server, token)
            assert a_new_client_is_served(small_server, token, source=sources[0])
            started = time.time()
            assert all_closed_by_server(socks, timeout=HANDSHAKE_TIMEOUT_S + 10)
            print(f"silent flood: every connection closed {time.time() - started:.1f} s after the last opened")
        finally:
            for s in socks:
                s.close()


def test_one_host_holds_only_its_share(small_server, token, small_probe):
    """A host that completes 40 handshakes and then idles keeps 16 connections (its share of 64); the rest
    are closed as they arrive, and other hosts' clients are served."""
    with under_attack(small_server, small_probe):
        peers = []
        try:
            for _ in range(40):
                peers.append(Peer(small_server, source="127.0.0.2"))
                # Each handshake completes before the next connection arrives (none of them may be evicted).
                peers[-1].read(lambda f: f[0] == SETTINGS and f[1] & ACK)
            kept = [p for p in peers if not p.closed_by_server(timeout=0.3)]
            assert len(kept) == PER_PEER, len(kept)
            assert a_new_client_is_served(small_server, token)
        finally:
            for p in peers:
                p.close()
