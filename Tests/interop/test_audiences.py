"""R-SEG-3 with a real loyalty-svc: a segment synced to a custom audience on a scripted Marketing API server
on 127.0.0.1. Only SHA-256 hashes leave the process; the audience is made once, filled in a session of
batches, and its daily schedule survives a restart; the ad account's token is never logged nor answered."""
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import ServiceProcess, mint_token, wait_until
from chatmesh.v1 import loyalty_pb2 as l
from chatmesh.v1 import loyalty_pb2_grpc as l_grpc

SHOP = "shop-audience"
TOKEN = "EAAG-ads-token-never-logged"
DAY = 86_400_000


class MarketingAPI(BaseHTTPRequestHandler):
    requests = []

    def answer(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        MarketingAPI.requests.append((self.command, self.path, body))
        out = {"id": "aud_42"} if self.path.split("?")[0].endswith("/customaudiences") else {"audience_id": "aud_42", "num_received": 1}
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_DELETE = answer

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    MarketingAPI.requests = []
    http = ThreadingHTTPServer(("127.0.0.1", 0), MarketingAPI)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield http
    http.shutdown()


def md(role="owner"):
    return [("authorization", "Bearer " + mint_token(SHOP, staff="owner-1" if role == "owner" else "conversation-svc", role=role))]


def test_a_segment_becomes_an_audience_of_hashes_and_keeps_its_schedule(server):
    env = {"CHATMESH_ADS_PROVIDER": "facebook", "CHATMESH_MARKETING_API_URL": f"http://127.0.0.1:{server.server_address[1]}",
           "LOG_LEVEL": "info"}
    with tempfile.TemporaryDirectory(prefix="audiences-") as data:
        svc = ServiceProcess("loyalty-svc", l_grpc.LoyaltyServiceStub, data, env=env)
        for i, (phone, email) in enumerate([("0912345678", ""), ("", "lan@shop.vn"), ("0987654321", "Minh@Shop.VN"), ("", "")]):
            svc.stub.UpsertCustomerProfile(l.UpsertCustomerProfileRequest(
                shop_id=SHOP, customer_id=f"cu-{i}", phone=phone, email=email, name=f"Khách {i}", tags=["Hết hàng"]), metadata=md("service"))
        segment = svc.stub.CreateSegment(l.CreateSegmentRequest(shop_id=SHOP, name="Hết hàng", match=l.Segment.ALL, conditions=[
            l.SegmentCondition(kind=l.SegmentCondition.HAS_TAG, tag="Hết hàng")]), metadata=md())
        account = svc.stub.LinkAdAccount(l.LinkAdAccountRequest(shop_id=SHOP, ad_account_id="act_998877", access_token=TOKEN), metadata=md())
        assert account.ad_account_id == "998877" and TOKEN not in str(account)
        svc.stub.SyncSegmentAudience(l.SyncSegmentAudienceRequest(shop_id=SHOP, segment_id=segment.segment_id), metadata=md())
        request = l.SegmentRequest(shop_id=SHOP, segment_id=segment.segment_id)
        assert wait_until(lambda: svc.stub.GetAudienceSync(request, metadata=md()).status == l.AudienceSync.SYNCED, timeout=30), svc.log()[-3000:]
        sync = svc.stub.GetAudienceSync(request, metadata=md())
        assert (sync.audience_id, sync.uploaded, sync.removed, sync.skipped, sync.audience_size) == ("aud_42", 3, 0, 1, 3)
        assert sync.schedule == l.SyncSegmentAudienceRequest.DAILY and sync.next_run_at_ms > sync.last_run_at_ms + DAY - 60_000

        calls = [(method, path.split("?")[0]) for method, path, _ in MarketingAPI.requests]
        assert calls == [("POST", "/act_998877/customaudiences"), ("POST", "/aud_42/users")]
        body = MarketingAPI.requests[1][2]
        assert body["payload"]["schema"] == ["PHONE", "EMAIL"] and len(body["payload"]["data"]) == 3
        assert body["session"]["batch_seq"] == 1 and body["session"]["last_batch_flag"] is True
        sent = json.dumps([b for _, _, b in MarketingAPI.requests])
        for plain in ["912345678", "lan@shop.vn", "minh@shop.vn", "987654321"]:
            assert plain not in sent
        assert all(f"access_token={TOKEN}" in path for _, path, _ in MarketingAPI.requests)

        # Restart: the schedule and the audience stand; nothing is due, so nothing is sent.
        assert TOKEN not in svc.log()
        svc.close()
        svc = ServiceProcess("loyalty-svc", l_grpc.LoyaltyServiceStub, data, env=env)
        again = svc.stub.GetAudienceSync(request, metadata=md())
        assert (again.next_run_at_ms, again.audience_id, again.status) == (sync.next_run_at_ms, "aud_42", l.AudienceSync.SYNCED)
        log = svc.log()
        svc.close()
        assert len(MarketingAPI.requests) == 2
        assert TOKEN not in log
