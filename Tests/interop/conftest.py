"""Black-box tests of the ChatMesh runtime against a standard gRPC implementation.

The Swift side is the real `mesh-echo` server process and the `chatmesh` CLI
(built by `swift build`); the other side is Python's grpcio, with stubs
generated from proto/ by grpcio-tools when the tests start.
"""
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

import grpc
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("CHATMESH_BIN_DIR", os.path.join(ROOT, ".build", "debug"))
GEN = os.path.join(os.path.dirname(__file__), "gen")
AUTH_KEY = "interop-test-key"


def _generate_stubs():
    from grpc_tools import protoc

    os.makedirs(GEN, exist_ok=True)
    protos = []
    for base, _, files in os.walk(os.path.join(ROOT, "proto", "chatmesh")):
        protos += [os.path.relpath(os.path.join(base, f), os.path.join(ROOT, "proto")) for f in files if f.endswith(".proto")]
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{os.path.join(ROOT, 'proto')}", f"-I{include}",
                      f"--python_out={GEN}", f"--grpc_python_out={GEN}"] + sorted(protos))
    assert rc == 0, "grpcio-tools could not compile proto/"


_generate_stubs()
sys.path.insert(0, GEN)


def binary(name):
    path = os.path.join(BIN, name)
    assert os.path.exists(path), f"{path} not built: run swift build first"
    return path


