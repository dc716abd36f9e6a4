"""messaging-svc broadcasts and chatbot scenarios as real processes: the audience comes over the wire from a
loyalty-svc stand-in (Python grpcio serving LoyaltyService.ListSegmentMembers), the service is killed with
SIGKILL in the middle, and after a restart every member has exactly one message; scenario steps survive a
SIGKILL the same way."""
import os
import sqlite3
import tempfile
import time
from concurrent import futures

import grpc
import pytest

from conftest import ServiceProcess, free_port, mint_token, wait_until
from chatmesh.v1 import common_pb2
from chatmesh.v1 import loyalty_pb2 as l
from chatmesh.v1 import loyalty_pb2_grpc as l_grpc
from chatmesh.v1 import messaging_pb2 as m
from chatmesh.v1 import messaging_pb2_grpc as m_grpc

SHOP = "shop-bc"


class SegmentStandIn(l_grpc.LoyaltyServiceServicer):
    """ListSegmentMembers over made-up segments, paged by offset; remembers who called."""

    def __init__(self, segments):
        self.segments = segments
        self.authorizations = set()
        self.calls = 0

    def ListSegmentMembers(self, request, context):
        self.calls += 1
        self.authorizations.add(dict(context.invocation_metadata()).get("authorization", ""))
        members = self.segments.get(request.segment_id)
        if members is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"segment_id: no segment {request.segment_id}")
        start = int(request.page_token or 0)
        end = min(len(members), start + (request.page_size or 100))
        return l.ListSegmentMembersResponse(members=members[start:end], next_page_token=str(end) if end < len(members) else "")


def start_loyalty(segments, port=0):
    servicer = SegmentStandIn(segments)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    l_grpc.add_LoyaltyServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, servicer, bound


def members(n):
    return [l.SegmentMember(customer_id=f"cu_{i}", phone=f"09{i:08d}", name=f"Khách {i}") for i in range(n)]


def MessagingSvc(data_dir, loyalty_port, **env):
    return ServiceProcess("messaging-svc", m_grpc.MessagingServiceStub, data_dir, env={"CHATMESH_LOYALTY_ADDRS": f"127.0.0.1:{loyalty_port}", **env})


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="messaging-bc-") as path:
        yield path


def md():
    return [("authorization", "Bearer " + mint_token(SHOP, staff="owner-1", role="owner"))]


def messages_of(data_dir, broadcast_id):
    with sqlite3.connect(os.path.join(data_dir, "messaging.sqlite")) as db:
        return db.execute("SELECT COUNT(*), COUNT(DISTINCT customer_id) FROM messages WHERE broadcast_id = ?", (broadcast_id,)).fetchone()


def test_a_broadcast_killed_midway_resumes_and_messages_everyone_once(data_dir):
    total = 30_000
    loyalty, servicer, port = start_loyalty({"vip": members(total)})
    env = {"CHATMESH_BROADCAST_BATCH": "200"}
    svc = MessagingSvc(data_dir, port, **env)
    try:
        svc.stub.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=total * 800, payment_ref="napas-bc"), metadata=md())
        tpl = svc.stub.CreateTemplate(m.CreateTemplateRequest(
            shop_id=SHOP, channel=m.Template.SMS, name="Sale", body="Chào {{name}}, {{shop}} giảm 20%", purpose=m.Template.MARKETING), metadata=md())
        created = svc.stub.CreateBroadcast(m.CreateBroadcastRequest(
            shop_id=SHOP, channel=m.Template.SMS, template_id=tpl.template_id, segment_id="vip", params={"shop": "Shop Hoa"},
            idempotency_key="sale-1"), metadata=md())
        request = m.BroadcastRequest(shop_id=SHOP, broadcast_id=created.broadcast_id)
        # Progress shows while it runs; kill it with SIGKILL a few thousand messages in.
        seen = []
        assert wait_until(lambda: seen.append(svc.stub.GetBroadcast(request, metadata=md())) or seen[-1].sent >= 3_000, timeout=120, interval=0.01)
        midway = seen[-1]
        svc.kill()
        assert midway.status == m.Broadcast.RUNNING and midway.total == total and 3_000 <= midway.sent < total, midway

        svc = MessagingSvc(data_dir, port, **env)
        assert wait_until(lambda: svc.stub.GetBroadcast(request, metadata=md()).status == m.Broadcast.COMPLETED, timeout=180, interval=0.2)
        done = svc.stub.GetBroadcast(request, metadata=md())
        assert (done.total, done.sent, done.failed, done.skipped) == (total, total, 0, 0)
        assert done.cost_vnd == total * 800 and done.remaining_balance_vnd == 0
        balance = svc.stub.GetBalance(common_pb2.ShopRequest(shop_id=SHOP), metadata=md())
        assert balance.balance_vnd == 0
        # The same idempotency key names the same broadcast; cancelling a finished one says why not.
        again = svc.stub.CreateBroadcast(m.CreateBroadcastRequest(
            shop_id=SHOP, channel=m.Template.SMS, template_id=tpl.template_id, segment_id="vip", params={"shop": "Shop Hoa"},
            idempotency_key="sale-1"), metadata=md())
        assert again.broadcast_id == created.broadcast_id
        with pytest.raises(grpc.RpcError) as err:
            svc.stub.CancelBroadcast(request, metadata=md())
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "broadcast_id" in err.value.details()
        svc.close()
        assert messages_of(data_dir, created.broadcast_id) == (total, total)
        # loyalty-svc was called with a service token, not the shop owner's.
        assert servicer.authorizations and all(a.startswith("Bearer cm1.") for a in servicer.authorizations)
    finally:
        if svc.alive():
            svc.close()
        loyalty.stop(0)


