"""`chatmesh up --demo` as a newcomer runs it (through scripts/up): the five services from the executables
beside it on the default ports, healthy, the demo shop loaded, logs prefixed per service, and every service
stopped cleanly by Ctrl-C; and, when a default port is taken, nothing started and the port and its holder named."""
import contextlib
import os
import signal
import socket
import struct
import subprocess
import tempfile
import time

import grpc

from conftest import binary, mint_token
from chatmesh.v1 import panel_pb2 as p
from chatmesh.v1 import conversation_pb2 as cv
from chatmesh.v1 import conversation_pb2_grpc as cv_grpc
from chatmesh.v1 import panel_pb2_grpc as p_grpc


def test_up_names_a_taken_port_and_what_holds_it():
    """The failure a newcomer meets when an outgoing connection happens to use a default port (they lie in
    Linux's ephemeral range): `chatmesh up` starts nothing and says which port, which process and which
    connection hold it, and how to reserve the ports."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.socket()
    # Closed with a reset, not into TIME_WAIT, so the port is free again for later tests.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    # What the kernel does for an outgoing connection, on purpose. A connection of an earlier run of the mesh
    # may still wait out TIME_WAIT on that port (up to 60 s), and a bind like this one waits for it to end.
    deadline = time.time() + 90
    while True:
        try:
            client.bind(("127.0.0.1", 50053))
            break
        except OSError as error:
            if time.time() > deadline:
                client.close()
                listener.close()
                raise AssertionError(f"127.0.0.1:50053 stayed busy: {error}")
            time.sleep(0.5)
    client.connect(listener.getsockname())
    try:
        with tempfile.TemporaryDirectory(prefix="up-taken-") as root:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMESH_")}
            out = subprocess.run([binary("chatmesh"), "up", "--data-dir", os.path.join(root, "data")], cwd=root, env=env,
                                 capture_output=True, text=True, timeout=60)
            text = out.stdout + out.stderr
            assert out.returncode != 0, text
            assert "loyalty-svc cannot start: 127.0.0.1:50053 is already in use" in text, text
            assert f"pid {os.getpid()} (" in text, text
            assert f"a connection from 127.0.0.1:50053 to 127.0.0.1:{listener.getsockname()[1]} (ESTABLISHED)" in text, text
            assert "net.ipv4.ip_local_reserved_ports" in text, text
            # Nothing was started.
            for port in (50050, 50051, 50052, 50054):
                with socket.socket() as s:
                    assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} answers"
    finally:
        client.close()
        listener.close()


@contextlib.contextmanager
def mesh_up(*args):
    """`chatmesh up --demo` in a fresh directory until it says it is up; yields (data directory, auth key,
    log path); then Ctrl-C, which must stop every service cleanly and leave no port answering."""
    with tempfile.TemporaryDirectory(prefix="up-") as root:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMESH_")}
        log = open(os.path.join(root, "up.log"), "w+")
        data = os.path.join(root, "data")
        up = subprocess.Popen([binary("chatmesh"), "up", "--demo", "--data-dir", data, *args], cwd=root, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 120
            while "Ctrl-C stops every service" not in open(log.name).read():
                assert up.poll() is None and time.time() < deadline, open(log.name).read()[-3000:]
                time.sleep(0.2)
            key = open(os.path.join(data, "auth.key")).read().strip()
            yield data, key, log.name
        finally:
            up.send_signal(signal.SIGINT)
            code = up.wait(timeout=30)
        assert code == 0, open(log.name).read()[-3000:]
        assert "stopping the services" in open(log.name).read()
        # Nothing is left listening.
        for port in range(50050, 50055):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"


def demo_panel(conversation_channel, gateway_channel, key):
    md = [("authorization", "Bearer " + mint_token("demo-shop", staff="lan", role="owner", key=key))]
    hoa = cv_grpc.ConversationServiceStub(conversation_channel).ListConversations(
        cv.ListConversationsRequest(shop_id="demo-shop", page_id="demo-page", query="Hoa"), metadata=md, timeout=10).conversations[0]
    return p_grpc.PanelServiceStub(gateway_channel).GetPanel(
        p.GetPanelRequest(shop_id="demo-shop", conversation_id=hoa.conversation_id), metadata=md, timeout=10)


def test_up_runs_seeds_and_stops_the_whole_mesh():
    with mesh_up() as (_, key, log):
        text = open(log).read()
        for name in ["conversation-svc", "loyalty-svc", "messaging-svc", "order-svc", "gateway"]:
            assert f"[{name}]" in text
        assert "seeded demo-shop orders" in text
        with grpc.insecure_channel("127.0.0.1:50051") as conversation, grpc.insecure_channel("127.0.0.1:50050") as gateway:
            panel = demo_panel(conversation, gateway, key)
        assert panel.customer.name == "Nguyễn Thị Hoa" and panel.member.tier_name == "Bạc" and not panel.unavailable_sections


def test_up_with_tls_runs_the_mesh_over_mutual_tls():
    """`chatmesh up --tls`: a throw-away CA and certificates under data/tls; every service serves TLS and
    requires the mesh's client certificate, and calls the others with it (the seeder too): the whole panel
    through the gateway comes from three services over mutual TLS. A client without the certificate, or
    without TLS, is refused."""
    with mesh_up("--tls", "--no-metrics") as (data, key, log):
        assert "Mutual TLS is on" in open(log).read()
        tls = os.path.join(data, "tls")

        def read(name):
            return open(os.path.join(tls, name), "rb").read()
        mesh = grpc.ssl_channel_credentials(read("ca.crt"), read("client.key"), read("client.crt"))
        with grpc.secure_channel("127.0.0.1:50051", mesh) as conversation, grpc.secure_channel("127.0.0.1:50050", mesh) as gateway:
            panel = demo_panel(conversation, gateway, key)
        assert panel.customer.name == "Nguyễn Thị Hoa" and panel.member.tier_name == "Bạc" and not panel.unavailable_sections
        stranger = grpc.ssl_channel_credentials(read("ca.crt"))
        for channel in (grpc.secure_channel("127.0.0.1:50050", stranger), grpc.insecure_channel("127.0.0.1:50050")):
            with channel:
                try:
                    demo_panel(channel, channel, key)
                    raise AssertionError("a client without the mesh's certificate was served")
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