def mint_token(shop, staff="agent-1", role="agent", ttl=3600, key=AUTH_KEY):
    out = subprocess.run([binary("chatmesh"), "token", "--shop", shop, "--staff", staff, "--role", role, f"--ttl={ttl}"],
                         env={**os.environ, "CHATMESH_AUTH_KEY": key}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


class PortTaken(Exception):
    """A port picked up front was bound by someone else before the server bound it."""


class ServerProcess:
    """A ChatMesh server process on 127.0.0.1 and a port it picked (it prints "listening on host:port")."""

    def __init__(self, name, *args, env=None, prefix=()):
        self.name = name
        self.stderr = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [*prefix, binary(name), *args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env={**os.environ, "CHATMESH_AUTH_KEY": AUTH_KEY, "LOG_LEVEL": "warning", "CHATMESH_LISTEN": "127.0.0.1:0", **(env or {})},
        )
        line = self.proc.stdout.readline()
        # With CHATMESH_METRICS_LISTEN set, "metrics on host:port" comes first.
        self.metrics_address = None
        if line.startswith("metrics on "):
            self.metrics_address = line.split()[-1]
            line = self.proc.stdout.readline()
        if not line.startswith("listening on ") and "Address already in use" in self.log():
            self.proc.wait()
            os.unlink(self.stderr.name)
            raise PortTaken(f"{name}: {env.get('CHATMESH_LISTEN') if env else None} is taken")
        assert line.startswith("listening on "), f"{name} did not start: {line!r}\n{self.log()[-4000:]}"
        self.address = line.split()[-1]
        self.port = int(self.address.rsplit(":", 1)[1])

    def log(self):
        with open(self.stderr.name, errors="replace") as fh:
            return fh.read()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stop_cleanly(self):
        """SIGTERM must end the server with exit 0; anything else (a crash) fails the test, with its log."""
        code = self.stop()
        log = self.log()
        os.unlink(self.stderr.name)
        assert code == 0, f"{self.name} exited with {code}; its stderr ends:\n{log[-4000:]}"


class ServiceProcess(ServerProcess):
    """A ChatMesh service (conversation-svc, messaging-svc, …) on its own data directory, with a grpcio
    channel to it and a stub made by `stub_class`."""

    def __init__(self, name, stub_class, data_dir, env=None):
        super().__init__(name, env={"CHATMESH_DATA_DIR": data_dir, **(env or {})})
        self.channel = grpc.insecure_channel(self.address)
        self.stub = stub_class(self.channel)

    def kill(self):
        """SIGKILL: a crash, nothing flushed or closed."""
        self.channel.close()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        os.unlink(self.stderr.name)

    def close(self):
        self.channel.close()
        self.stop_cleanly()


def _ephemeral_low():
    """The first port the kernel may hand an outgoing connection (32768 unless configured otherwise)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out = set()


def free_ports(count):
    """`count` distinct ports free now, below the kernel's ephemeral range: no outgoing connection is ever
    given one of them, so only an explicit bind can take one before its server binds it (PortTaken then,
    and the caller starts again on new ports). Each was bound exclusively once to check, and none is
    handed out twice in this run."""
    high = min(_ephemeral_low(), 32768)
    low = max(1024, high - 12000)
    ports = []
    while len(ports) < count:
        port = random.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        ports.append(port)
    return ports


def free_port():
    return free_ports(1)[0]


class PortHold:
    """Ports from `free_ports`, each held by a bound socket until `release()`: the holder and our servers
    set SO_REUSEADDR, so a server can bind and listen on its port while it is held, and no other bind can
    take it meanwhile (nor can the kernel: the ports lie below its ephemeral range)."""

    def __init__(self, count):
        self.sockets = []
        self.ports = []
        for port in free_ports(count):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                self.release()
                raise PortTaken(f"127.0.0.1:{port} was taken before it could be held")
            self.sockets.append(s)
            self.ports.append(port)

    def release(self):
        for s in self.sockets:
            s.close()
        self.sockets = []


class Mesh:
    """Several ChatMesh services as real processes on ports picked up front, each told every other's
    address (CHATMESH_<NAME>_ADDRS), each on its own data directory under `root`."""

    def __init__(self, root, names, env=None):
        from chatmesh.v1 import loyalty_pb2_grpc, messaging_pb2_grpc, order_pb2_grpc, conversation_pb2_grpc, panel_pb2_grpc
        self.stubs = {"loyalty": loyalty_pb2_grpc.LoyaltyServiceStub, "messaging": messaging_pb2_grpc.MessagingServiceStub,
                      "order": order_pb2_grpc.OrderServiceStub, "conversation": conversation_pb2_grpc.ConversationServiceStub,
                      "gateway": panel_pb2_grpc.PanelServiceStub}
        self.root = root
        self.env = env or {}
        # Every service knows every port, so all are picked up front and held until each service has bound
        # its own; should one still be taken (an explicit bind elsewhere), the mesh starts again on new ports.
        for attempt in range(3):
            self.services = {}
            hold = None
            try:
                hold = PortHold(len(names))
                self.ports = dict(zip(names, hold.ports))
                for name in names:
                    os.makedirs(os.path.join(root, name), exist_ok=True)
                    self.start(name)
                return
            except PortTaken:
                self.close()
                if attempt == 2:
                    raise
            finally:
                if hold:
                    hold.release()

    def start(self, name):
        addresses = {f"CHATMESH_{other.upper()}_ADDRS": f"127.0.0.1:{port}" for other, port in self.ports.items()}
        self.services[name] = ServiceProcess(name if name == "gateway" else f"{name}-svc", self.stubs[name], os.path.join(self.root, name), env={
            **addresses, **self.env.get(name, {}), "CHATMESH_LISTEN": f"127.0.0.1:{self.ports[name]}"})
        return self.services[name]

    def addresses_env(self):
        return {f"CHATMESH_{name.upper()}_ADDRS": f"127.0.0.1:{port}" for name, port in self.ports.items()}

    def stub(self, name):
        return self.services[name].stub

    def db(self, name):
        return sqlite3.connect(os.path.join(self.root, name, f"{name}.sqlite"))

    def close(self):
        for service in self.services.values():
            if service.alive():
                service.close()


class EchoServer(ServerProcess):
    """mesh-echo, the runtime's own test service."""

    def __init__(self, *args, env=None):
        super().__init__("mesh-echo", "--listen", "127.0.0.1:0", *args, env=env)


@pytest.fixture
def echo_server():
    server = EchoServer()
    yield server
    server.stop_cleanly()


@pytest.fixture(scope="module")
def shared_echo_server():
    server = EchoServer()
    yield server
    server.stop_cleanly()


def wait_until(predicate, timeout=5.0, interval=0.02):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
