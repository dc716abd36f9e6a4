"""R-PANEL-4, black-box on five real processes (seeded by `chatmesh seed`): a staff member watching a panel
(WatchPanel through the gateway) or a page's list (WatchInbox) sees each change arrive without asking: a customer
message, a tag, a payment and the points loyalty-svc gives for it through the outbox; a service killed and
restarted mid-watch shows as unavailable, then comes back by itself; a watcher that went away resumes with its
token and gets what changed meanwhile, not the whole panel again; a watcher that stops reading is cut off."""
import os
import queue
import subprocess
import tempfile
import threading
import time

import grpc
import pytest

from conftest import AUTH_KEY, Mesh, binary, mint_token, wait_until
from chatmesh.v1 import conversation_pb2 as cv
from chatmesh.v1 import order_pb2 as o
from chatmesh.v1 import panel_pb2 as p

SHOP = "demo-shop"
PAGE = "demo-page"
# Changes reach a watcher within a second (R-PANEL-4); on a loaded CI machine the test allows far more.
WAIT = 30
# The module's mesh, whose logs a failed wait shows.
MESH = []


def logs():
    return "".join(f"\n--- {name} log ---\n{service.log()[-2500:]}" for name, service in MESH[0].services.items()
                   if name in ("gateway", "conversation", "order")) if MESH else ""


def md():
    return [("authorization", "Bearer " + mint_token(SHOP, staff="owner-lan", role="owner"))]


@pytest.fixture(scope="module")
def mesh():
    with tempfile.TemporaryDirectory(prefix="live-panel-") as root:
        mesh = Mesh(root, ["conversation", "order", "loyalty", "messaging", "gateway"],
                    env={"gateway": {"CHATMESH_WATCH_STALL_S": "3"}, "conversation": {"CHATMESH_WATCH_STALL_S": "3"}})
        seeded = subprocess.run([binary("chatmesh"), "seed"], env={**os.environ, **mesh.addresses_env(), "CHATMESH_AUTH_KEY": AUTH_KEY},
                                capture_output=True, text=True, timeout=120)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        MESH[:] = [mesh]
        yield mesh
        MESH.clear()
        mesh.close()


class Watch:
    """A server-streaming call read on a thread into a queue, so a test can wait for the update it expects."""

    def __init__(self, call):
        self.call = call
        self.updates = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for update in self.call:
                self.updates.put(update)
        except grpc.RpcError as error:
            self.error = error
        self.updates.put(None)

    def next(self, timeout=WAIT):
        update = self.updates.get(timeout=timeout)
        assert update is not None, f"the stream ended: {self.error}"
        return update

    def until(self, predicate, timeout=WAIT):
        """The first update for which `predicate` holds; the ones before it are passed over."""
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            try:
                update = self.updates.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            assert update is not None, f"the stream ended: {self.error}; before it: {seen}"
            seen.append(list(update.changed_sections) if hasattr(update, "changed_sections") else (update.kind, update.conversation.conversation_id))
            if predicate(update):
                return update
        raise AssertionError(f"no such update within {timeout} s; seen: {seen}{logs()}")

    def cancel(self):
        self.call.cancel()
        self.thread.join(timeout=10)


def conversation_of(mesh, name):
    listed = mesh.stub("conversation").ListConversations(cv.ListConversationsRequest(shop_id=SHOP, page_id=PAGE, query=name), metadata=md())
    return listed.conversations[0]


def watch_panel(mesh, conversation_id, token=""):
    return Watch(mesh.stub("gateway").WatchPanel(
        p.WatchPanelRequest(shop_id=SHOP, page_id=PAGE, conversation_id=conversation_id, resume_token=token), metadata=md()))


def customer_says(mesh, external_id, text):
    return mesh.stub("conversation").IngestMessage(cv.IngestMessageRequest(
        shop_id=SHOP, page_id=PAGE, customer_external_id=external_id, kind=cv.ChatMessage.MESSAGE, sender=cv.ChatMessage.CUSTOMER,
        text=text, sent_at_ms=int(time.time() * 1000)), metadata=md())


