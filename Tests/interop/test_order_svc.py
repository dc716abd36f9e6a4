"""order-svc as a real process beside real loyalty-svc and messaging-svc, called with grpcio: an order
priced and its points redeemed by loyalty-svc over the wire, the same idempotency key giving the same
order, loyalty-svc stopped meaning UNAVAILABLE and nothing written, a confirmation sent through
messaging-svc, livestream comments landing in carts, and cancellation refused once shipped."""
import tempfile
import time

import grpc
import pytest

from conftest import Mesh, mint_token
from chatmesh.v1 import common_pb2 as c
from chatmesh.v1 import loyalty_pb2 as l
from chatmesh.v1 import messaging_pb2 as m
from chatmesh.v1 import order_pb2 as o

SHOP = "shop-ord"


def md(shop=SHOP, staff="lan"):
    return [("authorization", "Bearer " + mint_token(shop, staff=staff, role="agent"))]


@pytest.fixture
def mesh():
    with tempfile.TemporaryDirectory(prefix="orders-") as root:
        mesh = Mesh(root, ["loyalty", "messaging", "order"], env={"messaging": {"CHATMESH_PRICE_SMS_VND": "500"}})
        yield mesh
        mesh.close()


SHIPPING = o.ShippingInfo(name="Nguyễn Thị Lan", phone="0912 345 678",
                          address=c.Address(street="88 Nguyễn Trãi", ward="Phường 3", district="Quận 5", province="TP.HCM"))


def stock(orders):
    shirt = orders.UpsertProduct(o.UpsertProductRequest(shop_id=SHOP, name="Áo sơ mi", variants=[
        o.Variant(sku="ASM-M", title="Size M", price_vnd=250_000, stock=20, weight_g=300)]), metadata=md())
    warehouse = orders.UpsertWarehouse(o.UpsertWarehouseRequest(shop_id=SHOP, name="Kho Q1", address=c.Address(
        street="12 Lý Tự Trọng", district="Quận 1", province="Hồ Chí Minh")), metadata=md())
    return shirt.variants[0].variant_id, warehouse.warehouse_id


