"""A rolling restart under load, as processes (no container engine): three gateways and two replicas of each
service on PostgreSQL, clients spreading their calls round-robin over the replicas (grpcio's round_robin over
every address, as a Kubernetes Service's endpoints or the compose file's names give them). Every process is
restarted in turn — SIGTERM (health NOT_SERVING, GOAWAY, its calls drained, exit 0), then started again on
its port — while panels are read through the gateways, orders placed with order-svc, members read from
loyalty-svc and balances from messaging-svc. No call may fail that its deadline allowed to succeed: every
call answers OK within its deadline, every panel whole, every acknowledged order stored once. Calls are
made `wait_for_ready`, as a client that means its deadline does: while the client's connection to a replica
just restarted is still in its reconnect backoff and the other replica is draining, a call waits for one
to be ready instead of failing at once (without it, one run in a few failed ~20 calls that way).

Needs CHATMESH_TEST_POSTGRES_URL (scripts/test starts a throw-away cluster); skips, saying so, without it."""
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter

import grpc
import pytest

from conftest import AUTH_KEY, PortHold, ServiceProcess, binary, mint_token, wait_until
from test_replicas_postgres import POSTGRES, create_database
from chatmesh.v1 import common_pb2 as c
from chatmesh.v1 import conversation_pb2 as cv
from chatmesh.v1 import conversation_pb2_grpc as cv_grpc
from chatmesh.v1 import loyalty_pb2 as l
from chatmesh.v1 import loyalty_pb2_grpc as l_grpc
from chatmesh.v1 import messaging_pb2_grpc as m_grpc
from chatmesh.v1 import order_pb2 as o
from chatmesh.v1 import order_pb2_grpc as o_grpc
from chatmesh.v1 import panel_pb2 as p
from chatmesh.v1 import panel_pb2_grpc as p_grpc

pytestmark = pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL: CHATMESH_TEST_POSTGRES_URL is not set (scripts/test sets it)")

SHOP = "demo-shop"
DEADLINE_S = 5
STUBS = {"conversation": cv_grpc.ConversationServiceStub, "order": o_grpc.OrderServiceStub, "loyalty": l_grpc.LoyaltyServiceStub,
         "messaging": m_grpc.MessagingServiceStub, "gateway": p_grpc.PanelServiceStub}
REPLICAS = {"conversation": 2, "order": 2, "loyalty": 2, "messaging": 2, "gateway": 3}


class RollingMesh:
    """Every replica on a port picked up front, every process told every replica's address."""

    def __init__(self, root):
        self.root = root
        self.databases = {name: create_database() for name in REPLICAS if name != "gateway"}
        hold = PortHold(sum(REPLICAS.values()))
        ports = iter(hold.ports)
        self.ports = {name: [next(ports) for _ in range(count)] for name, count in REPLICAS.items()}
        self.addresses = {f"CHATMESH_{name.upper()}_ADDRS": ",".join(f"127.0.0.1:{port}" for port in ports_)
                          for name, ports_ in self.ports.items() if name != "gateway"}
        self.processes = {}
        try:
            for name, ports_ in self.ports.items():
                for replica in range(len(ports_)):
                    self.start(name, replica)
        finally:
            hold.release()

    def start(self, name, replica):
        env = {**self.addresses, "CHATMESH_LISTEN": f"127.0.0.1:{self.ports[name][replica]}"}
        if name != "gateway":
            env["DATABASE_URL"] = self.databases[name]
        data = os.path.join(self.root, f"{name}-{replica}")
        os.makedirs(data, exist_ok=True)
        executable = name if name == "gateway" else f"{name}-svc"
        self.processes[(name, replica)] = ServiceProcess(executable, STUBS[name], data, env=env)

    def restart(self, name, replica):
        self.processes[(name, replica)].close()   # SIGTERM; exit 0 is required
        self.start(name, replica)

    def channel(self, name):
        """One client channel over every replica, round-robin, as a Service's endpoints give them."""
        target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in self.ports[name])
        return grpc.insecure_channel(target, options=[("grpc.lb_policy_name", "round_robin")])

    def close(self):
        for process in self.processes.values():
            if process.alive():
                process.close()