def test_each_change_reaches_the_watcher(mesh):
    hoa = conversation_of(mesh, "Hoa")
    watch = watch_panel(mesh, hoa.conversation_id)
    try:
        first = watch.next()
        assert first.panel.customer.name == "Nguyễn Thị Hoa" and first.resume_token
        assert set(first.changed_sections) >= {"conversation", "customer", "tags", "order_summary", "member", "notes"}
        points_before = first.panel.member.points
        order_id = first.panel.order_summary.recent[0].order_id

        # A customer message: the conversation section, with the message as the newest.
        customer_says(mesh, "24680001001", "Shop ơi còn size M không ạ?")
        update = watch.until(lambda u: "conversation" in u.changed_sections and u.panel.conversation.last_message_text == "Shop ơi còn size M không ạ?")
        assert update.panel.conversation.unread_count >= 1
        assert "order_summary" not in update.changed_sections and not update.HasField("panel") or not update.panel.HasField("order_summary")
        assert update.panel.messages[-1].text == "Shop ơi còn size M không ạ?"

        # A staff reply: shown PENDING, then its delivery outcome (R-CONV-9; the mesh's sandbox platform takes it).
        reply = mesh.stub("conversation").SendReply(cv.SendReplyRequest(
            shop_id=SHOP, conversation_id=hoa.conversation_id, staff_id="lan", text="Dạ còn ạ"), metadata=md())
        update = watch.until(lambda u: "messages" in u.changed_sections and any(
            m.message_id == reply.message_id and m.delivery == cv.ChatMessage.SENT for m in u.panel.messages))
        assert next(m for m in update.panel.messages if m.message_id == reply.message_id).platform_message_id.startswith("sandbox-")

        # A tag a colleague attached: tags (and the activity entry R-ACT-1 writes).
        tags = mesh.stub("conversation").ListTags(cv.ListTagsRequest(shop_id=SHOP, page_id=PAGE), metadata=md())
        vip = next(t for f in tags.folders for t in f.tags if t.visible and t.tag_id not in {x.tag_id for x in hoa.tags})
        mesh.stub("conversation").AttachTag(cv.AttachTagRequest(shop_id=SHOP, conversation_id=hoa.conversation_id, tag_id=vip.tag_id,
                                                                staff_id="staff-minh"), metadata=md())
        update = watch.until(lambda u: "tags" in u.changed_sections and vip.tag_id in {t.tag_id for t in u.panel.tags.attached})
        assert "activity" in update.changed_sections

        # A payment: the order summary at once, then the points loyalty-svc gives through the outbox.
        mesh.stub("order").MarkOrderPaid(o.MarkOrderPaidRequest(shop_id=SHOP, order_id=order_id), metadata=md())
        watch.until(lambda u: "order_summary" in u.changed_sections
                    and next(r for r in u.panel.order_summary.recent if r.order_id == order_id).status == o.Order.PAID)
        update = watch.until(lambda u: "member" in u.changed_sections and u.panel.member.points > points_before)
        assert update.panel.member.points > points_before
        assert list(update.unavailable_sections) == []
    finally:
        watch.cancel()


def test_a_service_killed_mid_watch_is_unavailable_then_back_by_itself(mesh):
    minh = conversation_of(mesh, "Minh Anh")
    watch = watch_panel(mesh, minh.conversation_id)
    try:
        watch.next()
        mesh.services["order"].kill()
        down = watch.until(lambda u: {s.section for s in u.unavailable_sections} >= {"carts", "order_summary"})
        assert {s.code for s in down.unavailable_sections if s.section in ("carts", "order_summary")} <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
        # Everything else still arrives while order-svc is down.
        customer_says(mesh, "24680001004", "Cho em hỏi đơn hàng ạ")
        watch.until(lambda u: "conversation" in u.changed_sections)
        mesh.start("order")
        back = watch.until(lambda u: "order_summary" in u.changed_sections and not u.unavailable_sections, timeout=60)
        assert back.panel.order_summary.stats.order_count >= 1
    finally:
        watch.cancel()


