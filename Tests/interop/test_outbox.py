"""Cross-service events through the outbox, with real processes: order events reach loyalty-svc exactly
once across loyalty-svc being down and order-svc being SIGKILLed mid-dispatch; an event loyalty-svc keeps
refusing goes dead and is replayed with `chatmesh events --replay` once the fault is fixed; a tag attached
in conversation-svc makes the customer a member of a HAS_TAG segment in loyalty-svc and starts the tag's
chatbot scenario in messaging-svc."""
import json
import os
import subprocess
import tempfile
import time

import grpc
import pytest

from conftest import AUTH_KEY, Mesh, binary, mint_token, wait_until
from chatmesh.v1 import common_pb2 as c
from chatmesh.v1 import conversation_pb2 as cv
from chatmesh.v1 import loyalty_pb2 as l
from chatmesh.v1 import messaging_pb2 as m
from chatmesh.v1 import order_pb2 as o
from chatmesh.v1 import outbox_pb2 as ob
from chatmesh.v1 import outbox_pb2_grpc as ob_grpc

SHOP = "shop-events"
PRICE = 250_000
SHIPPING = o.ShippingInfo(name="Nguyễn Thị Lan", phone="0912 345 678",
                          address=c.Address(street="88 Nguyễn Trãi", ward="Phường 3", district="Quận 5", province="TP.HCM"))


def md(shop=SHOP):
    return [("authorization", "Bearer " + mint_token(shop, staff="lan", role="owner"))]


def outbox(mesh, name):
    return ob_grpc.OutboxServiceStub(mesh.services[name].channel)


def queue(mesh, name, subscriber):
    status = outbox(mesh, name).GetOutboxStatus(ob.GetOutboxStatusRequest(shop_id=SHOP), metadata=md())
    return next(q for q in status.queues if q.subscriber == subscriber)


