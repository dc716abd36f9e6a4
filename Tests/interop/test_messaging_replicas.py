"""messaging-svc replicas on one PostgreSQL database share its background work through leases
(RunnerLease): a 20,000-recipient SMS broadcast is sent by one of two replicas; stopped with SIGTERM at a
quarter, it finishes its batch and gives the broadcast up, and the other goes on at once; a third replica
joins; the one sending is SIGKILLed halfway, and another takes the broadcast over once the lease runs out
and finishes it. Every recipient is sent exactly once, counted where it matters, at the SMS gateway: one request id per phone (the gateway, as eSMS does,
takes a request id it has seen as the same message), and only the batch in flight at the kill delivered
again, under its same ids.

Needs CHATMESH_TEST_POSTGRES_URL (scripts/test starts a throw-away cluster); skips, saying so, without it."""
import asyncio
import json
import os
import subprocess
import tempfile
import threading
import time
from collections import defaultdict

import pytest

from conftest import ServiceProcess, free_ports, mint_token, wait_until
from test_messaging_broadcast import members, start_loyalty
from test_replicas_postgres import POSTGRES, create_database
from chatmesh.v1 import common_pb2
from chatmesh.v1 import messaging_pb2 as m
from chatmesh.v1 import messaging_pb2_grpc as m_grpc

pytestmark = pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL: CHATMESH_TEST_POSTGRES_URL is not set (scripts/test sets it)")

SHOP = "shop-msg-replicas"
TOTAL = 20_000
BATCH = 200
LEASE_S = 3


