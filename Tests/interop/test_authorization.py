"""The authorization matrix (issue 23): every RPC of every ChatMesh service, as its proto declares it, called
over the wire against a seeded five-process mesh with

  1. no token                                   → UNAUTHENTICATED
  2. an expired token                           → UNAUTHENTICATED
  3. a forged token (an agent's claims raised to owner, the old signature; and one signed with another key)
                                                → UNAUTHENTICATED
  4. a token of another shop                    → PERMISSION_DENIED
  5. a role the RPC's `Access:` line does not admit (an agent for `managers`; owner, admin and agent for
     `services`)                                → PERMISSION_DENIED
  6. an own-shop token whose request names the other shop's records → the code REQUESTS documents
     (NOT_FOUND unless said otherwise), and an answer that shows none of that shop's records

and none of them changes a row: every table of every service's database is read before and after (the
other shop's rows after case 6). Then each request is sent as it should be — by an agent, or an owner for
`managers` and a service for `services` — and answers its documented code (OK unless said otherwise), so a
refusal above cannot be the request's own fault.

The RPCs come from the protos (grpc_tools' descriptors, with their comments); one missing from REQUESTS
fails the test, so a new RPC cannot escape the matrix.
"""
import base64
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2, json_format, symbol_database

from conftest import AUTH_KEY, ROOT, Mesh, binary, wait_until
from chatmesh.v1 import conversation_pb2, loyalty_pb2, messaging_pb2, order_pb2, outbox_pb2, panel_pb2  # noqa: F401 (their messages, by name)

SHOP_A, SHOP_B = "shop-a", "shop-b"
# The services that serve each proto service (OutboxService: the two that keep an outbox).
SERVED_BY = {
    "chatmesh.v1.ConversationService": ["conversation"], "chatmesh.v1.LoyaltyService": ["loyalty"],
    "chatmesh.v1.MessagingService": ["messaging"], "chatmesh.v1.OrderService": ["order"],
    "chatmesh.v1.OutboxService": ["conversation", "order"], "chatmesh.v1.PanelService": ["gateway"],
}
NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000
ADDRESS = {"street": "12 Lê Lợi", "ward": "Bến Nghé", "district": "Quận 1", "province": "Hồ Chí Minh"}