def test_a_watcher_resumes_with_what_changed_meanwhile(mesh):
    hoa = conversation_of(mesh, "Hoa")
    watch = watch_panel(mesh, hoa.conversation_id)
    token = watch.next().resume_token
    watch.cancel()
    # While nobody watches: a note is added.
    mesh.stub("conversation").AddNote(cv.AddNoteRequest(shop_id=SHOP, customer_id=hoa.customer_id, text="Khách hẹn chiều mai lấy hàng",
                                                        staff_id="owner-lan"), metadata=md())
    resumed = watch_panel(mesh, hoa.conversation_id, token=token)
    try:
        update = resumed.until(lambda u: "notes" in u.changed_sections)
        assert update.panel.notes[0].text == "Khách hẹn chiều mai lấy hàng"
        # Only what changed: not the whole panel again.
        assert "order_summary" not in update.changed_sections and "member" not in update.changed_sections
    finally:
        resumed.cancel()
    with pytest.raises(grpc.RpcError) as refused:
        list(mesh.stub("gateway").WatchPanel(p.WatchPanelRequest(shop_id=SHOP, conversation_id=hoa.conversation_id, resume_token="nonsense"),
                                             metadata=md()))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "resume_token" in refused.value.details()


def test_the_inbox_follows_new_messages_and_resumes(mesh):
    inbox = Watch(mesh.stub("conversation").WatchInbox(cv.WatchInboxRequest(shop_id=SHOP, page_id=PAGE), metadata=md()))
    try:
        synced = inbox.next()
        assert synced.kind == cv.InboxEvent.SYNCED and synced.resume_token
        said = customer_says(mesh, "psid-new-customer", "Xin chào shop")
        added = inbox.until(lambda e: e.conversation.conversation_id == said.conversation_id)
        assert added.kind == cv.InboxEvent.ADDED and added.conversation.last_message_text == "Xin chào shop"
        assert added.conversation.unread_count == 1
        token = added.resume_token
    finally:
        inbox.cancel()
    customer_says(mesh, "psid-new-customer", "Shop ơi")
    resumed = Watch(mesh.stub("conversation").WatchInbox(cv.WatchInboxRequest(shop_id=SHOP, page_id=PAGE, resume_token=token), metadata=md()))
    try:
        row = resumed.until(lambda e: e.conversation.conversation_id == said.conversation_id)
        assert row.kind == cv.InboxEvent.UPDATED and row.conversation.last_message_text == "Shop ơi" and row.conversation.unread_count == 2
        assert resumed.until(lambda e: e.kind == cv.InboxEvent.SYNCED)
    finally:
        resumed.cancel()


def test_an_inbox_row_and_a_panel_show_a_renamed_tag(mesh):
    said = customer_says(mesh, "psid-tag-rename", "Chào shop")
    stub = mesh.stub("conversation")
    folder = stub.ListTags(cv.ListTagsRequest(shop_id=SHOP, page_id=PAGE), metadata=md()).folders[0]
    tag = stub.CreateTag(cv.CreateTagRequest(shop_id=SHOP, page_id=PAGE, folder_id=folder.folder_id, name="Khách sỉ thử", color="#123456",
                                             visible=True), metadata=md())
    stub.AttachTag(cv.AttachTagRequest(shop_id=SHOP, conversation_id=said.conversation_id, tag_id=tag.tag_id, staff_id="owner-lan"), metadata=md())
    inbox = Watch(stub.WatchInbox(cv.WatchInboxRequest(shop_id=SHOP, page_id=PAGE), metadata=md()))
    panel = watch_panel(mesh, said.conversation_id)
    try:
        assert inbox.next().kind == cv.InboxEvent.SYNCED
        assert [t.name for t in panel.next().panel.tags.attached] == ["Khách sỉ thử"]
        stub.UpdateTag(cv.UpdateTagRequest(shop_id=SHOP, page_id=PAGE, tag_id=tag.tag_id, folder_id=folder.folder_id, name="Khách sỉ",
                                           color="#123456", visible=True), metadata=md())
        row = inbox.until(lambda e: e.conversation.conversation_id == said.conversation_id)
        assert row.kind == cv.InboxEvent.UPDATED and [t.name for t in row.conversation.tags] == ["Khách sỉ"]
        panel.until(lambda u: "tags" in u.changed_sections and [t.name for t in u.panel.tags.attached] == ["Khách sỉ"])
    finally:
        inbox.cancel()
        panel.cancel()


