"""`chatmesh up --demo` as a newcomer runs it (through scripts/up): the five services from the executables
beside it on the default ports, healthy, the demo shop loaded, logs prefixed per service, and every service
stopped cleanly by Ctrl-C; and, when a default port is taken, nothing started and the port and its holder named."""
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


def test_up_runs_seeds_and_stops_the_whole_mesh():
    with tempfile.TemporaryDirectory(prefix="up-") as root:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHATMESH_")}
        log = open(os.path.join(root, "up.log"), "w+")
        up = subprocess.Popen([binary("chatmesh"), "up", "--demo", "--data-dir", os.path.join(root, "data")], cwd=root, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 120
            while "Ctrl-C stops every service" not in open(log.name).read():
                assert up.poll() is None and time.time() < deadline, open(log.name).read()[-3000:]
                time.sleep(0.2)
            text = open(log.name).read()
            for name in ["conversation-svc", "loyalty-svc", "messaging-svc", "order-svc", "gateway"]:
                assert f"[{name}]" in text
            assert "seeded demo-shop orders" in text
            key = open(os.path.join(root, "data", "auth.key")).read().strip()
            md = [("authorization", "Bearer " + mint_token("demo-shop", staff="lan", role="owner", key=key))]
            with grpc.insecure_channel("127.0.0.1:50051") as channel:
                hoa = cv_grpc.ConversationServiceStub(channel).ListConversations(
                    cv.ListConversationsRequest(shop_id="demo-shop", page_id="demo-page", query="Hoa"), metadata=md).conversations[0]
            with grpc.insecure_channel("127.0.0.1:50050") as channel:
                panel = p_grpc.PanelServiceStub(channel).GetPanel(p.GetPanelRequest(shop_id="demo-shop", conversation_id=hoa.conversation_id), metadata=md)
            assert panel.customer.name == "Nguyễn Thị Hoa" and panel.member.tier_name == "Bạc" and not panel.unavailable_sections
        finally:
            up.send_signal(signal.SIGINT)
            code = up.wait(timeout=30)
        assert code == 0, open(log.name).read()[-3000:]
        assert "stopping the services" in open(log.name).read()
        # Nothing is left listening.
        for port in range(50050, 50055):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"