def events_cli(mesh, *args):
    out = subprocess.run([binary("chatmesh"), "events", "--shop", SHOP, "--json", *args],
                         env={**os.environ, "CHATMESH_AUTH_KEY": AUTH_KEY, **mesh.addresses_env()},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def place_orders(mesh, customers, per_customer):
    orders, loyalty = mesh.stub("order"), mesh.stub("loyalty")
    loyalty.ConfigureProgram(l.ConfigureProgramRequest(shop_id=SHOP, earn_vnd_per_point=10_000, redeem_vnd_per_point=1_000), metadata=md())
    product = orders.UpsertProduct(o.UpsertProductRequest(shop_id=SHOP, name="Áo thun", variants=[
        o.Variant(sku="AT-M", title="Size M", price_vnd=PRICE, stock=customers * per_customer, weight_g=200)]), metadata=md())
    variant = product.variants[0].variant_id
    placed = []
    meta = md()
    for n in range(per_customer):
        for k in range(customers):
            placed.append(orders.CreateOrder(o.CreateOrderRequest(
                shop_id=SHOP, customer_id=f"cu-{k:02d}", items=[o.OrderItemRequest(variant_id=variant, quantity=1)], shipping=SHIPPING,
                payment_method=o.Order.BANK_TRANSFER, idempotency_key=f"chat-{k}-{n}"), metadata=meta).order_id)
    return placed


def member(mesh, customer):
    return mesh.stub("loyalty").GetMember(l.GetMemberRequest(shop_id=SHOP, customer_id=customer), metadata=md())


@pytest.fixture
def root():
    with tempfile.TemporaryDirectory(prefix="outbox-") as root:
        yield root


def test_paid_orders_reach_loyalty_exactly_once_across_an_outage_and_a_sigkill_mid_dispatch(root):
    mesh = Mesh(root, ["loyalty", "order"])
    try:
        customers, per_customer = 20, 30
        placed = place_orders(mesh, customers, per_customer)
        # loyalty-svc stopped; every order paid meanwhile.
        mesh.services["loyalty"].close()
        orders, meta = mesh.stub("order"), md()
        for order_id in placed:
            orders.MarkOrderPaid(o.MarkOrderPaidRequest(shop_id=SHOP, order_id=order_id), metadata=meta)
        assert wait_until(lambda: not queue(mesh, "order", "loyalty").reachable, timeout=10)
        waiting = queue(mesh, "order", "loyalty")
        assert waiting.pending == len(placed) and waiting.dead == 0 and waiting.retrying == 0  # no attempts used while it was down
        assert waiting.oldest_pending_age_ms > 0
        status = events_cli(mesh, "--service", "order")
        assert status[0]["queues"][0]["pending"] == len(placed) and status[0]["queues"][0]["reachable"] is False

        # loyalty-svc back; order-svc killed while it is delivering, then restarted.
        mesh.start("loyalty")
        at_kill = None
        deadline = time.time() + 30
        while at_kill is None and time.time() < deadline:
            pending = queue(mesh, "order", "loyalty").pending
            if pending < len(placed) - 50:
                mesh.services["order"].kill()
                at_kill = pending
            else:
                time.sleep(0.005)
        assert at_kill is not None and at_kill > 0, "dispatch did not start, or ended before the kill"
        mesh.start("order")
        assert wait_until(lambda: queue(mesh, "order", "loyalty").pending == 0, timeout=60, interval=0.1)

        # Every order's points exactly once: 30 orders of 250,000 đ at 10,000 đ a point, per customer.
        for k in range(customers):
            got = member(mesh, f"cu-{k:02d}")
            assert (got.order_count, got.total_spent_vnd, got.points) == (per_customer, per_customer * PRICE, per_customer * PRICE // 10_000)
        # The same event sent to loyalty-svc again, ten times (a redelivery): applied once, before.
        event = l.RecordOrderEventRequest(shop_id=SHOP, event_id=f"{placed[0]}:paid", order_id=placed[0], customer_id="cu-00",
                                          kind=l.RecordOrderEventRequest.PAID, amount_vnd=PRICE)
        for _ in range(10):
            assert not mesh.stub("loyalty").RecordOrderEvent(event, metadata=md()).applied
        assert member(mesh, "cu-00").points == per_customer * PRICE // 10_000
    finally:
        mesh.close()


def test_an_event_loyalty_keeps_refusing_goes_dead_and_replays_once_the_fault_is_fixed(root):
    mesh = Mesh(root, ["loyalty", "order"], env={"order": {"CHATMESH_OUTBOX_MAX_ATTEMPTS": "3", "CHATMESH_OUTBOX_RETRY_MS": "100"}})
    try:
        placed = place_orders(mesh, 1, 3)
        # loyalty-svc restarted with the wrong mesh key: it answers, and refuses order-svc's tokens.
        mesh.services["loyalty"].close()
        mesh.env["loyalty"] = {"CHATMESH_AUTH_KEY": "not-the-mesh-key"}
        mesh.start("loyalty")
        for order_id in placed:
            mesh.stub("order").MarkOrderPaid(o.MarkOrderPaidRequest(shop_id=SHOP, order_id=order_id), metadata=md())
        assert wait_until(lambda: queue(mesh, "order", "loyalty").dead == 1, timeout=20, interval=0.1)
        # The first is dead; the customer's later events wait behind it, in order.
        time.sleep(1)
        stuck = queue(mesh, "order", "loyalty")
        assert (stuck.dead, stuck.pending) == (1, 2)
        assert "UNAUTHENTICATED" in stuck.last_error
        dead = events_cli(mesh, "--service", "order", "--dead")[0]["dead"]
        assert [(e["event_id"], e["kind"], e["customer_id"], e["attempts"]) for e in dead] == [(f"{placed[0]}:paid", "RecordOrderEvent", "cu-00", 3)]
        assert "UNAUTHENTICATED" in dead[0]["last_error"]
        # Another shop sees none of it.
        other = outbox(mesh, "order").ListDeadEvents(ob.ListDeadEventsRequest(shop_id="shop-other"), metadata=md("shop-other"))
        assert list(other.events) == []

        # Fixed: loyalty-svc back with the mesh key. Dead stays dead until replayed.
        mesh.services["loyalty"].close()
        mesh.env["loyalty"] = {}
        mesh.start("loyalty")
        time.sleep(1)
        with pytest.raises(grpc.RpcError) as missing:
            member(mesh, "cu-00")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        agent = [("authorization", "Bearer " + mint_token(SHOP, staff="an", role="agent"))]
        with pytest.raises(grpc.RpcError) as refused:
            outbox(mesh, "order").ReplayDeadEvents(ob.ReplayDeadEventsRequest(shop_id=SHOP), metadata=agent)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert events_cli(mesh, "--service", "order", "--replay") == [{"service": "order-svc", "replayed": 1}]
        assert wait_until(lambda: queue(mesh, "order", "loyalty").pending == 0, timeout=20, interval=0.1)
        got = member(mesh, "cu-00")
        assert (got.order_count, got.points) == (3, 3 * PRICE // 10_000)
        assert queue(mesh, "order", "loyalty").dead == 0
    finally:
        mesh.close()


def test_a_tag_attached_in_conversation_svc_joins_a_has_tag_segment_and_starts_its_scenario(root):
    mesh = Mesh(root, ["conversation", "loyalty", "messaging"])
    try:
        conversations, loyalty, messaging = mesh.stub("conversation"), mesh.stub("loyalty"), mesh.stub("messaging")
        segment = loyalty.CreateSegment(l.CreateSegmentRequest(shop_id=SHOP, name="Khách quen", match=l.Segment.ALL, conditions=[
            l.SegmentCondition(kind=l.SegmentCondition.HAS_TAG, tag="Khách quen")]), metadata=md())
        messaging.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=50_000, payment_ref="napas-ev-1"), metadata=md())
        template = messaging.CreateTemplate(m.CreateTemplateRequest(
            shop_id=SHOP, channel=m.Template.MESSENGER, name="Tri ân", body="Cảm ơn {{tag_name}} đã ủng hộ shop!",
            purpose=m.Template.MARKETING), metadata=md())
        messaging.CreateScenario(m.CreateScenarioRequest(
            shop_id=SHOP, trigger_tag_name="Khách quen", channel=m.Template.MESSENGER,
            steps=[m.ScenarioStep(delay_ms=0, template_id=template.template_id)]), metadata=md())

        conversations.ConnectPage(cv.ConnectPageRequest(shop_id=SHOP, page_id="page-ev", name="Shop Lan", platform=cv.Page.FACEBOOK),
                                  metadata=md())
        said = conversations.IngestMessage(cv.IngestMessageRequest(
            shop_id=SHOP, page_id="page-ev", customer_external_id="24681357", customer_name="Trần Minh", kind=cv.ChatMessage.MESSAGE, sender=cv.ChatMessage.CUSTOMER,
            text="shop ơi còn áo không, sđt 0987 654 321", sent_at_ms=int(time.time() * 1000)), metadata=md())
        tags = conversations.ListTags(cv.ListTagsRequest(shop_id=SHOP, page_id="page-ev"), metadata=md())
        regular = next(t for f in tags.folders for t in f.tags if t.name == "Khách quen")
        conversations.AttachTag(cv.AttachTagRequest(shop_id=SHOP, conversation_id=said.conversation_id, tag_id=regular.tag_id,
                                                    staff_id="lan"), metadata=md())

        def members():
            return [x.customer_id for x in loyalty.ListSegmentMembers(l.ListSegmentMembersRequest(
                shop_id=SHOP, segment_id=segment.segment_id), metadata=md()).members]

        assert wait_until(lambda: members() == [said.customer_id], timeout=15, interval=0.1)
        profile = loyalty.ListSegmentMembers(l.ListSegmentMembersRequest(shop_id=SHOP, segment_id=segment.segment_id), metadata=md()).members[0]
        assert (profile.phone, profile.name) == ("0987654321", "Trần Minh")

        def sent():
            with mesh.db("messaging") as db:
                return db.execute("SELECT recipient, body, customer_id FROM messages WHERE channel = ?", (m.Template.MESSENGER,)).fetchall()

        # The customer wrote first (that message opened Messenger's window), so the scenario's step goes to them.
        assert wait_until(lambda: len(sent()) == 1, timeout=15, interval=0.1)
        assert sent() == [("24681357", "Cảm ơn Khách quen đã ủng hộ shop!", said.customer_id)]

        conversations.DetachTag(cv.DetachTagRequest(shop_id=SHOP, conversation_id=said.conversation_id, tag_id=regular.tag_id,
                                                    staff_id="lan"), metadata=md())
        assert wait_until(lambda: members() == [], timeout=15, interval=0.1)
        status = events_cli(mesh, "--service", "conversation")[0]
        assert status["service"] == "conversation-svc"
        assert {q["subscriber"]: (q["pending"], q["dead"], q["reachable"]) for q in status["queues"]} == \
            {"loyalty-profile": (0, 0, True), "messaging": (0, 0, True), "replies": (0, 0, True)}
    finally:
        mesh.close()