def test_every_process_restarted_in_turn_under_load_fails_no_call():
    md = [("authorization", "Bearer " + mint_token(SHOP, staff="lan", role="owner"))]
    with tempfile.TemporaryDirectory(prefix="rolling-") as root:
        mesh = RollingMesh(root)
        channels = []
        try:
            seeded = subprocess.run([binary("chatmesh"), "seed", "--demo"], capture_output=True, text=True, timeout=180,
                                    env={**os.environ, **mesh.addresses, "CHATMESH_AUTH_KEY": AUTH_KEY})
            assert seeded.returncode == 0, seeded.stderr[-3000:]
            channels = {name: mesh.channel(name) for name in REPLICAS}
            panels = p_grpc.PanelServiceStub(channels["gateway"])
            orders = o_grpc.OrderServiceStub(channels["order"])
            loyalty = l_grpc.LoyaltyServiceStub(channels["loyalty"])
            messaging = m_grpc.MessagingServiceStub(channels["messaging"])
            hoa = cv_grpc.ConversationServiceStub(channels["conversation"]).ListConversations(
                cv.ListConversationsRequest(shop_id=SHOP, page_id="demo-page", query="Hoa"), metadata=md).conversations[0]
            product = orders.UpsertProduct(o.UpsertProductRequest(shop_id=SHOP, name="Nón lá", variants=[
                o.Variant(sku="NL-ROLL", title="Cỡ vừa", price_vnd=120_000, stock=1_000_000, weight_g=150)]), metadata=md)
            variant = product.variants[0].variant_id
            panel_request = p.GetPanelRequest(shop_id=SHOP, page_id="demo-page", conversation_id=hoa.conversation_id)

            calls, problems, acknowledged = Counter(), [], []
            lock, stop = threading.Lock(), threading.Event()

            def record(kind, started, error=None, partial=None):
                with lock:
                    calls[kind] += 1
                    if error is not None:
                        problems.append((kind, round(time.monotonic() - started, 2), error.code().name, error.details()))
                    elif partial:
                        problems.append((kind, round(time.monotonic() - started, 2), "UNAVAILABLE SECTIONS", partial))

            def load(kind, call):
                n = 0
                while not stop.is_set():
                    n += 1
                    started = time.monotonic()
                    try:
                        partial = call(n)
                        record(kind, started, partial=partial)
                    except grpc.RpcError as error:
                        record(kind, started, error=error)
                    time.sleep(0.005)

            def panel(n):
                answer = panels.GetPanel(panel_request, metadata=md, timeout=DEADLINE_S, wait_for_ready=True)
                return [s.section for s in answer.unavailable_sections]

            def order(n):
                key = f"rolling-{threading.get_ident()}-{n}"
                answer = orders.CreateOrder(o.CreateOrderRequest(
                    shop_id=SHOP, customer_id=f"cu-rolling-{n % 11}", items=[o.OrderItemRequest(variant_id=variant, quantity=1)],
                    payment_method=o.Order.COD, idempotency_key=key,
                    shipping=o.ShippingInfo(name="Khách", phone="0912 000 111", address=c.Address(street="1 Lê Lợi", district="Quận 1", province="TP.HCM"))),
                    metadata=md, timeout=DEADLINE_S, wait_for_ready=True)
                with lock:
                    acknowledged.append((key, answer.order_id))

            def member(n):
                loyalty.GetMember(l.GetMemberRequest(shop_id=SHOP, customer_id=hoa.customer_id), metadata=md, timeout=DEADLINE_S, wait_for_ready=True)

            def balance(n):
                messaging.GetBalance(c.ShopRequest(shop_id=SHOP), metadata=md, timeout=DEADLINE_S, wait_for_ready=True)

            workers = [threading.Thread(target=load, args=("GetPanel", panel)) for _ in range(4)]
            workers += [threading.Thread(target=load, args=("CreateOrder", order)) for _ in range(2)]
            workers += [threading.Thread(target=load, args=("GetMember", member)), threading.Thread(target=load, args=("GetBalance", balance))]
            for worker in workers:
                worker.start()
            try:
                def served_since(mark):
                    with lock:
                        return all(calls[kind] > mark[kind] + 20 for kind in ("GetPanel", "CreateOrder", "GetMember", "GetBalance"))
                # Steady load first, then each process in turn, the load going on between restarts.
                with lock:
                    mark = Counter(calls)
                assert wait_until(lambda: served_since(mark), timeout=60, interval=0.1)
                for name in ["conversation", "order", "loyalty", "messaging", "gateway"]:
                    for replica in range(REPLICAS[name]):
                        mesh.restart(name, replica)
                        with lock:
                            mark = Counter(calls)
                        assert wait_until(lambda: served_since(mark), timeout=60, interval=0.1), f"load stalled after restarting {name} {replica}"
            finally:
                stop.set()
                for worker in workers:
                    worker.join()
            print(f"calls: {dict(calls)}; problems: {len(problems)}")
            assert problems == [], problems[:20]

            # Every acknowledged order is stored, once, whichever replica took it.
            summary = subprocess.run(["psql", mesh.databases["order"].split("?")[0], "-At", "-c",
                                      "SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM orders WHERE idempotency_key LIKE 'rolling-%'"],
                                     check=True, capture_output=True, text=True).stdout.strip()
            assert summary == f"{len(acknowledged)}|{len(acknowledged)}", (summary, len(acknowledged))
        finally:
            for channel in (channels.values() if channels else []):
                channel.close()
            mesh.close()
