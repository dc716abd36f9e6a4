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
    # The seed's loyalty: 700,000 + 1,250,000 + 700,000 over four months in a rolling year → Bạc (from 1,000,000).
    assert panel.member.tier_name == "Bạc" and panel.member.total_spent_vnd == 2_650_000
    # order-svc: her livestream cart became the pending order (cart list empty), priced with Bạc's 2%.
    assert panel.order_summary.stats.order_count == 1 and panel.order_summary.recent[0].tier_discount_vnd > 0
    assert [n.text for n in panel.notes] and panel.activity


def test_loyalty_killed_costs_only_the_member_section_then_recovers(mesh):
    conversation = hoa(mesh)
    request = p.GetPanelRequest(shop_id=SHOP, conversation_id=conversation.conversation_id)
    mesh.services["loyalty"].kill()
    started = time.time()
    panel = mesh.stub("gateway").GetPanel(request, metadata=md(), timeout=5)
    assert time.time() - started < 2.0
    assert [(u.section, u.code) for u in panel.unavailable_sections] == [("member", "UNAVAILABLE")]
    assert panel.customer.name == "Nguyễn Thị Hoa" and panel.order_summary.stats.order_count == 1
    mesh.start("loyalty")
    assert wait_until(lambda: not mesh.stub("gateway").GetPanel(request, metadata=md()).unavailable_sections, timeout=20)
    assert mesh.stub("gateway").GetPanel(request, metadata=md()).member.tier_name == "Bạc"
