"""Black-box tests of the ChatMesh runtime against a standard gRPC implementation.

The Swift side is the real `mesh-echo` server process and the `chatmesh` CLI
(built by `swift build`); the other side is Python's grpcio, with stubs
generated from proto/ by grpcio-tools when the tests start.
"""
import os
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


def free_ports(count):
    """`count` distinct ports free now. Every socket stays bound until all are picked: closed one by one,
    the kernel may hand the same port out twice (it did — two services of one mesh were given one port)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port():
    return free_ports(1)[0]


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
        # A port free when picked can still be taken (by another test's outgoing connection) before its
        # service binds it; then the whole mesh starts again on new ports, as every service knows every port.
        for attempt in range(3):
            self.ports = dict(zip(names, free_ports(len(names))))
            self.services = {}
            try:
                for name in names:
                    os.makedirs(os.path.join(root, name), exist_ok=True)
                    self.start(name)
                return
            except PortTaken:
                self.close()
                if attempt == 2:
                    raise

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
