"""Promotions, vouchers at checkout and a broadcast's profit across real processes (issue 21): order-svc
prices an order with loyalty-svc's best promotion over the wire (R-SEG-4), two orders race for one
referral voucher and exactly one wins, the loser's turn comes when the winner is cancelled unpaid
(R-ORD-7, the CANCELLED event travelling through order-svc's outbox), and an order a broadcast's
recipient pays reaches messaging-svc through the same outbox and counts as the broadcast's revenue
(R-MSG-2)."""
import tempfile
import threading

import grpc
import pytest

from conftest import Mesh, mint_token, wait_until
from chatmesh.v1 import common_pb2 as c
from chatmesh.v1 import loyalty_pb2 as l
from chatmesh.v1 import messaging_pb2 as m
from chatmesh.v1 import order_pb2 as o

SHOP = "shop-offers"


def md(role="owner", staff="lan"):
    return [("authorization", "Bearer " + mint_token(SHOP, staff=staff, role=role))]


@pytest.fixture
def mesh():
    with tempfile.TemporaryDirectory(prefix="offers-") as root:
        mesh = Mesh(root, ["loyalty", "messaging", "order"])
        yield mesh
        mesh.close()


def shipping(name, phone):
    return o.ShippingInfo(name=name, phone=phone, address=c.Address(street="88 Nguyễn Trãi", ward="Phường 3", district="Quận 5",
                                                                     province="TP.HCM"))


def shop_with_a_shirt(orders, loyalty):
    loyalty.ConfigureProgram(l.ConfigureProgramRequest(shop_id=SHOP, earn_vnd_per_point=10_000, redeem_vnd_per_point=1_000), metadata=md())
    shirt = orders.UpsertProduct(o.UpsertProductRequest(shop_id=SHOP, name="Áo sơ mi", variants=[
        o.Variant(sku="ASM-M", title="Size M", price_vnd=250_000, stock=50, weight_g=300)]), metadata=md())
    return shirt.variants[0].variant_id