def test_a_broadcast_waits_for_loyalty_svc_and_can_be_cancelled(data_dir):
    port = free_port()
    svc = MessagingSvc(data_dir, port)
    loyalty = None
    try:
        tpl = svc.stub.CreateTemplate(m.CreateTemplateRequest(
            shop_id=SHOP, channel=m.Template.EMAIL, name="Tin", body="Chào {{name}}", purpose=m.Template.MARKETING), metadata=md())
        created = svc.stub.CreateBroadcast(m.CreateBroadcastRequest(
            shop_id=SHOP, channel=m.Template.EMAIL, template_id=tpl.template_id, segment_id="mail"), metadata=md())
        request = m.BroadcastRequest(shop_id=SHOP, broadcast_id=created.broadcast_id)
        time.sleep(1.5)
        waiting = svc.stub.GetBroadcast(request, metadata=md())
        assert waiting.status == m.Broadcast.RUNNING and waiting.sent == 0
        # loyalty-svc comes up: the broadcast goes; members without an e-mail address are skipped with the reason.
        audience = members(10)
        for i, member in enumerate(audience):
            if i % 2 == 0:
                member.email = f"k{i}@example.vn"
        loyalty, _, _ = start_loyalty({"mail": audience}, port=port)
        assert wait_until(lambda: svc.stub.GetBroadcast(request, metadata=md()).status == m.Broadcast.COMPLETED, timeout=30, interval=0.2)
        done = svc.stub.GetBroadcast(request, metadata=md())
        assert (done.total, done.sent, done.skipped) == (10, 5, 5)
        assert [(r.reason, r.count) for r in done.skip_reasons] == [("no valid e-mail address", 5)]
        # A broadcast scheduled for tomorrow is cancelled before it starts.
        later = svc.stub.CreateBroadcast(m.CreateBroadcastRequest(
            shop_id=SHOP, channel=m.Template.EMAIL, template_id=tpl.template_id, segment_id="mail",
            schedule_at_ms=int(time.time() * 1000) + 86_400_000), metadata=md())
        assert later.status == m.Broadcast.SCHEDULED
        cancelled = svc.stub.CancelBroadcast(m.BroadcastRequest(shop_id=SHOP, broadcast_id=later.broadcast_id), metadata=md())
        assert cancelled.status == m.Broadcast.CANCELLED and cancelled.sent == 0
        with pytest.raises(grpc.RpcError) as err:
            svc.stub.CreateBroadcast(m.CreateBroadcastRequest(shop_id=SHOP, channel=m.Template.EMAIL, template_id=tpl.template_id), metadata=md())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "segment_id" in err.value.details()
        svc.close()
    finally:
        if svc.alive():
            svc.close()
        if loyalty:
            loyalty.stop(0)


def test_scenario_steps_survive_a_sigkill_and_a_reply_stops_them(data_dir):
    port = free_port()
    svc = MessagingSvc(data_dir, port)
    service_md = [("authorization", "Bearer " + mint_token(SHOP, staff="conversation-svc", role="service"))]
    try:
        svc.stub.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=10_000, payment_ref="r1"), metadata=md())
        tpl = svc.stub.CreateTemplate(m.CreateTemplateRequest(
            shop_id=SHOP, channel=m.Template.SMS, name="Nhắc", body="Bạn còn {{tag_name}} không?", purpose=m.Template.MARKETING), metadata=md())
        scenario = svc.stub.CreateScenario(m.CreateScenarioRequest(
            shop_id=SHOP, trigger_tag_name="Đang cân nhắc", channel=m.Template.SMS,
            steps=[m.ScenarioStep(delay_ms=0, template_id=tpl.template_id), m.ScenarioStep(delay_ms=4_000, template_id=tpl.template_id)]),
            metadata=md())
        now = int(time.time() * 1000)

        def attach(event, customer, phone):
            return svc.stub.OnTagAttached(m.OnTagAttachedRequest(
                shop_id=SHOP, event_id=event, page_id="p1", customer_id=customer, tag_name="đang cân nhắc", at_ms=now,
                recipient=phone), metadata=service_md)

        assert list(attach("e1", "c1", "0912345678").scenario_ids) == [scenario.scenario_id]
        assert list(attach("e2", "c2", "0987654321").scenario_ids) == [scenario.scenario_id]
        assert list(attach("e1", "c1", "0912345678").scenario_ids) == []

        def balance():
            return svc.stub.GetBalance(common_pb2.ShopRequest(shop_id=SHOP), metadata=md()).balance_vnd

        # Both first steps go at once; then c2 replies, which stops c2's second step.
        assert wait_until(lambda: balance() == 10_000 - 2 * 800, timeout=10, interval=0.1)
        reply = svc.stub.OnCustomerMessage(m.OnCustomerMessageRequest(
            shop_id=SHOP, event_id="m1", page_id="p1", customer_id="c2", recipient="5550001", at_ms=now + 1_000), metadata=service_md)
        assert reply.cancelled_steps == 1
        svc.kill()
        svc = MessagingSvc(data_dir, port)
        # c1's second step was due 4 s after the tag; it is sent after the restart, and only it.
        assert wait_until(lambda: balance() == 10_000 - 3 * 800, timeout=15, interval=0.1)
        time.sleep(1.5)
        assert balance() == 10_000 - 3 * 800
        svc.close()
        with sqlite3.connect(os.path.join(data_dir, "messaging.sqlite")) as db:
            rows = db.execute("SELECT customer_id, status, reason FROM scheduled_steps ORDER BY customer_id, step_index").fetchall()
        assert rows == [("c1", "SENT", ""), ("c1", "SENT", ""), ("c2", "SENT", ""), ("c2", "CANCELLED", "customer replied")]
    finally:
        if svc.alive():
            svc.close()