class SMSGateway:
    """An eSMS-style gateway on asyncio (messaging-svc opens a connection per message, and a thread per
    connection would make this the bottleneck): each request id is one message, and posting an id again
    answers 124, "seen before", as eSMS does."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.by_request = {}
        self.ids_by_phone = defaultdict(set)
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
                body = json.loads(await reader.readexactly(length))
                with self.lock:
                    self.requests += 1
                    seen = body["RequestId"] in self.by_request
                    self.by_request.setdefault(body["RequestId"], body["Phone"])
                    self.ids_by_phone[body["Phone"]].add(body["RequestId"])
                    answer = {"CodeResult": "124"} if seen else {"CodeResult": "100", "SMSID": f"sms-{len(self.by_request)}"}
                data = json.dumps(answer).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
                await writer.drain()
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)


def md():
    return [("authorization", "Bearer " + mint_token(SHOP, staff="owner-1", role="owner"))]


def lease_of(database, broadcast_id):
    out = subprocess.run(["psql", database.split("?")[0], "-At", "-c",
                          f"SELECT lease_holder, lease_until_ms FROM broadcasts WHERE broadcast_id = '{broadcast_id}'"],
                         check=True, capture_output=True, text=True)
    holder, until = out.stdout.strip().split("|")
    return holder, int(until)


def holder_of(database, broadcast_id):
    return lease_of(database, broadcast_id)[0]


def test_a_replica_killed_mid_broadcast_is_taken_over_and_every_recipient_gets_one_message():
    loyalty, _, loyalty_port = start_loyalty({"vip": members(TOTAL)})
    gateway = SMSGateway()
    database = create_database()
    replicas = []
    with tempfile.TemporaryDirectory(prefix="messaging-replicas-") as root:
        try:
            def replica():
                (listen,) = free_ports(1)
                replicas.append(ServiceProcess("messaging-svc", m_grpc.MessagingServiceStub, os.path.join(root, f"r{len(replicas)}"), env={
                    "DATABASE_URL": database, "CHATMESH_LISTEN": f"127.0.0.1:{listen}",
                    "CHATMESH_LOYALTY_ADDRS": f"127.0.0.1:{loyalty_port}",
                    "CHATMESH_MESSAGING_PROVIDERS": "sms=gateway", "CHATMESH_SMS_URL": f"http://127.0.0.1:{gateway.port}/send",
                    "CHATMESH_SMS_API_KEY": "key", "CHATMESH_SMS_SECRET": "secret", "CHATMESH_SMS_BRANDNAME": "HOAMAI",
                    "CHATMESH_PAYMENT_GATEWAY": "none", "CHATMESH_BROADCAST_BATCH": str(BATCH),
                    "CHATMESH_MESSAGING_LEASE_S": str(LEASE_S)}))

            def sending(broadcast_id):
                """The live replica holding the broadcast's lease, once one does."""
                found = []
                assert wait_until(lambda: found.extend(r for r in replicas if r.alive() and holder_of(database, broadcast_id).endswith(f"/127.0.0.1:{r.port}")) or found,
                                  timeout=60, interval=0.05)
                return found[0]

            replica()
            replica()
            stub = replicas[0].stub
            stub.TopUp(m.TopUpRequest(shop_id=SHOP, amount_vnd=TOTAL * 800, payment_ref="napas-replicas"), metadata=md())
            tpl = stub.CreateTemplate(m.CreateTemplateRequest(
                shop_id=SHOP, channel=m.Template.SMS, name="Sale", body="Chao {{name}}, giam 20%", purpose=m.Template.MARKETING), metadata=md())
            created = stub.CreateBroadcast(m.CreateBroadcastRequest(
                shop_id=SHOP, channel=m.Template.SMS, template_id=tpl.template_id, segment_id="vip", idempotency_key="replicas-1"), metadata=md())
            request = m.BroadcastRequest(shop_id=SHOP, broadcast_id=created.broadcast_id)
            started = time.monotonic()

            def progress(at_least):
                seen = []
                assert wait_until(lambda: seen.append(replicas[-1].stub.GetBroadcast(request, metadata=md())) or seen[-1].sent >= at_least,
                                  timeout=300, interval=0.05)
                return seen[-1]

            # At a quarter, stop the replica sending it (either may have taken it) as a rollout would: it ends
            # cleanly (exit 0) and gives the broadcast up, so the other goes on without waiting out the lease.
            progress(TOTAL // 4)
            first = sending(created.broadcast_id)
            stopped_at = time.monotonic()
            first.close()
            # Given up before it exited: no lease of its own left running, or the other already holds it.
            holder, until = lease_of(database, created.broadcast_id)
            assert until == 0 or not holder.endswith(f"/127.0.0.1:{first.port}"), (holder, until)
            second = sending(created.broadcast_id)
            handover_s = time.monotonic() - stopped_at
            print(f"SIGTERM at {stopped_at - started:.1f} s: exited and handed over {handover_s:.1f} s later (lease {LEASE_S} s)")
            assert second is not first

            # A third replica joins; halfway, the one sending is killed.
            replica()
            progress(TOTAL // 2)
            victim = sending(created.broadcast_id)
            print(f"halfway after {time.monotonic() - started:.1f} s")
            victim.kill()
            killed_at = time.monotonic()
            survivor = next(r for r in replicas if r.alive())
            at_kill = survivor.stub.GetBroadcast(request, metadata=md())
            assert at_kill.status == m.Broadcast.RUNNING and TOTAL // 2 <= at_kill.sent < TOTAL, at_kill

            # A survivor takes it over once the lease has run out (they poll every second) and finishes it.
            survivor = sending(created.broadcast_id)
            takeover_s = time.monotonic() - killed_at
            print(f"taken over {takeover_s:.1f} s after the kill (lease {LEASE_S} s)")
            assert takeover_s < LEASE_S + 10
            assert wait_until(lambda: survivor.stub.GetBroadcast(request, metadata=md()).status == m.Broadcast.COMPLETED, timeout=300, interval=0.2)
            done = survivor.stub.GetBroadcast(request, metadata=md())
            assert (done.total, done.sent, done.failed, done.skipped) == (TOTAL, TOTAL, 0, 0), done
            assert done.cost_vnd == TOTAL * 800
            assert survivor.stub.GetBalance(common_pb2.ShopRequest(shop_id=SHOP), metadata=md()).balance_vnd == 0

            # At the gateway: every phone got exactly one message id, every id one phone, all 20,000 distinct.
            with gateway.lock:
                ids_by_phone = dict(gateway.ids_by_phone)
                distinct = len(gateway.by_request)
                posted = gateway.requests
            assert len(ids_by_phone) == TOTAL and distinct == TOTAL
            assert all(len(ids) == 1 for ids in ids_by_phone.values())
            # Posted again: at most the batch the killed replica had in flight, under the same ids (the stopped
            # one settled its batch before it let go).
            print(f"{posted} requests for {distinct} messages")
            assert posted - distinct <= BATCH
            rows = subprocess.run(["psql", database.split("?")[0], "-At", "-c",
                                   f"SELECT COUNT(*), COUNT(DISTINCT customer_id) FROM messages WHERE broadcast_id = '{created.broadcast_id}'"],
                                  check=True, capture_output=True, text=True).stdout.strip()
            assert rows == f"{TOTAL}|{TOTAL}"
        finally:
            for r in replicas:
                if r.alive():
                    r.close()
            loyalty.stop(0)
            gateway.close()