# One request per RPC, as a shop's staff would send it. "{name}" is one of shop A's records (IDS below),
# "{shop}" the shop of the call, "{staff}" the caller's staff id, "{fresh}" a new key per call.
# "foreign": what case 6 answers when the request names shop A's records in shop B; None where the
# request names none (it creates something new, or reads the whole shop). "ok": the code of the call as
# it should be sent (after every refusal, in this order: reads first, what removes things last).
OK, NOT_FOUND = "OK", "NOT_FOUND"
# Case 6 answers other than NOT_FOUND, each showing nothing of shop A and changing none of its rows:
EMPTY = "OK"   # a filter, not a lookup: the other shop's id matches none of the calling shop's rows
MEMBER = "OK"  # loyalty-svc's members are keyed by the calling shop's customer ids and begin with their first event
EVENT = "OK"   # an event the mesh delivers about the calling shop's customer: recorded for that shop
REQUESTS = {
    # ConversationService
    "ConversationService/ListTags": dict(req={"page_id": "{page}"}),
    "ConversationService/ListConversations": dict(req={"page_id": "{page}"}),
    "ConversationService/GetConversation": dict(req={"conversation_id": "{conversation}"}),
    "ConversationService/GetConversationContext": dict(req={"conversation_id": "{conversation}"}),
    "ConversationService/ListMessages": dict(req={"conversation_id": "{conversation}"}),
    "ConversationService/GetCustomer": dict(req={"customer_id": "{customer}"}),
    "ConversationService/ListNotes": dict(req={"customer_id": "{customer}"}),
    "ConversationService/ListCustomFields": dict(req={}, foreign=None),
    "ConversationService/ListActivity": dict(req={"page_id": "{page}"}),
    "ConversationService/GetStaffConversationStats": dict(req={"page_id": "{page}", "from_ms": str(NOW_MS - 30 * DAY_MS), "to_ms": str(NOW_MS + DAY_MS)}),
    "ConversationService/WatchChanges": dict(req={"after_position": "0"}, foreign=None),
    "ConversationService/WatchInbox": dict(req={"page_id": "{page}"}),
    "ConversationService/ConnectPage": dict(req={"page_id": "page-{fresh}", "name": "Trang mới", "platform": "FACEBOOK"}, foreign=None),
    "ConversationService/InstallDefaultTags": dict(req={"page_id": "{page}"}),
    "ConversationService/CreateTagFolder": dict(req={"page_id": "{page}", "name": "Nhóm {fresh}"}),
    "ConversationService/CreateTag": dict(req={"page_id": "{page}", "folder_id": "{folder}", "name": "Nhãn {fresh}", "color": "#ff8800", "visible": True}),
    "ConversationService/UpdateTag": dict(req={"page_id": "{page}", "tag_id": "{tag}", "folder_id": "{folder}", "name": "Quan tâm nhiều", "color": "#00aa00", "visible": True}),
    "ConversationService/AttachTag": dict(req={"conversation_id": "{conversation}", "tag_id": "{tag}", "staff_id": "{staff}"}),
    "ConversationService/DetachTag": dict(req={"conversation_id": "{conversation}", "tag_id": "{attached_tag}", "staff_id": "{staff}"}),
    "ConversationService/SetFacebookLabelSync": dict(req={"page_id": "{page}", "enabled": False}),
    "ConversationService/SyncFacebookLabels": dict(req={"page_id": "{page}", "labels": [], "attachments": []}),
    "ConversationService/IngestMessage": dict(req={"page_id": "{page}", "customer_external_id": "{customer_external}", "customer_name": "Lan",
                                                   "kind": "MESSAGE", "sender": "CUSTOMER", "text": "Còn size M không ạ?",
                                                   "sent_at_ms": str(NOW_MS), "platform_message_id": "m-{fresh}"}),
    "ConversationService/SendReply": dict(req={"conversation_id": "{conversation}", "staff_id": "{staff}", "text": "Dạ còn ạ",
                                               "target": "INBOX", "idempotency_key": "{fresh}"}),
    # The seed's staff messages came in through IngestMessage: the rule answers that only a failed SendReply is sent again.
    "ConversationService/RetryReply": dict(req={"message_id": "{reply_message}", "staff_id": "{staff}"}, ok="FAILED_PRECONDITION"),
    "ConversationService/AssignConversation": dict(req={"conversation_id": "{conversation}", "staff_id": "{staff}", "mode": "MANUAL"}),
    "ConversationService/SetStaffPresence": dict(req={"page_id": "{page}", "staff_id": "{staff}", "online": True}),
    "ConversationService/CloseConversation": dict(req={"conversation_id": "{conversation}", "staff_id": "{staff}"}),
    "ConversationService/ReopenConversation": dict(req={"conversation_id": "{conversation}", "staff_id": "{staff}"}),
    "ConversationService/UpdateCustomer": dict(req={"customer_id": "{customer}", "name": "Lan Anh", "update_fields": ["name"], "staff_id": "{staff}"}),
    "ConversationService/BlockCustomer": dict(req={"customer_id": "{other_customer}", "staff_id": "{staff}"}),
    "ConversationService/UnblockCustomer": dict(req={"customer_id": "{other_customer}", "staff_id": "{staff}"}),
    "ConversationService/AddNote": dict(req={"customer_id": "{customer}", "text": "Khách hẹn chiều nhận", "staff_id": "{staff}"}),
    "ConversationService/DefineCustomField": dict(req={"key": "k{fresh}", "label": "Màu thích", "type": "TEXT"}, foreign=None),
    "ConversationService/SetCustomFieldValue": dict(req={"customer_id": "{customer}", "key": "{field}", "value": "M", "staff_id": "{staff}"}),
    "ConversationService/DeleteNote": dict(req={"customer_id": "{note_customer}", "note_id": "{note}", "staff_id": "{staff}"}),
    "ConversationService/DeleteTag": dict(req={"page_id": "{page}", "tag_id": "{spare_tag}"}),
    # LoyaltyService
    "LoyaltyService/GetProgram": dict(req={}, foreign=None),
    "LoyaltyService/ListTiers": dict(req={}, foreign=None),
    "LoyaltyService/GetMember": dict(req={"customer_id": "{customer}"}),
    "LoyaltyService/ListMembers": dict(req={}, foreign=None),
    "LoyaltyService/PreviewOrder": dict(req={"customer_id": "{customer}", "subtotal_vnd": "500000"}, foreign=MEMBER),
    "LoyaltyService/ListPointsHistory": dict(req={"customer_id": "{customer}"}, foreign=MEMBER),
    "LoyaltyService/ListSegments": dict(req={}, foreign=None),
    "LoyaltyService/ListSegmentMembers": dict(req={"segment_id": "{segment}"}),
    "LoyaltyService/CountSegment": dict(req={"segment_id": "{segment}"}),
    "LoyaltyService/ListPromotions": dict(req={}, foreign=None),
    "LoyaltyService/GetOfferRevenueByDistrict": dict(req={"province": "Hồ Chí Minh", "from_ms": str(NOW_MS - 30 * DAY_MS), "to_ms": str(NOW_MS + DAY_MS)}, foreign=None),
    "LoyaltyService/WatchChanges": dict(req={"after_position": "0"}, foreign=None),
    "LoyaltyService/ConfigureProgram": dict(req={"earn_vnd_per_point": "10000", "redeem_vnd_per_point": "1000", "expiry": {"kind": "NEVER"},
                                                 "cycle": "LIFETIME"}, foreign=None),
    "LoyaltyService/UpsertTier": dict(req={"tier_id": "{tier}", "name": "Bạc", "min_spend_vnd": "1000000", "discount_percent": 2,
                                           "points_multiplier": 1.0, "combinable": True}),
    "LoyaltyService/UpsertCustomerProfile": dict(req={"customer_id": "{customer}", "phone": "0912345678", "name": "Lan",
                                                      "event_id": "{fresh}", "at_ms": str(NOW_MS)}, foreign=MEMBER),
    "LoyaltyService/RecordOrderEvent": dict(req={"event_id": "{fresh}", "order_id": "web-{fresh}", "customer_id": "{customer}", "kind": "PAID",
                                                 "amount_vnd": "200000", "channel": "WEB", "at_ms": str(NOW_MS)}, foreign=MEMBER),
    "LoyaltyService/RedeemPoints": dict(req={"customer_id": "{customer}", "points": "1", "reason": "Đổi điểm", "staff_id": "{staff}"}, foreign=MEMBER),
    "LoyaltyService/AdjustPoints": dict(req={"customer_id": "{customer}", "points": "10", "reason": "Tặng điểm", "staff_id": "{staff}"}, foreign=MEMBER),
    "LoyaltyService/AdjustSegmentPoints": dict(req={"segment_id": "{segment}", "points": "5", "reason": "Tri ân", "staff_id": "{staff}",
                                                    "idempotency_key": "{fresh}"}),
    "LoyaltyService/ExpirePoints": dict(req={"as_of_ms": str(NOW_MS)}, foreign=None),
    "LoyaltyService/CreateSegment": dict(req={"name": "Nhóm {fresh}", "match": "ALL", "conditions": [{"kind": "POINTS_AT_LEAST", "points": "1"}]},
                                         foreign=None),
    "LoyaltyService/UpsertPromotion": dict(req={"name": "Giảm 5%", "kind": "PERCENT", "percent": 5, "tier_ids": ["{tier}"],
                                                "from_ms": str(NOW_MS - DAY_MS), "to_ms": str(NOW_MS + DAY_MS)}),
    "LoyaltyService/LinkAdAccount": dict(req={"ad_account_id": "act_1234567", "access_token": "EAAB{fresh}"}, foreign=None),
    # FAILED_PRECONDITION: the calling shop has linked no ad account, which is checked before the segment.
    "LoyaltyService/SyncSegmentAudience": dict(req={"segment_id": "{segment}", "schedule": "OFF"}, foreign="FAILED_PRECONDITION"),
    "LoyaltyService/GetAudienceSync": dict(req={"segment_id": "{segment}"}),
    "LoyaltyService/CreateReferralCampaign": dict(req={"name": "Giới thiệu {fresh}", "offer": {"discount_percent": 10, "valid_days": 30},
                                                       "channel": "SMS", "template_id": "{referral_template}"},
                                                  # The template is the calling shop's to have: messaging-svc looks it up in that shop when a
                                                  # voucher is sent (NOT_FOUND there), not when the campaign is made.
                                                  foreign="OK"),
    "LoyaltyService/SubmitReferral": dict(req={"order_id": "{paid_order}", "friend_phone": "0909876543", "customer_id": "{paid_order_customer}",
                                               "staff_id": "{staff}"},
                                          # loyalty-svc knows a paid order by its PAID event in the calling shop: there is none.
                                          foreign="FAILED_PRECONDITION"),
    "LoyaltyService/RedeemVoucher": dict(req={"code": "{voucher}", "order_id": "ord-{fresh}"}),
    "LoyaltyService/DeletePromotion": dict(req={"promotion_id": "{promotion}"}),
    "LoyaltyService/DeleteTier": dict(req={"tier_id": "{top_tier}"}),
    # MessagingService
    "MessagingService/ListMessageDefaults": dict(req={}, foreign=None),
    "MessagingService/ListTemplates": dict(req={}, foreign=None),
    "MessagingService/GetBalance": dict(req={}, foreign=None),
    "MessagingService/GetBroadcast": dict(req={"broadcast_id": "{broadcast}"}),
    "MessagingService/GetZnsQuality": dict(req={}, foreign=None),
    "MessagingService/ListScenarios": dict(req={}, foreign=None),
    "MessagingService/CreateTemplate": dict(req={"channel": "SMS", "name": "Mẫu {fresh}", "body": "Cảm ơn quý khách đã mua hàng",
                                                 "purpose": "TRANSACTION_UPDATE"}, foreign=None),
    "MessagingService/SetMessageDefault": dict(req={"use": "ORDER_CONFIRMATION", "template_id": "{sms_template}"}),
    "MessagingService/GetMessageDefault": dict(req={"use": "ORDER_CONFIRMATION"}, foreign=None),
    "MessagingService/TopUp": dict(req={"amount_vnd": "100000", "payment_ref": "{fresh}"}, foreign=None),
    "MessagingService/SetAutoTopUp": dict(req={"enabled": True, "threshold_vnd": "50000", "amount_vnd": "200000"}, foreign=None),
    "MessagingService/SendMessage": dict(req={"channel": "SMS", "recipient": "0912345678", "template_id": "{sms_template}",
                                              "params": {"order_id": "1", "name": "Lan", "items": "Áo", "total": "350.000đ"},
                                              "idempotency_key": "{fresh}", "customer_id": "{customer}"}),
    "MessagingService/CreateBroadcast": dict(req={"channel": "SMS", "template_id": "{promo_template}", "segment_id": "{segment}",
                                                  "schedule_at_ms": str(NOW_MS + 7 * DAY_MS), "params": {"shop": "Hoa Mai"},
                                                  "idempotency_key": "{fresh}"}),
    "MessagingService/RecordDeliveryReport": dict(req={"message_id": "{message}", "delivered": True}),
    "MessagingService/RecordFeedback": dict(req={"message_id": "{message}", "negative": False}),
    "MessagingService/CreateScenario": dict(req={"trigger_tag_name": "Kịch bản {fresh}", "channel": "MESSENGER",
                                                 "steps": [{"delay_ms": str(DAY_MS), "template_id": "{messenger_template}"}]}),
    "MessagingService/OnTagAttached": dict(req={"event_id": "{fresh}", "page_id": "{page}", "customer_id": "{customer}", "tag_name": "Nhãn lạ",
                                                "at_ms": str(NOW_MS), "recipient": "{customer_external}"}, foreign=EVENT),
    "MessagingService/OnTagDetached": dict(req={"event_id": "{fresh}", "page_id": "{page}", "customer_id": "{customer}", "tag_name": "Nhãn lạ",
                                                "at_ms": str(NOW_MS)}, foreign=EVENT),
    "MessagingService/OnCustomerMessage": dict(req={"event_id": "{fresh}", "page_id": "{page}", "customer_id": "{customer}",
                                                    "recipient": "{customer_external}", "at_ms": str(NOW_MS)}, foreign=EVENT),
    "MessagingService/OnOrderEvent": dict(req={"event_id": "{fresh}", "order_id": "{paid_order}", "customer_id": "{paid_order_customer}",
                                               "kind": "PAID", "amount_vnd": "300000", "at_ms": str(NOW_MS)}, foreign=EVENT),
    "MessagingService/DeliverReply": dict(req={"delivery_key": "{fresh}", "page_id": "{page}", "platform": "FACEBOOK", "target": "INBOX",
                                               "recipient": "{customer_external}", "text": "Dạ shop chào chị",
                                               "last_customer_message_at_ms": str(NOW_MS), "customer_id": "{customer}"}, foreign=EVENT),
    "MessagingService/CancelBroadcast": dict(req={"broadcast_id": "{broadcast}"}),
    # OrderService
    "OrderService/ListProducts": dict(req={}, foreign=None),
    "OrderService/ListWarehouses": dict(req={}, foreign=None),
    "OrderService/GetCampaign": dict(req={"campaign_id": "{campaign}"}),
    "OrderService/ListCampaigns": dict(req={"page_id": "{page}"}, foreign=EMPTY),
    "OrderService/ListCarts": dict(req={"customer_id": "{customer}"}, foreign=EMPTY),
    "OrderService/GetOrderSummary": dict(req={"customer_id": "{customer}"}, foreign=EMPTY),
    "OrderService/GetCustomerOrderContext": dict(req={"customer_id": "{customer}"}, foreign=EMPTY),
    "OrderService/GetOrder": dict(req={"order_id": "{paid_order}"}),
    "OrderService/EstimateShipping": dict(req={"warehouse_id": "{warehouse}", "to": ADDRESS, "weight_g": 500, "cod_vnd": "350000"}),
    "OrderService/GetStaffSalesStats": dict(req={"from_ms": str(NOW_MS - 30 * DAY_MS), "to_ms": str(NOW_MS + DAY_MS)}, foreign=None),
    "OrderService/WatchChanges": dict(req={"after_position": "0"}, foreign=None),
    "OrderService/UpsertProduct": dict(req={"name": "Áo thun {fresh}", "variants": [{"sku": "AT-{fresh}", "title": "Size M", "price_vnd": "150000",
                                                                                    "stock": 10, "weight_g": 200}]}, foreign=None),
    "OrderService/UpsertWarehouse": dict(req={"name": "Kho {fresh}", "address": ADDRESS}, foreign=None),
    "OrderService/CreateCampaign": dict(req={"page_id": "{page}", "kind": "SALES_POST", "name": "Bài {fresh}", "post_id": "post-{fresh}",
                                             "items": [{"code": "B1", "variant_id": "{variant}", "price_vnd": "300000"}]}),
    "OrderService/UpdateCampaignItemPrice": dict(req={"campaign_id": "{campaign}", "code": "{campaign_code}", "price_vnd": "289000",
                                                      "staff_id": "{staff}"}),
    "OrderService/SetCampaignLive": dict(req={"campaign_id": "{campaign}", "live": True}),
    "OrderService/IngestComment": dict(req={"campaign_id": "{campaign}", "customer_id": "{customer}", "text": "{campaign_code} 1",
                                            "commented_at_ms": str(NOW_MS)}),
    "OrderService/UpdateCart": dict(req={"cart_id": "{cart}", "items": [{"variant_id": "{variant}", "quantity": 1, "price_vnd": "299000"}],
                                         "staff_id": "{staff}"}),
    "OrderService/SendCartReminder": dict(req={"cart_id": "{cart}", "staff_id": "{staff}", "channel": "MESSENGER",
                                               "template_id": "{messenger_template}", "recipient": "{cart_customer_external}",
                                               "idempotency_key": "{fresh}"}),
    "OrderService/CreateOrder": dict(req={"customer_id": "{customer}", "items": [{"variant_id": "{variant}", "quantity": 1}],
                                          "shipping": {"name": "Lan", "phone": "0912345678", "address": ADDRESS}, "payment_method": "COD",
                                          "staff_id": "{staff}", "channel": "SOCIAL", "idempotency_key": "{fresh}", "page_id": "{page}"}),
    "OrderService/CombineCarts": dict(req={"cart_ids": ["{cart}", "{other_cart}"], "staff_id": "{staff}", "idempotency_key": "{fresh}"}),
    "OrderService/ResendPaymentLink": dict(req={"order_id": "{pending_order}", "staff_id": "{staff}", "channel": "SMS",
                                                "template_id": "{sms_template}", "idempotency_key": "{fresh}"}),
    "OrderService/MarkOrderPaid": dict(req={"order_id": "{pending_order}", "staff_id": "{staff}"}),
    "OrderService/ShipOrder": dict(req={"order_id": "{paid_order}", "carrier": "GHN", "warehouse_id": "{warehouse}", "staff_id": "{staff}"}),
    "OrderService/CompleteOrder": dict(req={"order_id": "{shipped_order}", "staff_id": "{staff}"}),
    "OrderService/SendOrderConfirmation": dict(req={"order_id": "{paid_order}", "staff_id": "{staff}", "channel": "SMS",
                                                    "template_id": "{sms_template}", "idempotency_key": "{fresh}"}),
    "OrderService/CancelOrder": dict(req={"order_id": "{pending_order}", "staff_id": "{staff}", "reason": "Khách đổi ý"}),
    # OutboxService (conversation-svc and order-svc)
    "OutboxService/GetOutboxStatus": dict(req={}, foreign=None),
    "OutboxService/ListDeadEvents": dict(req={}, foreign=None),
    "OutboxService/ReplayDeadEvents": dict(req={"event_ids": []}, foreign=None),
    # PanelService (gateway)
    "PanelService/GetPanel": dict(req={"page_id": "{page}", "conversation_id": "{conversation}"}),
    "PanelService/EstimateShipping": dict(req={"warehouse_id": "{warehouse}", "to": ADDRESS, "weight_g": 500, "cod_vnd": "350000"}),
    # A composed report: the section that names the page answers NOT_FOUND among its unavailable sections.
    "PanelService/GetStaffReport": dict(req={"page_id": "{page}", "from_ms": str(NOW_MS - 30 * DAY_MS), "to_ms": str(NOW_MS + DAY_MS)},
                                        foreign="OK"),
    "PanelService/WatchPanel": dict(req={"page_id": "{page}", "conversation_id": "{conversation}"}),
}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(shop, staff, role, ttl_s=3600, key=AUTH_KEY):
    """A token as TokenSigner mints it (README, Auth)."""
    claims = {"exp": int(time.time() * 1000) + ttl_s * 1000, "role": role, "shop": shop, "staff": staff}
    body = "cm1." + b64url(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    return body + "." + b64url(hmac.new(key.encode(), body.encode(), hashlib.sha256).digest())


def raised_to_owner(agent_token):
    """The agent's token with its claims rewritten to owner and the agent's signature kept."""
    prefix, claims, signature = agent_token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["role"] = "owner"
    return f"{prefix}.{b64url(json.dumps(decoded, sort_keys=True, separators=(',', ':')).encode())}.{signature}"


def rpc_table():
    """(service full name, method, input type, server streaming, access) for every RPC in proto/chatmesh/v1, from
    protoc's descriptors with comments; access is the comment's `Access:` line (scripts/codegen reads the same)."""
    from grpc_tools import protoc
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    protos = sorted(f"chatmesh/v1/{f}" for f in os.listdir(os.path.join(ROOT, "proto", "chatmesh", "v1")) if f.endswith(".proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        assert protoc.main(["protoc", f"-I{os.path.join(ROOT, 'proto')}", f"-I{include}", "--include_source_info",
                            f"--descriptor_set_out={out}"] + protos) == 0
        fds = descriptor_pb2.FileDescriptorSet.FromString(open(out, "rb").read())
    rows = []
    for f in fds.file:
        comments = {tuple(loc.path): loc.leading_comments for loc in f.source_code_info.location}
        for si, service in enumerate(f.service):
            for mi, method in enumerate(service.method):
                lines = [line.strip() for line in comments.get((6, si, 2, mi), "").splitlines()]
                access = [line.split(":", 1)[1].strip().rstrip(".") for line in lines if line.startswith("Access:")]
                rows.append((f"{f.package}.{service.name}", method.name, method.input_type.lstrip("."), method.server_streaming,
                             access[0] if access else "staff"))
    return rows


RPCS = rpc_table()


def test_every_rpc_has_a_request_and_an_access_the_router_knows():
    named = {f"{service.split('.')[-1]}/{method}" for service, method, *_ in RPCS}
    assert named - REQUESTS.keys() == set(), "RPCs without a request in the authorization matrix"
    assert REQUESTS.keys() - named == set(), "requests for RPCs the protos no longer have"
    assert {access for *_, access in RPCS} <= {"staff", "managers", "services"}
    assert {service for service, *_ in RPCS} == SERVED_BY.keys()


def fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids) if "{" in value else value
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


