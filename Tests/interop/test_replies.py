"""R-CONV-9 with real processes: a staff reply sent with SendReply goes from conversation-svc's outbox to
messaging-svc, which calls a scripted Facebook Graph server on 127.0.0.1 (the Send API's request and error
shapes); the reply turns SENT with the platform's id, or FAILED with the reason staff read (R-MSG-5's window,
a refusal), and RetryReply sends a failed one again. messaging-svc SIGKILLed while the platform holds the
request (taken, not yet answered) does not send the reply a second time. Tokens and reply text stay out of
the info-level logs."""
import json
import os
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import AUTH_KEY, Mesh, binary, mint_token, wait_until
from chatmesh.v1 import conversation_pb2 as cv

SHOP = "shop-replies"
PAGE = "page-replies"
TOKEN = "EAAB-never-in-a-log"
DAY = 86_400_000
CUSTOMERS = set()  # every customer id the test made: none may be in an info-level log


class Graph(BaseHTTPRequestHandler):
    """The Graph API as the Send API answers: a message id, or an error; `hold` keeps a request unanswered."""
    requests = []
    script = []
    hold = None

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        Graph.requests.append((self.path, body))
        if Graph.hold is not None:
            Graph.hold.wait(60)
        status, answer = Graph.script.pop(0) if Graph.script else (200, {"recipient_id": "1", "message_id": f"m_{len(Graph.requests)}"})
        data = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the caller is gone (killed while we held it)

    def log_message(self, *args):
        pass


@pytest.fixture
def mesh():
    Graph.requests, Graph.script, Graph.hold = [], [], None
    CUSTOMERS.clear()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Graph)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="replies-") as root:
        tokens = os.path.join(root, "page-tokens")
        with open(tokens, "w") as fh:
            fh.write(f"# shop/page token\n{SHOP}/{PAGE} {TOKEN}\n")
        env = {
            "conversation": {"CHATMESH_OUTBOX_RETRY_MS": "100", "LOG_LEVEL": "info"},
            "messaging": {
                "CHATMESH_REPLY_PROVIDERS": "facebook=graph", "CHATMESH_FACEBOOK_GRAPH_URL": f"http://127.0.0.1:{http.server_address[1]}",
                "CHATMESH_PAGE_TOKENS_FILE": tokens, "LOG_LEVEL": "info",
            },
        }
        mesh = Mesh(root, ["conversation", "messaging"], env=env)
        try:
            yield mesh
        finally:
            if Graph.hold is not None:
                Graph.hold.set()
            logs = {name: service.log() for name, service in mesh.services.items() if service.alive()}
            mesh.close()
            http.shutdown()
            for name, log in logs.items():
                assert TOKEN not in log, f"{name} logged a page token"
                assert "Dạ còn size M" not in log, f"{name} logged a reply's text"
                assert not any(customer in log for customer in CUSTOMERS), f"{name} logged a customer id"


def md():
    return [("authorization", "Bearer " + mint_token(SHOP, staff="lan", role="agent"))]


def conversation_with(mesh, psid, last_message_at_ms=None):
    stub = mesh.stub("conversation")
    stub.ConnectPage(cv.ConnectPageRequest(shop_id=SHOP, page_id=PAGE, name="Shop Hoa Mai", platform=cv.Page.FACEBOOK),
                     metadata=[("authorization", "Bearer " + mint_token(SHOP, staff="owner", role="owner"))])
    said = stub.IngestMessage(cv.IngestMessageRequest(
        shop_id=SHOP, page_id=PAGE, customer_external_id=psid, customer_name="Nguyễn Thị Hoa", kind=cv.ChatMessage.MESSAGE,
        sender=cv.ChatMessage.CUSTOMER, text="áo này còn size M không shop?", sent_at_ms=last_message_at_ms or 0), metadata=md())
    CUSTOMERS.add(said.customer_id)
    return said.conversation_id


def reply_state(mesh, conversation_id, message_id):
    messages = mesh.stub("conversation").ListMessages(cv.ListMessagesRequest(shop_id=SHOP, conversation_id=conversation_id), metadata=md()).messages
    return next(m for m in messages if m.message_id == message_id)


def settled(mesh, conversation_id, message_id, timeout=30):
    assert wait_until(lambda: reply_state(mesh, conversation_id, message_id).delivery != cv.ChatMessage.PENDING, timeout=timeout), \
        "the reply stayed PENDING:\n" + "\n".join(s.log()[-3000:] for s in mesh.services.values() if s.alive())
    return reply_state(mesh, conversation_id, message_id)


