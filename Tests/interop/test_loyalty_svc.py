"""loyalty-svc as a real process, called with grpcio, beside a real messaging-svc (sandbox providers):
points and tiers from order events delivered several times, a restart that keeps them, referral vouchers
sent through messaging-svc over the wire exactly once (also when messaging-svc was down when the referral
was made), and a broadcast whose audience is a loyalty-svc segment."""
import tempfile
import time

import grpc
import pytest

from conftest import Mesh, mint_token, wait_until
from chatmesh.v1 import common_pb2
from chatmesh.v1 import loyalty_pb2 as l
from chatmesh.v1 import loyalty_pb2_grpc as l_grpc
from chatmesh.v1 import messaging_pb2 as m
from chatmesh.v1 import messaging_pb2_grpc as m_grpc
from chatmesh.v1 import order_pb2 as o

SHOP = "shop-loy"


def md(shop=SHOP):
    return [("authorization", "Bearer " + mint_token(shop, staff="owner-1", role="owner"))]


class LoyaltyMesh(Mesh):
    """loyalty-svc and messaging-svc (SMS at 500 VND a message)."""

    def __init__(self, root):
        super().__init__(root, ["loyalty", "messaging"], env={"messaging": {"CHATMESH_PRICE_SMS_VND": "500"}})

    @property
    def loyalty(self):
        return self.services["loyalty"]

    @property
    def messaging(self):
        return self.services["messaging"]

    def start_loyalty(self):
        return self.start("loyalty")

    def start_messaging(self):
        return self.start("messaging")

    def messages(self, where="1 = 1", args=()):
        with self.db("messaging") as db:
            return db.execute(f"SELECT recipient, body, idempotency_key, broadcast_id FROM messages WHERE {where}", args).fetchall()


@pytest.fixture
def mesh():
    with tempfile.TemporaryDirectory(prefix="loyalty-") as root:
        mesh = LoyaltyMesh(root)
        yield mesh
        mesh.close()


def paid(stub, event, order, customer, vnd, **extra):
    return stub.RecordOrderEvent(l.RecordOrderEventRequest(
        shop_id=SHOP, event_id=event, order_id=order, customer_id=customer, kind=l.RecordOrderEventRequest.PAID, amount_vnd=vnd,
        channel=o.Order.LIVESTREAM, **extra), metadata=md())


def test_points_tiers_and_a_restart(mesh):
    loyalty = mesh.loyalty.stub
    loyalty.ConfigureProgram(l.ConfigureProgramRequest(shop_id=SHOP, earn_vnd_per_point=10_000, redeem_vnd_per_point=1_000,
                                                       expiry=l.PointsExpiry(kind=l.PointsExpiry.AFTER_MONTHS, months=12)), metadata=md())
    gold = loyalty.UpsertTier(l.UpsertTierRequest(shop_id=SHOP, name="Vàng", min_spend_vnd=3_000_000, discount_percent=5,
                                                  points_multiplier=2, combinable=False), metadata=md())
    # The same event five times (an at-least-once sender retrying): applied once.
    applied = [paid(loyalty, "evt-1", "o-1", "cu-lan", 3_200_000).applied for _ in range(5)]
    assert applied == [True, False, False, False, False]
    member = loyalty.GetMember(l.GetMemberRequest(shop_id=SHOP, customer_id="cu-lan"), metadata=md())
    assert (member.points, member.order_count, member.tier_id, member.tier_name) == (320, 1, gold.tier_id, "Vàng")
    assert member.expiring[0].points == 320

    quote = loyalty.PreviewOrder(l.PreviewOrderRequest(shop_id=SHOP, customer_id="cu-lan", subtotal_vnd=1_000_000, redeem_points=50), metadata=md())
    # Points are earned on what is paid: 900,000đ → 90 × 2 (Vàng).
    assert (quote.tier_discount_vnd, quote.points_discount_vnd, quote.points_to_earn) == (50_000, 50_000, 180)
    # Not combinable with a promotion.
    quote = loyalty.PreviewOrder(l.PreviewOrderRequest(shop_id=SHOP, customer_id="cu-lan", subtotal_vnd=1_000_000, has_promotion=True), metadata=md())
    assert quote.tier_discount_vnd == 0

    with pytest.raises(grpc.RpcError) as refused:
        loyalty.RedeemPoints(l.RedeemPointsRequest(shop_id=SHOP, customer_id="cu-lan", points=321, order_id="o-2"), metadata=md())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "points" in refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        loyalty.UpsertCustomerProfile(l.UpsertCustomerProfileRequest(shop_id=SHOP, customer_id="cu-lan", phone="0123"), metadata=md())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "phone" in refused.value.details()
    with pytest.raises(grpc.RpcError) as refused:
        loyalty.GetMember(l.GetMemberRequest(shop_id=SHOP, customer_id="cu-lan"), metadata=md("shop-other"))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED

    loyalty.RedeemPoints(l.RedeemPointsRequest(shop_id=SHOP, customer_id="cu-lan", points=20, order_id="o-2"), metadata=md())
    mesh.loyalty.close()
    mesh.start_loyalty()
    member = mesh.loyalty.stub.GetMember(l.GetMemberRequest(shop_id=SHOP, customer_id="cu-lan"), metadata=md())
    assert (member.points, member.tier_id) == (300, gold.tier_id)
    # After the restart the event is still known.
    assert not paid(mesh.loyalty.stub, "evt-1", "o-1", "cu-lan", 3_200_000).applied