def test_an_order_is_priced_by_loyalty_over_the_wire_once_and_refused_while_it_is_down(mesh):
    loyalty, orders, messaging = mesh.stub("loyalty"), mesh.stub("order"), mesh.stub("messaging")
    loyalty.ConfigureProgram(l.ConfigureProgramRequest(shop_id=SHOP, earn_vnd_per_point=10_000, redeem_vnd_per_point=1_000), metadata=md())
    loyalty.UpsertTier(l.UpsertTierRequest(shop_id=SHOP, name="Bạc", min_spend_vnd=1_000_000, discount_percent=5, combinable=True), metadata=md())
    loyalty.RecordOrderEvent(l.RecordOrderEventRequest(shop_id=SHOP, event_id="old", order_id="old-1", customer_id="cu-lan",
                                                       kind=l.RecordOrderEventRequest.PAID, amount_vnd=1_200_000), metadata=md())
    shirt, warehouse = stock(orders)
    quotes = orders.EstimateShipping(o.EstimateShippingRequest(shop_id=SHOP, warehouse_id=warehouse, to=SHIPPING.address, weight_g=600),
                                     metadata=md()).quotes
    ghn = next(q for q in quotes if q.carrier == "GHN" and q.service == "Chuẩn")
    assert ghn.fee_vnd == 23_000  # same province: 20,500 + one started 500 g step of 2,500

    request = o.CreateOrderRequest(shop_id=SHOP, customer_id="cu-lan", items=[o.OrderItemRequest(variant_id=shirt, quantity=2)],
                                   shipping=SHIPPING, payment_method=o.Order.COD, shipping_quote_id=ghn.quote_id, redeem_points=50,
                                   idempotency_key="chat-1")
    order = orders.CreateOrder(request, metadata=md())
    # 500,000; Bạc 5% = 25,000; 50 of the 120 points = 50,000; shipping 23,000.
    assert (order.subtotal_vnd, order.tier_discount_vnd, order.points_discount_vnd, order.shipping_fee_vnd, order.total_vnd) == \
        (500_000, 25_000, 50_000, 23_000, 448_000)
    assert loyalty.GetMember(l.GetMemberRequest(shop_id=SHOP, customer_id="cu-lan"), metadata=md()).points == 70
    # A retry with the same key: the same order, no second redemption.
    assert orders.CreateOrder(request, metadata=md()).order_id == order.order_id
    assert loyalty.GetMember(l.GetMemberRequest(shop_id=SHOP, customer_id="cu-lan"), metadata=md()).points == 70

    # The confirmation goes through messaging-svc, once.
    messaging.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=10_000, payment_ref="napas-1"), metadata=md())
    template = messaging.CreateTemplate(m.CreateTemplateRequest(shop_id=SHOP, channel=m.Template.SMS, name="Xác nhận",
                                                                body="Đơn {{order_id}}: {{items}}, tổng {{total}}.",
                                                                purpose=m.Template.TRANSACTION_UPDATE), metadata=md())
    for _ in range(2):
        orders.SendOrderConfirmation(o.SendOrderConfirmationRequest(shop_id=SHOP, order_id=order.order_id, channel=m.Template.SMS,
                                                                    template_id=template.template_id), metadata=md())
    with mesh.db("messaging") as db:
        sent = db.execute("SELECT recipient, body FROM messages WHERE idempotency_key = ?", (f"order:{order.order_id}:confirmation",)).fetchall()
    assert sent == [("0912345678", f"Đơn {order.order_id}: 2 × Áo sơ mi (Size M), tổng 448.000đ.")]

    # loyalty-svc down: UNAVAILABLE, and order-svc wrote nothing.
    mesh.services["loyalty"].close()
    with mesh.db("order") as db:
        before = db.execute("SELECT (SELECT COUNT(*) FROM orders), (SELECT SUM(stock) FROM variants)").fetchone()
    with pytest.raises(grpc.RpcError) as refused:
        orders.CreateOrder(o.CreateOrderRequest(shop_id=SHOP, customer_id="cu-lan", items=[o.OrderItemRequest(variant_id=shirt, quantity=1)],
                                                shipping=SHIPPING, payment_method=o.Order.COD, idempotency_key="chat-2"), metadata=md())
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE and "loyalty-svc" in refused.value.details()
    with mesh.db("order") as db:
        assert db.execute("SELECT (SELECT COUNT(*) FROM orders), (SELECT SUM(stock) FROM variants)").fetchone() == before
    mesh.start("loyalty")
    # order-svc reconnects after its back-off; the caller retries with the same key meanwhile.
    retry = o.CreateOrderRequest(shop_id=SHOP, customer_id="cu-lan", items=[o.OrderItemRequest(variant_id=shirt, quantity=1)],
                                 shipping=SHIPPING, payment_method=o.Order.COD, idempotency_key="chat-2")
    again = None
    deadline = time.time() + 20
    while again is None:
        try:
            again = orders.CreateOrder(retry, metadata=md())
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE and time.time() < deadline, error.details()
            time.sleep(0.2)
    assert again.tier_discount_vnd == 12_500
    assert orders.CreateOrder(retry, metadata=md()).order_id == again.order_id

    # Shipped: cancelling is for the back office.
    shipment = orders.ShipOrder(o.ShipOrderRequest(shop_id=SHOP, order_id=order.order_id, carrier="J&T Express", warehouse_id=warehouse,
                                                   tracking_code="852001234567"), metadata=md())
    assert shipment.tracking_url == "https://jtexpress.vn/vi/tracking?type=track&billcode=852001234567"
    with pytest.raises(grpc.RpcError) as refused:
        orders.CancelOrder(o.CancelOrderRequest(shop_id=SHOP, order_id=order.order_id, reason="đổi ý"), metadata=md())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "back office" in refused.value.details()
    cancelled = orders.CancelOrder(o.CancelOrderRequest(shop_id=SHOP, order_id=again.order_id, reason="đổi ý"), metadata=md(staff="minh"))
    assert cancelled.status == o.Order.CANCELLED and cancelled.cancelled_by_staff_id == "minh"


def test_livestream_comments_land_in_carts(mesh):
    orders = mesh.stub("order")
    shirt, _ = stock(orders)
    live = orders.CreateCampaign(o.CreateCampaignRequest(shop_id=SHOP, page_id="page-1", kind=o.Campaign.LIVESTREAM, name="Live 20h",
                                                         items=[o.CampaignItem(code="A12", variant_id=shirt, price_vnd=199_000)]), metadata=md())
    answers = [orders.IngestComment(o.IngestCommentRequest(shop_id=SHOP, campaign_id=live.campaign_id, customer_id=who, text=text), metadata=md())
               for who, text in [("cu-1", "A12 x2 😍"), ("cu-2", "a12 giá bao nhiêu?"), ("cu-1", "thêm 1 cái A12 nha, sđt 0987 654 321")]]
    assert [len(a.intents) for a in answers] == [1, 0, 1]
    assert answers[2].captured_phone == "0987654321" and answers[0].cart_id == answers[2].cart_id
    carts = orders.ListCarts(o.ListCartsRequest(shop_id=SHOP, customer_id="cu-1"), metadata=md()).carts
    assert [(cart.campaign_name, [(i.quantity, i.price_vnd) for i in cart.items], cart.total_vnd) for cart in carts] == \
        [("Live 20h", [(3, 199_000)], 597_000)]
    stats = orders.GetCampaign(o.GetCampaignRequest(shop_id=SHOP, campaign_id=live.campaign_id), metadata=md()).stats
    assert (stats.estimated_revenue_vnd, stats.draft_orders, stats.customers, stats.customers_with_phone) == (597_000, 1, 2, 1)