def names_records(value):
    """Whether a request template names one of shop A's records."""
    text = json.dumps(value)
    return any(f"{{{name}}}" in text for name in IDS_NAMES)


IDS_NAMES = ["page", "conversation", "customer", "customer_external", "other_customer", "tag", "attached_tag", "spare_tag", "folder",
             "reply_message", "note", "note_customer", "field", "tier", "top_tier", "segment", "promotion", "voucher", "referral_template",
             "sms_template", "promo_template", "messenger_template", "broadcast", "message", "campaign", "campaign_code", "variant", "last_variant", "cart",
             "other_cart", "cart_customer_external", "warehouse", "paid_order", "paid_order_customer", "pending_order", "shipped_order"]


class Caller:
    def __init__(self, mesh):
        self.mesh = mesh
        self.channels = {name: grpc.insecure_channel(f"127.0.0.1:{port}") for name, port in mesh.ports.items()}
        self.sym = symbol_database.Default()
        self.fresh = 0

    def close(self):
        for channel in self.channels.values():
            channel.close()

    def request(self, input_type, template, shop, staff, ids):
        self.fresh += 1
        values = fill(template, {**ids, "shop": shop, "staff": staff, "fresh": f"authz{self.fresh}"})
        message = self.sym.GetSymbol(input_type)()
        json_format.ParseDict({"shop_id": shop, **values}, message)
        return message

    def call(self, server, service, method, streaming, message, bearer):
        """(code name, the answer's bytes or b"")."""
        metadata = [("authorization", f"Bearer {bearer}")] if bearer else []
        path = f"/{service}/{method}"
        channel = self.channels[server]
        try:
            if streaming:
                stream = channel.unary_stream(path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=None)(
                    message, metadata=metadata, timeout=3)
                first = next(stream, None)
                stream.cancel()
                return "OK", first or b""
            answer = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=None)(
                message, metadata=metadata, timeout=10)
            return "OK", answer
        except grpc.RpcError as error:
            if streaming and error.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
                return "OK", b""  # a watch that was let in and had nothing to say yet
            return error.code().name, (error.details() or "").encode()


