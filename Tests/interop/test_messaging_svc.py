"""messaging-svc as a process under grpcio: a transactional send through the sandbox, charged once
by its idempotency key, still there after a restart; statuses that name what was wrong."""
import tempfile

import grpc
import pytest

from conftest import ServiceProcess, mint_token
from chatmesh.v1 import common_pb2
from chatmesh.v1 import messaging_pb2 as m
from chatmesh.v1 import messaging_pb2_grpc as m_grpc

SHOP = "shop-msg"


def MessagingSvc(data_dir):
    return ServiceProcess("messaging-svc", m_grpc.MessagingServiceStub, data_dir)


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="messaging-svc-") as path:
        yield path


def test_a_send_is_charged_once_and_survives_a_restart(data_dir):
    md = [("authorization", "Bearer " + mint_token(SHOP, staff="order-svc", role="service"))]
    svc = MessagingSvc(data_dir)
    svc.stub.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=10_000, payment_ref="napas-1"), metadata=md)
    tpl = svc.stub.CreateTemplate(m.CreateTemplateRequest(
        shop_id=SHOP, channel=m.Template.SMS, name="Xác nhận", body="Đơn {{code}} của {{name}} đã xác nhận",
        purpose=m.Template.TRANSACTION_UPDATE), metadata=md)
    assert list(tpl.placeholders) == ["code", "name"]
    request = m.SendMessageRequest(shop_id=SHOP, channel=m.Template.SMS, recipient="+84 912 345 678",
                                   template_id=tpl.template_id, params={"code": "DH9", "name": "Hoa"},
                                   idempotency_key="order-DH9-confirmed")
    first = svc.stub.SendMessage(request, metadata=md)
    assert first.status == "DELIVERED" and first.cost_vnd == 800
    assert svc.stub.SendMessage(request, metadata=md) == first
    svc.close()

    svc = MessagingSvc(data_dir)
    assert svc.stub.SendMessage(request, metadata=md) == first
    balance = svc.stub.GetBalance(common_pb2.ShopRequest(shop_id=SHOP), metadata=md)
    assert balance.balance_vnd == 10_000 - 800
    with pytest.raises(grpc.RpcError) as err:
        svc.stub.SendMessage(m.SendMessageRequest(shop_id=SHOP, channel=m.Template.SMS, recipient="0912345678",
                                                  template_id=tpl.template_id, params={"code": "DH10"},
                                                  idempotency_key="k2"), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "{{name}}" in err.value.details()
    svc.close()