def test_referral_vouchers_go_through_messaging_exactly_once(mesh):
    loyalty, messaging = mesh.loyalty.stub, mesh.messaging.stub
    messaging.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=100_000, payment_ref="napas-1"), metadata=md())
    template = messaging.CreateTemplate(m.CreateTemplateRequest(
        shop_id=SHOP, channel=m.Template.SMS, name="Quà giới thiệu", purpose=m.Template.MARKETING,
        body="{{referrer}} tặng bạn mã {{code}} giảm {{discount}}, hạn {{expires}}."), metadata=md())
    loyalty.ConfigureProgram(l.ConfigureProgramRequest(shop_id=SHOP, earn_vnd_per_point=10_000), metadata=md())
    loyalty.CreateReferralCampaign(l.CreateReferralCampaignRequest(
        shop_id=SHOP, name="Bạn mới", offer=l.ReferralOffer(discount_vnd=50_000, valid_days=30), channel=m.Template.SMS,
        template_id=template.template_id), metadata=md())
    loyalty.UpsertCustomerProfile(l.UpsertCustomerProfileRequest(shop_id=SHOP, customer_id="cu-hoa", phone="0912345678", name="Trần Hoa"), metadata=md())
    paid(loyalty, "e-1", "o-1", "cu-hoa", 500_000)
    paid(loyalty, "e-2", "o-2", "cu-hoa", 700_000)

    with pytest.raises(grpc.RpcError) as refused:
        loyalty.SubmitReferral(l.SubmitReferralRequest(shop_id=SHOP, order_id="o-1", friend_phone="+84 912 345 678"), metadata=md())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "own phone" in refused.value.details()

    voucher = loyalty.SubmitReferral(l.SubmitReferralRequest(shop_id=SHOP, order_id="o-1", friend_phone="0987 654 321"), metadata=md())
    assert voucher.sent and voucher.friend_phone == "0987654321" and voucher.discount_vnd == 50_000
    again = loyalty.SubmitReferral(l.SubmitReferralRequest(shop_id=SHOP, order_id="o-1", friend_phone="0987654321"), metadata=md())
    assert again.code == voucher.code
    sent = mesh.messages("idempotency_key = ?", ("voucher:" + voucher.code,))
    assert len(sent) == 1
    recipient, body, _, _ = sent[0]
    assert recipient == "0987654321" and voucher.code in body and "Trần Hoa" in body and "50.000đ" in body
    assert messaging.GetBalance(common_pb2.ShopRequest(shop_id=SHOP), metadata=md()).balance_vnd == 99_500

    # messaging-svc down: the voucher is made, not sent; when it is back, loyalty-svc's retry sends it, once.
    mesh.messaging.close()
    late = loyalty.SubmitReferral(l.SubmitReferralRequest(shop_id=SHOP, order_id="o-2", friend_phone="0977111222"), metadata=md())
    assert not late.sent
    mesh.start_messaging()
    assert wait_until(lambda: len(mesh.messages("idempotency_key = ?", ("voucher:" + late.code,))) == 1, timeout=40), mesh.loyalty.log()[-3000:]
    time.sleep(1)
    assert len(mesh.messages("recipient = ?", ("0977111222",))) == 1

    redeemed = loyalty.RedeemVoucher(l.RedeemVoucherRequest(shop_id=SHOP, code=voucher.code, order_id="o-friend"), metadata=md())
    assert redeemed.redeemed
    with pytest.raises(grpc.RpcError) as refused:
        loyalty.RedeemVoucher(l.RedeemVoucherRequest(shop_id=SHOP, code=voucher.code, order_id="o-other"), metadata=md())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_broadcast_reaches_a_loyalty_segment(mesh):
    loyalty, messaging = mesh.loyalty.stub, mesh.messaging.stub
    for i in range(120):
        tags = ["VIP"] if i % 3 == 0 else ["Hỏi giá"]
        loyalty.UpsertCustomerProfile(l.UpsertCustomerProfileRequest(
            shop_id=SHOP, customer_id=f"cu-{i:03d}", phone=f"09{i:08d}", name=f"Khách {i}", tags=tags), metadata=md())
    segment = loyalty.CreateSegment(l.CreateSegmentRequest(shop_id=SHOP, name="VIP", match=l.Segment.ALL, conditions=[
        l.SegmentCondition(kind=l.SegmentCondition.HAS_TAG, tag="vip")]), metadata=md())
    assert loyalty.CountSegment(l.SegmentRequest(shop_id=SHOP, segment_id=segment.segment_id), metadata=md()).count == 40

    messaging.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=100_000, payment_ref="napas-2"), metadata=md())
    template = messaging.CreateTemplate(m.CreateTemplateRequest(
        shop_id=SHOP, channel=m.Template.SMS, name="Ưu đãi VIP", purpose=m.Template.MARKETING, body="Chào {{name}}, VIP giảm 15%!"), metadata=md())
    broadcast = messaging.CreateBroadcast(m.CreateBroadcastRequest(
        shop_id=SHOP, channel=m.Template.SMS, template_id=template.template_id, segment_id=segment.segment_id, idempotency_key="bc-vip"), metadata=md())
    done = lambda: messaging.GetBroadcast(m.BroadcastRequest(shop_id=SHOP, broadcast_id=broadcast.broadcast_id), metadata=md())
    assert wait_until(lambda: done().status == m.Broadcast.COMPLETED, timeout=30), mesh.messaging.log()[-3000:]
    final = done()
    assert (final.total, final.sent, final.failed, final.skipped) == (40, 40, 0, 0)
    recipients = sorted(r for r, _, _, b in mesh.messages("broadcast_id = ?", (broadcast.broadcast_id,)))
    assert recipients == sorted(f"09{i:08d}" for i in range(0, 120, 3))