def snapshot(mesh, shop=None):
    """Every row of every table of every service's database (only `shop`'s rows when given)."""
    rows = {}
    for name in ["conversation", "messaging", "loyalty", "order"]:
        db = sqlite3.connect(os.path.join(mesh.root, name, f"{name}.sqlite"))
        try:
            for (table,) in db.execute("select name from sqlite_master where type='table' order by name"):
                columns = [c[1] for c in db.execute(f"pragma table_info('{table}')")]
                where = " where shop_id = ?" if shop and "shop_id" in columns else ""
                if shop and not where:
                    continue
                rows[(name, table)] = sorted(map(repr, db.execute(f"select * from '{table}'{where}", (shop,) if where else ())))
        finally:
            db.close()
    return rows


def changed(before, after):
    return {key: (len(before.get(key, [])), len(after.get(key, []))) for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def one(db, query, *args):
    row = db.execute(query, args).fetchone()
    assert row, query
    return row[0]


def records(mesh):
    conv, msg, loy, order = (sqlite3.connect(os.path.join(mesh.root, n, f"{n}.sqlite")) for n in ["conversation", "messaging", "loyalty", "order"])
    a = SHOP_A
    conversation, customer = conv.execute("select conversation_id, customer_id from conversations where shop_id = ? order by conversation_id", (a,)).fetchone()
    paid_order, paid_customer = order.execute("select order_id, customer_id from orders where shop_id = ? and status = 2 and page_id != '' "
                                              "order by order_id", (a,)).fetchone()
    ids = {
        "page": one(conv, "select page_id from pages where shop_id = ?", a),
        "conversation": conversation, "customer": customer,
        "customer_external": one(conv, "select external_id from customers where shop_id = ? and customer_id = ?", a, customer),
        "other_customer": one(conv, "select customer_id from customers where shop_id = ? and customer_id != ? order by customer_id", a, customer),
        "tag": one(conv, "select tag_id from tags where shop_id = ? and tag_id not in (select tag_id from conversation_tags where shop_id = ?) "
                         "order by tag_id", a, a),
        "attached_tag": one(conv, "select tag_id from conversation_tags where shop_id = ? and conversation_id = ? order by tag_id", a, conversation),
        "spare_tag": one(conv, "select tag_id from tags where shop_id = ? and tag_id not in (select tag_id from conversation_tags where shop_id = ?) "
                               "order by tag_id desc", a, a),
        "folder": one(conv, "select folder_id from tag_folders where shop_id = ? and is_facebook = 0 order by folder_id", a),
        "reply_message": one(conv, "select message_id from messages where shop_id = ? and sender = 2 order by message_id", a),
        "note": one(conv, "select note_id from notes where shop_id = ?", a),
        "note_customer": one(conv, "select customer_id from notes where shop_id = ?", a),
        "field": one(conv, "select field_key from custom_fields where shop_id = ?", a),
        "tier": one(loy, "select tier_id from tiers where shop_id = ? order by min_spend_vnd", a),
        "top_tier": one(loy, "select tier_id from tiers where shop_id = ? order by min_spend_vnd desc", a),
        "segment": one(loy, "select segment_id from segments where shop_id = ?", a),
        "voucher": one(loy, "select code from vouchers where shop_id = ? and redeemed_order_id = ''", a),
        "referral_template": one(msg, "select template_id from templates where shop_id = ? and placeholders like 'referrer%'", a),
        "sms_template": one(msg, "select template_id from templates where shop_id = ? and channel = 3 and placeholders like 'order_id%'", a),
        "promo_template": one(msg, "select template_id from templates where shop_id = ? and channel = 3 and placeholders = 'shop' || char(10) || 'name'", a),
        "messenger_template": one(msg, "select template_id from templates where shop_id = ? and channel = 4 order by template_id", a),
        "message": one(msg, "select message_id from messages where shop_id = ? order by message_id", a),
        "campaign": one(order, "select campaign_id from campaigns where shop_id = ?", a),
        "campaign_code": one(order, "select code from campaign_items where shop_id = ? order by position", a),
        "variant": one(order, "select variant_id from variants where shop_id = ? order by variant_id", a),
        "last_variant": one(order, "select variant_id from variants where shop_id = ? order by variant_id desc", a),
        "cart": one(order, "select cart_id from carts where shop_id = ? and order_id = '' and combined_into = '' order by cart_id", a),
        "other_cart": one(order, "select cart_id from carts where shop_id = ? and order_id = '' and combined_into = '' order by cart_id desc", a),
        "warehouse": one(order, "select warehouse_id from warehouses where shop_id = ?", a),
        "paid_order": paid_order, "paid_order_customer": paid_customer,
        "pending_order": one(order, "select order_id from orders where shop_id = ? and status = 1", a),
        "shipped_order": one(order, "select order_id from orders where shop_id = ? and status = 3", a),
    }
    cart_customer = one(order, "select customer_id from carts where shop_id = ? and cart_id = ?", a, ids["cart"])
    ids["cart_customer_external"] = one(conv, "select external_id from customers where shop_id = ? and customer_id = ?", a, cart_customer)
    for db in (conv, msg, loy, order):
        db.close()
    return ids


@pytest.fixture(scope="module")
def seeded():
    root = tempfile.mkdtemp(prefix="chatmesh-authz-")
    mesh = Mesh(root, ["conversation", "messaging", "loyalty", "order", "gateway"])
    caller = None
    try:
        env = {**os.environ, **mesh.addresses_env(), "CHATMESH_AUTH_KEY": AUTH_KEY}
        subprocess.run([binary("chatmesh"), "seed", "--shop", SHOP_A], env=env, check=True, capture_output=True, timeout=120)
        caller = Caller(mesh)
        owner = token(SHOP_A, "owner-lan", "owner")
        # Records the seed does not make: a promotion to delete and a broadcast (scheduled a week out) to read and cancel.
        # The customer of the first open cart comments on a second live post: two open carts to combine.
        ids = records(mesh)
        post = {"page_id": "{page}", "kind": "SALES_POST", "name": "Bài chiều", "post_id": "post-afternoon", "live": True,
                "items": [{"code": "D4", "variant_id": "{last_variant}", "price_vnd": "320000"}]}
        code, answer = caller.call("order", "chatmesh.v1.OrderService", "CreateCampaign", False, caller.request(
            "chatmesh.v1.CreateCampaignRequest", post, SHOP_A, "owner-lan", ids), owner)
        assert code == "OK", answer
        second = caller.sym.GetSymbol("chatmesh.v1.Campaign").FromString(answer).campaign_id
        order_db = mesh.db("order")
        cart_customer = one(order_db, "select customer_id from carts where shop_id = ? and cart_id = ?", SHOP_A, ids["cart"])
        order_db.close()
        code, answer = caller.call("order", "chatmesh.v1.OrderService", "IngestComment", False, caller.request(
            "chatmesh.v1.IngestCommentRequest", {"campaign_id": second, "customer_id": cart_customer, "text": "D4 1"}, SHOP_A, "owner-lan", ids), owner)
        assert code == "OK", answer
        ids = records(mesh)
        assert ids["other_cart"] != ids["cart"]
        code, answer = caller.call("loyalty", "chatmesh.v1.LoyaltyService", "UpsertPromotion", False, caller.request(
            "chatmesh.v1.UpsertPromotionRequest", {"name": "Xả hàng", "kind": "AMOUNT", "amount_vnd": "20000", "tier_ids": ["{tier}"]},
            SHOP_A, "owner-lan", ids), owner)
        assert code == "OK", answer
        promotion = caller.sym.GetSymbol("chatmesh.v1.Promotion").FromString(answer).promotion_id
        code, answer = caller.call("messaging", "chatmesh.v1.MessagingService", "CreateBroadcast", False, caller.request(
            "chatmesh.v1.CreateBroadcastRequest", REQUESTS["MessagingService/CreateBroadcast"]["req"], SHOP_A, "owner-lan", ids), owner)
        assert code == "OK", answer
        ids["broadcast"] = caller.sym.GetSymbol("chatmesh.v1.Broadcast").FromString(answer).broadcast_id
        ids["promotion"] = promotion

        # Quiet before the matrix: the seed's outbox events delivered and its due scenario steps sent.
        def quiet():
            conv, order, msg = (sqlite3.connect(os.path.join(root, n, f"{n}.sqlite")) for n in ["conversation", "order", "messaging"])
            try:
                return (conv.execute("select count(*) from outbox").fetchone()[0] == 0 and order.execute("select count(*) from outbox").fetchone()[0] == 0
                        and msg.execute("select count(*) from scheduled_steps where status = 'PENDING' and due_at_ms <= ?",
                                        (int(time.time() * 1000) + 1000,)).fetchone()[0] == 0)
            finally:
                for db in (conv, order, msg):
                    db.close()
        assert wait_until(quiet, timeout=60), "the seeded mesh did not settle"
        yield mesh, caller, ids
    finally:
        if caller:
            caller.close()
        mesh.close()
        shutil.rmtree(root, ignore_errors=True)


def matrix(caller, ids):
    """Every (RPC, server, service, method, input type, streaming, access) in the order of REQUESTS."""
    by_name = {f"{service.split('.')[-1]}/{method}": (service, method, input_type, streaming, access)
               for service, method, input_type, streaming, access in RPCS}
    for name in REQUESTS:
        service, method, input_type, streaming, access = by_name[name]
        for server in SERVED_BY[service]:
            yield name, server, service, method, input_type, streaming, access


def test_authorization_matrix(seeded):
    mesh, caller, ids = seeded
    agent_a = token(SHOP_A, "agent-an", "agent")
    refusals = {
        "no token": (None, "UNAUTHENTICATED"),
        "expired": (token(SHOP_A, "owner-lan", "owner", ttl_s=-60), "UNAUTHENTICATED"),
        "agent raised to owner": (raised_to_owner(agent_a), "UNAUTHENTICATED"),
        "signed with another key": (token(SHOP_A, "owner-lan", "owner", key="not-the-mesh-key"), "UNAUTHENTICATED"),
        "other shop's owner": (token(SHOP_B, "owner-b", "owner"), "PERMISSION_DENIED"),
        "other shop's service": (token(SHOP_B, "order-svc", "service"), "PERMISSION_DENIED"),
    }
    roles_refused = {"staff": [], "managers": ["agent"], "services": ["agent", "admin", "owner"]}
    wrong = []
    before = snapshot(mesh)
    for name, server, service, method, input_type, streaming, access in matrix(caller, ids):
        template = REQUESTS[name]["req"]
        for case, (bearer, expected) in refusals.items():
            code, detail = caller.call(server, service, method, streaming, caller.request(input_type, template, SHOP_A, "owner-lan", ids), bearer)
            if code != expected:
                wrong.append(f"{name} on {server}, {case}: {code} (expected {expected}) {detail[:160]!r}")
        for role in roles_refused[access]:
            staff = "agent-an" if role == "agent" else f"{role}-1"
            code, detail = caller.call(server, service, method, streaming, caller.request(input_type, template, SHOP_A, staff, ids),
                                       token(SHOP_A, staff, role))
            if code != "PERMISSION_DENIED":
                wrong.append(f"{name} on {server}, {role} where {access} are needed: {code} {detail[:160]!r}")
    assert wrong == [], "\n".join(wrong)
    assert changed(before, snapshot(mesh)) == {}, "a refused call changed a row"

    # Case 6: shop B's own token (the role the RPC admits), shop A's records in the request.
    a_before = snapshot(mesh, SHOP_A)
    a_ids = {value for key, value in ids.items() if len(value) >= 8}
    for name, server, service, method, input_type, streaming, access in matrix(caller, ids):
        spec = REQUESTS[name]
        expected = spec.get("foreign", NOT_FOUND if names_records(spec["req"]) else None)
        if expected is None:
            continue
        role = "service" if access == "services" else ("owner" if access == "managers" else "agent")
        message = caller.request(input_type, spec["req"], SHOP_B, f"{role}-b", ids)
        code, answer = caller.call(server, service, method, streaming, message, token(SHOP_B, f"{role}-b", role))
        if code != expected:
            wrong.append(f"{name} on {server}, shop B naming shop A's records: {code} (expected {expected}) {answer[:160]!r}")
        if code == "OK":
            shown = {value for value in a_ids if value.encode() in answer and value.encode() not in message.SerializeToString()}
            if shown:
                wrong.append(f"{name} on {server}: shop B was shown shop A's {sorted(shown)}")
    assert wrong == [], "\n".join(wrong)
    assert changed(a_before, snapshot(mesh, SHOP_A)) == {}, "shop B's calls changed shop A's rows"

    # Each request as it should be sent answers its documented code: the refusals above were the token's doing.
    for name, server, service, method, input_type, streaming, access in matrix(caller, ids):
        spec = REQUESTS[name]
        role, staff = {"staff": ("agent", "agent-an"), "managers": ("owner", "owner-lan"), "services": ("service", "order-svc")}[access]
        code, answer = caller.call(server, service, method, streaming, caller.request(input_type, spec["req"], SHOP_A, staff, ids),
                                   token(SHOP_A, staff, role))
        if code != spec.get("ok", OK):
            wrong.append(f"{name} on {server} by {role}: {code} (expected {spec.get('ok', OK)}) {answer[:200]!r}")
    assert wrong == [], "\n".join(wrong)