def test_a_watcher_that_never_reads_is_cut_off(mesh):
    """A client that opens WatchPanel and never reads (a 1 KiB window, never opened again) makes the gateway
    queue at most 64 KiB for it, then hold its updates; past CHATMESH_WATCH_STALL_S (3 s here) without room
    the gateway resets the stream (ENHANCE_YOUR_CALM, which gRPC clients read as RESOURCE_EXHAUSTED)."""
    import h2.connection
    import h2.config
    import h2.errors
    import h2.events
    import h2.settings
    import socket
    hoa = conversation_of(mesh, "Hoa")
    gateway = mesh.services["gateway"]
    host, port = gateway.address.split(":")
    sock = socket.create_connection((host, int(port)))
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    # A window of 1 KiB that is never opened again: the first whole panel does not fit.
    conn.local_settings = h2.settings.Settings(client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024})
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    body = p.WatchPanelRequest(shop_id=SHOP, page_id=PAGE, conversation_id=hoa.conversation_id).SerializeToString()
    conn.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/chatmesh.v1.PanelService/WatchPanel"),
                          (":authority", gateway.address), ("content-type", "application/grpc"), ("te", "trailers"), *md()])
    conn.send_data(1, b"\x00" + len(body).to_bytes(4, "big") + body, end_stream=True)
    sock.sendall(conn.data_to_send())
    status = None
    sock.settimeout(0.05)
    deadline = time.time() + 90
    said = 0
    while status is None and time.time() < deadline:
        # Changes keep coming: each is an update the gateway must queue or hold.
        customer_says(mesh, "24680001001", f"Tin nhắn {said} " + "x" * 400)
        said += 1
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.TrailersReceived):
                status = dict(event.headers).get(b"grpc-status")
            elif isinstance(event, h2.events.StreamReset):
                status = event.error_code
        sock.sendall(conn.data_to_send())
    sock.close()
    assert status == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM, f"the stalled watch was not cut off: {status} after {said} messages"
    assert gateway.alive()


class Lines:
    """A CLI's JSON lines, read on a thread."""

    def __init__(self, args, mesh):
        import json
        self.json = json
        self.proc = subprocess.Popen([binary("chatmesh"), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **mesh.addresses_env(), "CHATMESH_AUTH_KEY": AUTH_KEY})
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(self.json.loads(line))

    def until(self, predicate, timeout=WAIT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.time()))
            except queue.Empty:
                break
            if predicate(line):
                return line
        self.proc.kill()
        raise AssertionError(f"no such line within {timeout} s; stderr: {self.proc.stderr.read()[-2000:]}")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def test_the_cli_watches_and_resumes_after_the_mesh_restarts(mesh):
    hoa = conversation_of(mesh, "Hoa")
    panel = Lines(["panel", "--watch", "--json", "--conversation", hoa.conversation_id], mesh)
    inbox = Lines(["inbox", "--watch", "--json"], mesh)
    try:
        assert panel.until(lambda line: True)["conversation_id"] == hoa.conversation_id
        inbox.until(lambda line: any(c["conversation_id"] == hoa.conversation_id for c in line["conversations"]))
        customer_says(mesh, "24680001001", "Trước khi khởi động lại")
        panel.until(lambda line: line["conversation"]["last_message_text"] == "Trước khi khởi động lại")
        # The gateway and conversation-svc restart; both watchers come back by themselves with their tokens.
        mesh.services["gateway"].close()
        mesh.services["conversation"].close()
        mesh.start("conversation")
        mesh.start("gateway")
        customer_says(mesh, "24680001001", "Sau khi khởi động lại")
        panel.until(lambda line: line["conversation"]["last_message_text"] == "Sau khi khởi động lại", timeout=60)
        row = inbox.until(lambda line: line.get("event", {}).get("conversation_id") == hoa.conversation_id
                          and next(c for c in line["conversations"] if c["conversation_id"] == hoa.conversation_id)["last_message_text"]
                          == "Sau khi khởi động lại", timeout=60)
        assert row["event"]["kind"] == "UPDATED"
    finally:
        panel.stop()
        inbox.stop()
