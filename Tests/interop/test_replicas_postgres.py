"""Two order-svc replicas on one PostgreSQL database (what `deploy.replicas` runs), called at once:
the same stock is never oversold, the same idempotency key gives one order whichever replicas it
reaches, and their outboxes deliver each order event once. loyalty-svc is a grpcio stand-in that
prices every order at list price and counts each RecordOrderEvent it receives.

Needs CHATMESH_TEST_POSTGRES_URL (scripts/test starts a throw-away cluster); skips, saying so, without it."""
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent import futures

import grpc
import pytest

from conftest import ServiceProcess, free_ports, mint_token, wait_until
from chatmesh.v1 import common_pb2 as c
from chatmesh.v1 import loyalty_pb2 as l
from chatmesh.v1 import loyalty_pb2_grpc as l_grpc
from chatmesh.v1 import order_pb2 as o
from chatmesh.v1 import order_pb2_grpc as o_grpc

POSTGRES = os.environ.get("CHATMESH_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL: CHATMESH_TEST_POSTGRES_URL is not set (scripts/test sets it)")

SHOP = "shop-replicas"
SHIPPING = o.ShippingInfo(name="Lê Văn Tâm", phone="0903 111 222",
                          address=c.Address(street="5 Lê Lợi", ward="Bến Nghé", district="Quận 1", province="TP.HCM"))


