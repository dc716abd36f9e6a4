"""conversation-svc as a process, driven by grpcio: the contract of API.md over the wire,
its data on disk across a restart, and SIGTERM ending it cleanly."""
import tempfile

import grpc
import pytest

from conftest import ServiceProcess, mint_token
from chatmesh.v1 import conversation_pb2 as cv
from chatmesh.v1 import conversation_pb2_grpc as cv_grpc

SHOP = "shop-interop"


def ConversationSvc(data_dir):
    return ServiceProcess("conversation-svc", cv_grpc.ConversationServiceStub, data_dir)


@pytest.fixture
def data_dir():
    with tempfile.TemporaryDirectory(prefix="conversation-svc-") as path:
        yield path


def auth(shop=SHOP, staff="owner-1", role="owner"):
    return [("authorization", "Bearer " + mint_token(shop, staff=staff, role=role))]


def test_a_day_of_chat_survives_a_restart(data_dir):
    svc = ConversationSvc(data_dir)
    md = auth()
    page = svc.stub.ConnectPage(cv.ConnectPageRequest(shop_id=SHOP, page_id="fb-page-1", name="Thời trang Hoa",
                                                      platform=cv.Page.FACEBOOK), metadata=md)
    assert page.first_connect
    tags = svc.stub.ListTags(cv.ListTagsRequest(shop_id=SHOP, page_id="fb-page-1"), metadata=md)
    names = [t.name for f in tags.folders for t in f.tags]
    assert len(names) == 19 and "Chờ chuyển khoản" in names
    out_of_stock = next(t for f in tags.folders for t in f.tags if t.name == "Hết hàng")

    got = svc.stub.IngestMessage(cv.IngestMessageRequest(
        shop_id=SHOP, page_id="fb-page-1", customer_external_id="psid-77", customer_name="Lê Thu",
        kind=cv.ChatMessage.MESSAGE, sender=cv.ChatMessage.CUSTOMER,
        text="Em lấy 2 cái, ship về 45 Trần Hưng Đạo, P. Phạm Ngũ Lão, Q.1, TP.HCM, sđt 0903 111 222"), metadata=md)
    assert got.captured_phone == "0903111222"
    assert "Trần Hưng Đạo" in got.captured_address
    convo = svc.stub.AttachTag(cv.AttachTagRequest(shop_id=SHOP, conversation_id=got.conversation_id,
                                                   tag_id=out_of_stock.tag_id, staff_id="owner-1"), metadata=md)
    assert [t.name for t in convo.tags] == ["Hết hàng"]
    svc.close()

    # Everything is still there after SIGTERM and a new start on the same data directory.
    svc = ConversationSvc(data_dir)
    again = svc.stub.ConnectPage(cv.ConnectPageRequest(shop_id=SHOP, page_id="fb-page-1", name="Thời trang Hoa",
                                                       platform=cv.Page.FACEBOOK), metadata=md)
    assert not again.first_connect
    listed = svc.stub.ListConversations(cv.ListConversationsRequest(shop_id=SHOP, page_id="fb-page-1",
                                                                    tag_ids_any=[out_of_stock.tag_id]), metadata=md)
    assert [c.conversation_id for c in listed.conversations] == [got.conversation_id]
    customer = svc.stub.GetCustomer(cv.GetCustomerRequest(shop_id=SHOP, customer_id=got.customer_id), metadata=md)
    assert customer.phone == "0903111222" and customer.phone_captured
    svc.close()


def test_errors_are_grpc_statuses_that_name_the_field(data_dir):
    svc = ConversationSvc(data_dir)
    md = auth()
    svc.stub.ConnectPage(cv.ConnectPageRequest(shop_id=SHOP, page_id="p", name="P", platform=cv.Page.ZALO), metadata=md)
    cases = [
        (lambda: svc.stub.ConnectPage(cv.ConnectPageRequest(shop_id=SHOP, page_id="q", name="Q"), metadata=md),
         grpc.StatusCode.INVALID_ARGUMENT, "platform"),
        (lambda: svc.stub.CreateTagFolder(cv.CreateTagFolderRequest(shop_id=SHOP, page_id="p", name=""), metadata=md),
         grpc.StatusCode.INVALID_ARGUMENT, "name"),
        (lambda: svc.stub.GetConversation(cv.GetConversationRequest(shop_id=SHOP, conversation_id="cv_x"), metadata=md),
         grpc.StatusCode.NOT_FOUND, "conversation_id"),
        (lambda: svc.stub.ListTags(cv.ListTagsRequest(shop_id="someone-else", page_id="p"), metadata=md),
         grpc.StatusCode.PERMISSION_DENIED, "shop"),
        (lambda: svc.stub.ListTags(cv.ListTagsRequest(shop_id=SHOP, page_id="p")),
         grpc.StatusCode.UNAUTHENTICATED, "token"),
        (lambda: svc.stub.IngestMessage(cv.IngestMessageRequest(shop_id=SHOP, page_id="p", customer_external_id="u\x00x",
                                                                 kind=cv.ChatMessage.MESSAGE, sender=cv.ChatMessage.CUSTOMER),
                                        metadata=md),
         grpc.StatusCode.INVALID_ARGUMENT, "customer_external_id"),
    ]
    for call, code, word in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == code, (word, err.value.details())
        assert word in err.value.details().lower(), (word, err.value.details())
    assert svc.stub.ListConversations(cv.ListConversationsRequest(shop_id=SHOP, page_id="p"), metadata=md).conversations == []
    svc.close()


def test_health_is_served_without_a_token(data_dir):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    svc = ConversationSvc(data_dir)
    health = health_pb2_grpc.HealthStub(svc.channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service="chatmesh.v1.ConversationService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    svc.close()
