"""messaging-svc wired to real providers by its configuration: e-mail over SMTP to a real SMTP server
(aiosmtpd) and SMS through an eSMS-style HTTP gateway, both on 127.0.0.1; an SMS is SENT with its price
held until the gateway's delivery report; a channel left unconfigured refuses sends; a provider missing a
setting stops the service at start with the variable's name."""
import email
import email.policy
import json
import os
import socket
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from aiosmtpd.controller import Controller

from conftest import AUTH_KEY, ServiceProcess, binary, mint_token, wait_until
from chatmesh.v1 import common_pb2
from chatmesh.v1 import messaging_pb2 as m
from chatmesh.v1 import messaging_pb2_grpc as m_grpc

SHOP = "shop-prov"


class SMTPSink:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued"


class SMSGateway(BaseHTTPRequestHandler):
    requests = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        SMSGateway.requests.append((self.path, body))
        answer = json.dumps({"CodeResult": "100", "SMSID": f"sms-{len(SMSGateway.requests)}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def providers():
    sink = SMTPSink()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    SMSGateway.requests = []
    http = ThreadingHTTPServer(("127.0.0.1", 0), SMSGateway)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    env = {
        "CHATMESH_MESSAGING_PROVIDERS": "email=smtp,sms=gateway",
        "CHATMESH_SMTP_HOST": "127.0.0.1", "CHATMESH_SMTP_PORT": str(smtp_port),
        "CHATMESH_SMTP_TLS": "none", "CHATMESH_SMTP_FROM": "shop@hoamai.vn",
        "CHATMESH_SMS_URL": f"http://127.0.0.1:{http.server_address[1]}/send", "CHATMESH_SMS_API_KEY": "key",
        "CHATMESH_SMS_SECRET": "secret", "CHATMESH_SMS_BRANDNAME": "HOAMAI", "CHATMESH_PAYMENT_GATEWAY": "none",
    }
    yield sink, env
    controller.stop()
    http.shutdown()


def test_real_providers_deliver_and_the_sms_is_charged_on_its_delivery_report(providers):
    sink, env = providers
    md = [("authorization", "Bearer " + mint_token(SHOP, staff="order-svc", role="service"))]
    with tempfile.TemporaryDirectory(prefix="messaging-prov-") as data:
        svc = ServiceProcess("messaging-svc", m_grpc.MessagingServiceStub, data, env=env)
        stub = svc.stub
        try:
            mail = stub.CreateTemplate(m.CreateTemplateRequest(
                shop_id=SHOP, channel=m.Template.EMAIL, name="Đơn hàng đã xác nhận", body="Chào {{name}}, đơn {{code}} đã được xác nhận.",
                purpose=m.Template.TRANSACTION_UPDATE), metadata=md)
            sent = stub.SendMessage(m.SendMessageRequest(
                shop_id=SHOP, channel=m.Template.EMAIL, recipient="hoa@example.vn", template_id=mail.template_id,
                params={"name": "Hoa", "code": "DH7"}, idempotency_key="mail-1"), metadata=md)
            assert sent.status == "DELIVERED" and sent.cost_vnd == 0
            assert len(sink.messages) == 1
            sender, recipients, content = sink.messages[0]
            assert sender == "shop@hoamai.vn" and recipients == ["hoa@example.vn"]
            parsed = email.message_from_bytes(content, policy=email.policy.default)
            assert parsed["Subject"] == "Đơn hàng đã xác nhận"
            assert parsed.get_content().strip() == "Chào Hoa, đơn DH7 đã được xác nhận."

            stub.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=1_000, payment_ref="napas-1"), metadata=md)
            sms = stub.CreateTemplate(m.CreateTemplateRequest(
                shop_id=SHOP, channel=m.Template.SMS, name="OTP", body="Ma xac nhan {{code}}", purpose=m.Template.ACCOUNT_UPDATE), metadata=md)
            text = stub.SendMessage(m.SendMessageRequest(
                shop_id=SHOP, channel=m.Template.SMS, recipient="+84 912 345 678", template_id=sms.template_id,
                params={"code": "4821"}, idempotency_key="otp-1"), metadata=md)
            assert text.status == "SENT" and text.cost_vnd == 800
            path, body = SMSGateway.requests[0]
            assert path == "/send"
            assert (body["Phone"], body["Content"], body["Brandname"], body["RequestId"]) == ("0912345678", "Ma xac nhan 4821", "HOAMAI", text.message_id)
            balance = lambda: stub.GetBalance(common_pb2.ShopRequest(shop_id=SHOP), metadata=md).balance_vnd
            assert balance() == 200
            report = stub.RecordDeliveryReport(m.DeliveryReportRequest(
                shop_id=SHOP, message_id=text.message_id, delivered=False, reason="handset off for 48 h"), metadata=md)
            assert report.status == "FAILED" and balance() == 1_000

            with pytest.raises(grpc.RpcError) as err:
                stub.SendMessage(m.SendMessageRequest(
                    shop_id=SHOP, channel=m.Template.MESSENGER, recipient="123", template_id=sms.template_id, idempotency_key="x"), metadata=md)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # an SMS template on MESSENGER
            messenger = stub.CreateTemplate(m.CreateTemplateRequest(
                shop_id=SHOP, channel=m.Template.MESSENGER, name="M", body="Dạ", purpose=m.Template.TRANSACTION_UPDATE), metadata=md)
            with pytest.raises(grpc.RpcError) as err:
                stub.CreateBroadcast(m.CreateBroadcastRequest(
                    shop_id=SHOP, channel=m.Template.MESSENGER, template_id=messenger.template_id, segment_id="s"), metadata=md)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "no provider" in err.value.details()
        finally:
            svc.close()


def test_a_provider_missing_a_setting_stops_the_service_naming_it(providers):
    _, env = providers
    env = {k: v for k, v in env.items() if k != "CHATMESH_SMS_BRANDNAME"}
    with tempfile.TemporaryDirectory(prefix="messaging-prov-") as data:
        result = subprocess.run([binary("messaging-svc")], capture_output=True, text=True, timeout=30,
                                env={**os.environ, **env, "CHATMESH_DATA_DIR": data, "CHATMESH_AUTH_KEY": AUTH_KEY,
                                     "CHATMESH_LISTEN": "127.0.0.1:0"})
    assert result.returncode == 1
    assert "CHATMESH_SMS_BRANDNAME" in result.stderr