class LoyaltyStandIn(l_grpc.LoyaltyServiceServicer):
    def __init__(self):
        self.lock = threading.Lock()
        self.events = Counter()

    def PreviewOrder(self, request, context):
        return l.PreviewOrderResponse(points_to_earn=request.subtotal_vnd // 10_000)

    def RecordOrderEvent(self, request, context):
        with self.lock:
            self.events[request.event_id] += 1
        return l.RecordOrderEventResponse(applied=True)


def md():
    return [("authorization", "Bearer " + mint_token(SHOP, staff="tam", role="owner"))]


def create_database():
    name = "replicas_" + uuid.uuid4().hex[:12]
    base = POSTGRES.split("?")[0]
    subprocess.run(["psql", base, "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return base.rsplit("/", 1)[0] + "/" + name + "?sslmode=disable"


def test_two_order_replicas_on_postgres_never_oversell_keep_keys_once_and_deliver_events_once():
    stand_in = LoyaltyStandIn()
    loyalty = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    l_grpc.add_LoyaltyServiceServicer_to_server(stand_in, loyalty)
    loyalty_port = loyalty.add_insecure_port("127.0.0.1:0")
    loyalty.start()
    database = create_database()
    replicas = []
    with tempfile.TemporaryDirectory(prefix="replicas-") as root:
        try:
            for n in range(2):
                listen, messaging = free_ports(2)
                replicas.append(ServiceProcess("order-svc", o_grpc.OrderServiceStub, os.path.join(root, f"r{n}"), env={
                    "DATABASE_URL": database, "CHATMESH_LISTEN": f"127.0.0.1:{listen}",
                    "CHATMESH_LOYALTY_ADDRS": f"127.0.0.1:{loyalty_port}", "CHATMESH_MESSAGING_ADDRS": f"127.0.0.1:{messaging}"}))
            a, b = (r.stub for r in replicas)
            meta = md()
            product = a.UpsertProduct(o.UpsertProductRequest(shop_id=SHOP, name="Nón lá", variants=[
                o.Variant(sku="NL-1", title="Cỡ vừa", price_vnd=120_000, stock=50, weight_g=150)]), metadata=meta)
            variant = product.variants[0].variant_id

            def order(stub, key, customer):
                return stub.CreateOrder(o.CreateOrderRequest(
                    shop_id=SHOP, customer_id=customer, items=[o.OrderItemRequest(variant_id=variant, quantity=1)], shipping=SHIPPING,
                    payment_method=o.Order.BANK_TRANSFER, idempotency_key=key), metadata=meta)

            # 120 orders for 50 in stock, half through each replica, all at once.
            def attempt(n):
                try:
                    return order((a, b)[n % 2], f"buy-{n}", f"cu-{n % 12}").order_id
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "left" in error.details(), error.details()
                    return None

            with futures.ThreadPoolExecutor(max_workers=24) as pool:
                placed = [x for x in pool.map(attempt, range(120)) if x]
            assert len(placed) == 50 and len(set(placed)) == 50
            stock = a.ListProducts(o.ListProductsRequest(shop_id=SHOP), metadata=meta).products[0].variants[0].stock
            assert stock == 0

            # The same key to both replicas at once: one order.
            product = a.UpsertProduct(o.UpsertProductRequest(shop_id=SHOP, product_id=product.product_id, name="Nón lá", variants=[
                o.Variant(variant_id=variant, sku="NL-1", title="Cỡ vừa", price_vnd=120_000, stock=100, weight_g=150)]), metadata=meta)
            with futures.ThreadPoolExecutor(max_workers=20) as pool:
                pairs = [(pool.submit(order, a, f"same-{n}", "cu-same"), pool.submit(order, b, f"same-{n}", "cu-same")) for n in range(10)]
                same = [(x.result().order_id, y.result().order_id) for x, y in pairs]
            assert all(x == y for x, y in same) and len({x for x, _ in same}) == 10
            stock = a.ListProducts(o.ListProductsRequest(shop_id=SHOP), metadata=meta).products[0].variants[0].stock
            assert stock == 90

            # Paid through either replica: both dispatch, each event reaches loyalty-svc once.
            with futures.ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda n: (a, b)[n % 2].MarkOrderPaid(o.MarkOrderPaidRequest(shop_id=SHOP, order_id=placed[n]), metadata=meta),
                              range(len(placed))))
            assert wait_until(lambda: len(stand_in.events) == 50, timeout=30, interval=0.1)
            time.sleep(2)  # room for a second delivery, were there one
            assert sorted(stand_in.events) == sorted(f"{order_id}:paid" for order_id in placed)
            assert set(stand_in.events.values()) == {1}
        finally:
            for replica in replicas:
                if replica.alive():
                    replica.close()
            loyalty.stop(0)


def test_a_change_committed_on_one_conversation_replica_reaches_watchers_fed_by_the_other():
    """R-PANEL-4 across replicas: two conversation-svc replicas on one PostgreSQL database; a message
    ingested and a tag attached through replica B reach a WatchChanges stream, a WatchInbox stream and a
    gateway's WatchPanel that all follow replica A."""
    from chatmesh.v1 import conversation_pb2 as cv
    from chatmesh.v1 import conversation_pb2_grpc as cv_grpc
    from chatmesh.v1 import panel_pb2 as p
    from chatmesh.v1 import panel_pb2_grpc as p_grpc
    from conftest import ServerProcess
    database = create_database()
    replicas = []
    with tempfile.TemporaryDirectory(prefix="conversation-replicas-") as root:
        gateway = None
        calls = []
        try:
            unused = free_ports(4)  # loyalty, messaging, order: nobody listens (the outbox retries, sections are unavailable)
            for n in range(2):
                listen = free_ports(1)[0]
                replicas.append(ServiceProcess("conversation-svc", cv_grpc.ConversationServiceStub, os.path.join(root, f"r{n}"), env={
                    "DATABASE_URL": database, "CHATMESH_LISTEN": f"127.0.0.1:{listen}",
                    "CHATMESH_LOYALTY_ADDRS": f"127.0.0.1:{unused[0]}", "CHATMESH_MESSAGING_ADDRS": f"127.0.0.1:{unused[1]}"}))
            a, b = (r.stub for r in replicas)
            gateway_port = free_ports(1)[0]
            gateway = ServerProcess("gateway", env={
                "CHATMESH_LISTEN": f"127.0.0.1:{gateway_port}", "CHATMESH_CONVERSATION_ADDRS": replicas[0].address,
                "CHATMESH_ORDER_ADDRS": f"127.0.0.1:{unused[2]}", "CHATMESH_LOYALTY_ADDRS": f"127.0.0.1:{unused[3]}",
                "CHATMESH_PANEL_SECTION_TIMEOUT_MS": "300"})
            gateway_channel = grpc.insecure_channel(gateway.address)
            meta = md()
            a.ConnectPage(cv.ConnectPageRequest(shop_id=SHOP, page_id="page-r", name="Trang", platform=cv.Page.FACEBOOK), metadata=meta)

            def say(stub, text):
                return stub.IngestMessage(cv.IngestMessageRequest(
                    shop_id=SHOP, page_id="page-r", customer_external_id="psid-r1", customer_name="Lê Văn Tâm", kind=cv.ChatMessage.MESSAGE,
                    sender=cv.ChatMessage.CUSTOMER, text=text, sent_at_ms=int(time.time() * 1000)), metadata=meta)

            said = say(a, "Chào shop")
            # A deadline on each stream: a change that never arrives fails the test instead of hanging it.
            changes = a.WatchChanges(c.WatchChangesRequest(shop_id=SHOP), metadata=meta, timeout=60)
            inbox = a.WatchInbox(cv.WatchInboxRequest(shop_id=SHOP, page_id="page-r"), metadata=meta, timeout=60)
            panel = p_grpc.PanelServiceStub(gateway_channel).WatchPanel(
                p.WatchPanelRequest(shop_id=SHOP, page_id="page-r", conversation_id=said.conversation_id), metadata=meta, timeout=60)
            calls += [changes, inbox, panel]
            start = next(changes)
            assert not start.changes and start.position > 0
            assert next(inbox).kind == cv.InboxEvent.SYNCED
            first = next(panel)
            assert first.panel.conversation.last_message_text == "Chào shop"

            say(b, "Còn hàng không ạ?")
            got = next(changes)
            assert [(ch.kind, ch.conversation_id) for ch in got.changes] == [(c.Change.MESSAGE, said.conversation_id)]
            assert got.position == start.position + 1
            row = next(inbox)
            assert row.kind == cv.InboxEvent.UPDATED and row.conversation.last_message_text == "Còn hàng không ạ?"
            # The panel may be read again meanwhile (its feeds coming up): the update that shows the message.
            update = next(u for u in panel if "conversation" in u.changed_sections and u.panel.conversation.last_message_text == "Còn hàng không ạ?")
            assert update.panel.conversation.unread_count == 2

            tag = b.ListTags(cv.ListTagsRequest(shop_id=SHOP, page_id="page-r"), metadata=meta).folders[0].tags[0]
            b.AttachTag(cv.AttachTagRequest(shop_id=SHOP, conversation_id=said.conversation_id, tag_id=tag.tag_id, staff_id="tam"), metadata=meta)
            update = next(u for u in panel if "tags" in u.changed_sections and u.panel.tags.attached)
            assert [t.tag_id for t in update.panel.tags.attached] == [tag.tag_id]
        finally:
            for call in calls:
                call.cancel()
            if gateway:
                gateway.stop_cleanly()
            for replica in replicas:
                replica.close()