def test_a_reply_reaches_messenger_and_its_outcome_shows(mesh):
    conversation = conversation_with(mesh, "24681357")
    stub = mesh.stub("conversation")
    sent = stub.SendReply(cv.SendReplyRequest(shop_id=SHOP, conversation_id=conversation, staff_id="lan", text="Dạ còn size M chị ơi",
                                              idempotency_key="lan-1"), metadata=md())
    assert sent.delivery == cv.ChatMessage.PENDING
    again = stub.SendReply(cv.SendReplyRequest(shop_id=SHOP, conversation_id=conversation, staff_id="lan", text="Dạ còn size M chị ơi",
                                               idempotency_key="lan-1"), metadata=md())
    assert again.message_id == sent.message_id
    done = settled(mesh, conversation, sent.message_id)
    assert done.delivery == cv.ChatMessage.SENT and done.platform_message_id == "m_1"
    assert len(Graph.requests) == 1
    path, body = Graph.requests[0]
    assert path == f"/me/messages?access_token={TOKEN}"
    assert body["recipient"] == {"id": "24681357"} and body["messaging_type"] == "RESPONSE"
    assert body["message"]["text"] == "Dạ còn size M chị ơi" and body["message"]["metadata"] == sent.message_id + "#1"

    # Messenger refuses (the person blocked the page): FAILED with the reason; a retry sends it again.
    Graph.script.append((400, {"error": {"message": "This person isn't available right now.", "type": "OAuthException", "code": 551}}))
    refused = stub.SendReply(cv.SendReplyRequest(shop_id=SHOP, conversation_id=conversation, staff_id="lan", text="Chị ơi?"), metadata=md())
    failed = settled(mesh, conversation, refused.message_id)
    assert failed.delivery == cv.ChatMessage.FAILED and "blocked the page" in failed.failure_reason
    retried = stub.RetryReply(cv.RetryReplyRequest(shop_id=SHOP, message_id=refused.message_id, staff_id="lan"), metadata=md())
    assert retried.delivery == cv.ChatMessage.PENDING
    assert settled(mesh, conversation, refused.message_id).delivery == cv.ChatMessage.SENT
    assert len(Graph.requests) == 3

    # From the terminal: sent, followed to its outcome.
    out = subprocess.run([binary("chatmesh"), "reply", conversation, "Dạ shop gửi chị ạ", "--shop", SHOP, "--staff", "lan", "--wait", "30"],
                         env={**os.environ, "CHATMESH_AUTH_KEY": AUTH_KEY, **mesh.addresses_env()}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "PENDING" in out.stdout and "SENT (m_4)" in out.stdout, out.stdout


def test_outside_messengers_window_the_reply_fails_with_the_rule_and_nothing_is_sent(mesh):
    now = int(time.time() * 1000)
    late = conversation_with(mesh, "99887766", last_message_at_ms=now - 8 * DAY)
    stub = mesh.stub("conversation")
    reply = stub.SendReply(cv.SendReplyRequest(shop_id=SHOP, conversation_id=late, staff_id="lan", text="Shop chào chị"), metadata=md())
    failed = settled(mesh, late, reply.message_id)
    assert failed.delivery == cv.ChatMessage.FAILED and failed.failure_reason.startswith("window closed") and "R-MSG-5" in failed.failure_reason
    assert Graph.requests == []


def test_messaging_svc_killed_while_the_platform_holds_the_reply_does_not_send_it_twice(mesh):
    conversation = conversation_with(mesh, "24681357")
    Graph.hold = threading.Event()
    stub = mesh.stub("conversation")
    reply = stub.SendReply(cv.SendReplyRequest(shop_id=SHOP, conversation_id=conversation, staff_id="lan", text="Dạ còn size M chị ơi"),
                           metadata=md())
    assert wait_until(lambda: len(Graph.requests) == 1, timeout=30), "the reply never reached the platform"
    # The platform has it; messaging-svc dies before it can record the answer.
    mesh.services["messaging"].kill()
    Graph.hold.set()
    Graph.hold = None
    mesh.start("messaging")
    failed = settled(mesh, conversation, reply.message_id)
    assert failed.delivery == cv.ChatMessage.FAILED and "may have reached the customer" in failed.failure_reason
    # FAILED is answered instead of a call: a second send would have come before it.
    assert len(Graph.requests) == 1
    # Staff decide to send it again: that is a new attempt, sent once.
    stub.RetryReply(cv.RetryReplyRequest(shop_id=SHOP, message_id=reply.message_id, staff_id="lan"), metadata=md())
    assert settled(mesh, conversation, reply.message_id).delivery == cv.ChatMessage.SENT
    assert len(Graph.requests) == 2
