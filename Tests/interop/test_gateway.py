"""The whole mesh as five real processes: `chatmesh seed` fills it through the public RPCs, the gateway
composes a panel that matches what the seed put in; loyalty-svc killed with SIGKILL costs only the member
section, within the section deadline; restarted, the panel is whole again."""
import os
import subprocess
import tempfile
import time

import pytest

from conftest import AUTH_KEY, Mesh, binary, mint_token, wait_until
from chatmesh.v1 import conversation_pb2 as cv
from chatmesh.v1 import panel_pb2 as p

SHOP = "demo-shop"


def md():
    return [("authorization", "Bearer " + mint_token(SHOP, staff="owner-lan", role="owner"))]


@pytest.fixture(scope="module")
def mesh():
    with tempfile.TemporaryDirectory(prefix="gateway-") as root:
        mesh = Mesh(root, ["conversation", "order", "loyalty", "messaging", "gateway"],
                    env={"gateway": {"CHATMESH_PANEL_SECTION_TIMEOUT_MS": "400"}})
        seeded = subprocess.run([binary("chatmesh"), "seed"], env={**os.environ, **mesh.addresses_env(), "CHATMESH_AUTH_KEY": AUTH_KEY},
                                capture_output=True, text=True, timeout=120)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        yield mesh
        mesh.close()


def hoa(mesh):
    listed = mesh.stub("conversation").ListConversations(cv.ListConversationsRequest(shop_id=SHOP, page_id="demo-page", query="Hoa"), metadata=md())
    return listed.conversations[0]


def test_a_whole_panel_matches_the_seed(mesh):
    conversation = hoa(mesh)
    panel = mesh.stub("gateway").GetPanel(p.GetPanelRequest(shop_id=SHOP, page_id="demo-page", conversation_id=conversation.conversation_id),
                                          metadata=md())
    assert list(panel.unavailable_sections) == []
    assert panel.customer.name == "Nguyễn Thị Hoa" and panel.customer.phone == "0912345678"
    assert {t.name for t in panel.tags.attached} == {"Quan tâm", "Chờ chuyển khoản"}
    assert not {t.tag_id for t in panel.tags.available} & {t.tag_id for t in panel.tags.attached}
    # The seed's earlier web orders, paid through order-svc: 700,000 + 1,250,000 (→ Bạc from 1,000,000), then
    # 700,000 − Bạc 2% = 686,000.
    assert panel.member.tier_name == "Bạc" and panel.member.total_spent_vnd == 2_636_000
    # order-svc: those three, and her livestream cart became the pending order (cart list empty), priced with Bạc's 2%.
    assert panel.order_summary.stats.order_count == 4 and panel.order_summary.recent[0].tier_discount_vnd > 0
    # Every figure agrees: what loyalty-svc counts is what order-svc holds.
    assert panel.order_summary.stats.total_spent_vnd == panel.member.total_spent_vnd
    assert panel.member.order_count == 3
    assert [n.text for n in panel.notes] and panel.activity


def test_loyalty_killed_costs_only_the_member_section_then_recovers(mesh):
    conversation = hoa(mesh)
    request = p.GetPanelRequest(shop_id=SHOP, conversation_id=conversation.conversation_id)
    mesh.services["loyalty"].kill()
    metadata = md()  # minted before the clock starts: it runs the chatmesh CLI
    started = time.time()
    panel = mesh.stub("gateway").GetPanel(request, metadata=metadata, timeout=5)
    assert time.time() - started < 2.0  # five section deadlines of 400 ms
    assert [(u.section, u.code) for u in panel.unavailable_sections] == [("member", "UNAVAILABLE")]
    assert panel.customer.name == "Nguyễn Thị Hoa" and panel.order_summary.stats.order_count == 4
    mesh.start("loyalty")
    assert wait_until(lambda: not mesh.stub("gateway").GetPanel(request, metadata=md()).unavailable_sections, timeout=20)
    assert mesh.stub("gateway").GetPanel(request, metadata=md()).member.tier_name == "Bạc"


def test_the_staff_report_matches_the_seeded_orders(mesh):
    now_ms = int(time.time() * 1000)
    report = mesh.stub("gateway").GetStaffReport(p.GetStaffReportRequest(shop_id=SHOP, page_id="demo-page", from_ms=now_ms - 86_400_000,
                                                                         to_ms=now_ms + 60_000), metadata=md())
    rows = {r.staff_id: r for r in report.rows}
    assert list(report.unavailable_sections) == []
    # The seed's chat orders on demo-page (its earlier web orders belong to no page): owner-lan made Hoa's from her livestream cart (2 × 299,000 − Bạc 2% + GHN 18,000 = 604,040);
    # staff-minh made four for Minh Anh (Kim cương, 10%), one of them cancelled: 405,000 + 630,000 + 252,000.
    assert (rows["owner-lan"].orders, rows["owner-lan"].products, rows["owner-lan"].revenue_vnd) == (1, 2, 604_040)
    assert (rows["staff-minh"].orders, rows["staff-minh"].products, rows["staff-minh"].revenue_vnd) == (3, 4, 1_287_000)
    for row in report.rows:
        expected = row.orders / row.customers_replied if row.customers_replied else 0
        assert abs(row.closing_efficiency - expected) < 1e-9
    assert sum(r.customers_replied for r in report.rows) > 0


def test_the_cli_prints_the_panel_for_people_and_for_scripts(mesh):
    env = {**os.environ, **mesh.addresses_env(), "CHATMESH_AUTH_KEY": AUTH_KEY, "NO_COLOR": "1"}
    text = subprocess.run([binary("chatmesh"), "panel", "--customer-phone", "0912 345 678"], env=env, capture_output=True, text=True, timeout=30)
    assert text.returncode == 0, text.stderr
    assert "Nguyễn Thị Hoa" in text.stdout and "Bạc" in text.stdout and "604.040đ" in text.stdout and "\x1b[" not in text.stdout
    import json
    data = json.loads(subprocess.run([binary("chatmesh"), "panel", "--customer-phone", "0912345678", "--json"], env=env,
                                     capture_output=True, text=True, timeout=30, check=True).stdout)
    assert data["customer"]["phone"] == "0912345678" and data["member"]["tier_name"] == "Bạc" and data["unavailable_sections"] == []
    report = subprocess.run([binary("chatmesh"), "report"], env=env, capture_output=True, text=True, timeout=30, check=True).stdout
    assert "staff-minh" in report and "1.287.000đ" in report