def test_the_best_promotion_and_a_voucher_price_orders_across_the_mesh(mesh):
    loyalty, orders, messaging = mesh.stub("loyalty"), mesh.stub("order"), mesh.stub("messaging")
    shirt = shop_with_a_shirt(orders, loyalty)
    silver = loyalty.UpsertTier(l.UpsertTierRequest(shop_id=SHOP, name="Bạc", min_spend_vnd=1_000_000, discount_percent=5), metadata=md())
    loyalty.RecordOrderEvent(l.RecordOrderEventRequest(shop_id=SHOP, event_id="old", order_id="old-1", customer_id="cu-lan",
                                                       kind=l.RecordOrderEventRequest.PAID, amount_vnd=1_200_000), metadata=md())
    loyalty.UpsertPromotion(l.UpsertPromotionRequest(shop_id=SHOP, name="Bạc giảm 30k", kind=l.Promotion.AMOUNT, amount_vnd=30_000,
                                                     tier_ids=[silver.tier_id]), metadata=md())
    two = [o.OrderItemRequest(variant_id=shirt, quantity=2)]
    order = orders.CreateOrder(o.CreateOrderRequest(shop_id=SHOP, customer_id="cu-lan", items=two, shipping=shipping("Lan", "0912 345 678"),
                                                    payment_method=o.Order.COD), metadata=md(role="agent"))
    # 500,000 − the promotion's 30,000; Bạc does not combine with it: no tier discount.
    assert (order.promotion_discount_vnd, order.tier_discount_vnd, order.total_vnd) == (30_000, 0, 470_000) and order.promotion_id

    # Lan refers a friend: a voucher of 50,000 sent by SMS through messaging-svc.
    messaging.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=10_000, payment_ref="napas-1"), metadata=md())
    template = messaging.CreateTemplate(m.CreateTemplateRequest(shop_id=SHOP, channel=m.Template.SMS, name="Quà",
                                                                body="Mã {{code}} giảm {{discount}}", purpose=m.Template.MARKETING), metadata=md())
    messaging.SetMessageDefault(m.SetMessageDefaultRequest(shop_id=SHOP, use=m.MessageDefault.REFERRAL_OFFER, template_id=template.template_id),
                                metadata=md())
    # No template named: the shop's default referral offer template, and its channel.
    campaign = loyalty.CreateReferralCampaign(l.CreateReferralCampaignRequest(shop_id=SHOP, name="Bạn mới", offer=l.ReferralOffer(
        discount_vnd=50_000, valid_days=30)), metadata=md())
    assert campaign.template_id == template.template_id and campaign.channel == m.Template.SMS
    voucher = loyalty.SubmitReferral(l.SubmitReferralRequest(shop_id=SHOP, order_id="old-1", friend_phone="0987 654 321"), metadata=md())

    # Two orders race for it: exactly one wins; the other is refused naming voucher_code.
    results, errors = [], []

    def place(key):
        try:
            results.append(orders.CreateOrder(o.CreateOrderRequest(
                shop_id=SHOP, customer_id="cu-friend", items=[o.OrderItemRequest(variant_id=shirt, quantity=1)],
                shipping=shipping("Bạn", "0987 654 321"), payment_method=o.Order.COD, voucher_code=voucher.code.lower(), idempotency_key=key),
                metadata=md(role="agent")))
        except grpc.RpcError as error:
            errors.append(error)

    threads = [threading.Thread(target=place, args=(f"race-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and len(errors) == 1
    assert errors[0].code() == grpc.StatusCode.FAILED_PRECONDITION and "voucher_code" in errors[0].details()
    winner = results[0]
    assert (winner.voucher_code, winner.voucher_discount_vnd, winner.total_vnd) == (voucher.code, 50_000, 200_000)

    # Cancelled before it was paid: order-svc's outbox tells loyalty-svc, and the voucher is free again.
    orders.CancelOrder(o.CancelOrderRequest(shop_id=SHOP, order_id=winner.order_id, staff_id="lan", reason="đổi ý"), metadata=md())

    def second_order():
        try:
            return orders.CreateOrder(o.CreateOrderRequest(
                shop_id=SHOP, customer_id="cu-friend", items=[o.OrderItemRequest(variant_id=shirt, quantity=1)],
                shipping=shipping("Bạn", "0987 654 321"), payment_method=o.Order.COD, voucher_code=voucher.code, idempotency_key="after"),
                metadata=md(role="agent"))
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error
            return None

    placed = []
    assert wait_until(lambda: placed.append(second_order()) or placed[-1] is not None, timeout=20, interval=0.1)
    assert placed[-1].voucher_discount_vnd == 50_000
    redeemed = loyalty.RedeemVoucher(l.RedeemVoucherRequest(shop_id=SHOP, code=voucher.code, order_id=placed[-1].order_id), metadata=md())
    assert redeemed.redeemed_order_id == placed[-1].order_id


def test_an_order_a_recipient_pays_is_the_broadcasts_revenue(mesh):
    loyalty, orders, messaging = mesh.stub("loyalty"), mesh.stub("order"), mesh.stub("messaging")
    shirt = shop_with_a_shirt(orders, loyalty)
    loyalty.UpsertCustomerProfile(l.UpsertCustomerProfileRequest(shop_id=SHOP, customer_id="cu-lan", phone="0912345678", name="Lan",
                                                                  tags=["VIP"]), metadata=md())
    segment = loyalty.CreateSegment(l.CreateSegmentRequest(shop_id=SHOP, name="VIP", match=l.Segment.ALL, conditions=[
        l.SegmentCondition(kind=l.SegmentCondition.HAS_TAG, tag="VIP")]), metadata=md())
    messaging.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=100_000, payment_ref="napas-2"), metadata=md())
    template = messaging.CreateTemplate(m.CreateTemplateRequest(shop_id=SHOP, channel=m.Template.SMS, name="Sale",
                                                                body="Chào {{name}}, giảm 20% hôm nay", purpose=m.Template.MARKETING), metadata=md())
    broadcast = messaging.CreateBroadcast(m.CreateBroadcastRequest(shop_id=SHOP, channel=m.Template.SMS, template_id=template.template_id,
                                                                   segment_id=segment.segment_id, idempotency_key="sale-1"), metadata=md())
    request = m.BroadcastRequest(shop_id=SHOP, broadcast_id=broadcast.broadcast_id)
    assert wait_until(lambda: messaging.GetBroadcast(request, metadata=md()).status == m.Broadcast.COMPLETED, timeout=30, interval=0.1)
    assert messaging.GetBroadcast(request, metadata=md()).sent == 1

    order = orders.CreateOrder(o.CreateOrderRequest(shop_id=SHOP, customer_id="cu-lan", items=[o.OrderItemRequest(variant_id=shirt, quantity=2)],
                                                    shipping=shipping("Lan", "0912 345 678"), payment_method=o.Order.ONLINE),
                               metadata=md(role="agent"))
    orders.MarkOrderPaid(o.MarkOrderPaidRequest(shop_id=SHOP, order_id=order.order_id), metadata=md())
    assert wait_until(lambda: messaging.GetBroadcast(request, metadata=md()).attributed_orders == 1, timeout=20, interval=0.05)
    got = messaging.GetBroadcast(request, metadata=md())
    assert got.attributed_revenue_vnd == 500_000 and got.profit_vnd == 500_000 - got.cost_vnd and got.cost_vnd > 0
    # Refunded in the back office → cancelled here: it leaves the broadcast's revenue.
    orders.CancelOrder(o.CancelOrderRequest(shop_id=SHOP, order_id=order.order_id, staff_id="lan", reason="hoàn tiền"), metadata=md())
    assert wait_until(lambda: messaging.GetBroadcast(request, metadata=md()).attributed_orders == 0, timeout=20, interval=0.05)
