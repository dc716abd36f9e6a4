"""/metrics scraped by a real Prometheus (Debian's): a seeded mesh with metrics on, a short load of panels through
the gateway — three that compose for each one refused — and PromQL through Prometheus' HTTP API gives back the
load's rate and its error ratio, the gateway's calls to the services (the client side), the latency histogram, and
the outbox's drained queues. Then loyalty-svc is killed: the member section's unavailability is counted by section."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import grpc
import pytest

from conftest import AUTH_KEY, Mesh, binary, free_port, mint_token, wait_until
from chatmesh.v1 import conversation_pb2 as cv
from chatmesh.v1 import panel_pb2 as p

SHOP = "demo-shop"
NAMES = ["conversation", "order", "loyalty", "messaging", "gateway"]
PROMETHEUS = shutil.which("prometheus")

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="Debian's prometheus is not installed (scripts/setup installs it)")


def md():
    return [("authorization", "Bearer " + mint_token(SHOP, staff="owner-lan", role="owner"))]


def scrape(address):
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode()


def sample(page, name, **labels):
    """The sum of the samples of `name` whose labels include `labels` (a tiny reader of the text format)."""
    total = 0.0
    for line in page.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


class Prometheus:
    def __init__(self, root, targets):
        self.port = free_port()
        config = os.path.join(root, "prometheus.yml")
        jobs = "\n".join(f"""  - job_name: {name}
    static_configs:
      - targets: ["{address}"]""" for name, address in targets.items())
        with open(config, "w") as fh:
            fh.write(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{jobs}\n")
        self.log = open(os.path.join(root, "prometheus.log"), "w")
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(root, 'tsdb')}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"], stdout=self.log, stderr=subprocess.STDOUT)
        assert wait_until(self.ready, timeout=60), "prometheus did not become ready"

    def ready(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, promql):
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, promql):
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def targets_up(self):
        result = self.query("up")
        return len(result) == len(NAMES) and all(r["value"][1] == "1" for r in result)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def mesh():
    with tempfile.TemporaryDirectory(prefix="metrics-") as root:
        mesh = Mesh(root, NAMES, env={name: {"CHATMESH_METRICS_LISTEN": "127.0.0.1:0"} for name in NAMES})
        seeded = subprocess.run([binary("chatmesh"), "seed"], env={**os.environ, **mesh.addresses_env(), "CHATMESH_AUTH_KEY": AUTH_KEY},
                                capture_output=True, text=True, timeout=120)
        assert seeded.returncode == 0, seeded.stderr[-3000:]
        prometheus = Prometheus(root, {name: mesh.services[name].metrics_address for name in NAMES})
        yield mesh, prometheus
        prometheus.stop()
        mesh.close()


def test_prometheus_reads_the_loads_rate_and_error_ratio(mesh):
    mesh, prometheus = mesh
    gateway = mesh.stub("gateway")
    hoa = mesh.stub("conversation").ListConversations(
        cv.ListConversationsRequest(shop_id=SHOP, page_id="demo-page", query="Hoa"), metadata=md()).conversations[0]
    good = p.GetPanelRequest(shop_id=SHOP, page_id="demo-page", conversation_id=hoa.conversation_id)
    missing = p.GetPanelRequest(shop_id=SHOP, page_id="demo-page", conversation_id="cv_nobody")

    def panel(request):
        try:
            gateway.GetPanel(request, metadata=md(), timeout=10)
            return "OK"
        except grpc.RpcError as error:
            return error.code().name

    # One of each first, so that both series exist (and are scraped) before the load is counted.
    assert panel(good) == "OK" and panel(missing) == "NOT_FOUND"
    assert wait_until(prometheus.targets_up, timeout=60), prometheus.query("up")
    before = 'sum(grpc_server_handled_total{job="gateway",grpc_method="GetPanel"})'
    assert wait_until(lambda: prometheus.value(before) == 2, timeout=60), prometheus.value(before)

    outcomes = []
    started = time.monotonic()
    while time.monotonic() - started < 6:
        for request in (good, good, good, missing):
            outcomes.append(panel(request))
        time.sleep(0.01)
    assert outcomes.count("OK") == 3 * outcomes.count("NOT_FOUND"), outcomes
    total = len(outcomes) + 2
    # Prometheus has scraped the last of the load when its counter equals ours, exactly.
    assert wait_until(lambda: prometheus.value(before) == total, timeout=60), (prometheus.value(before), total)

    window = "5m"
    increase = prometheus.value(f'sum(increase(grpc_server_handled_total{{job="gateway",grpc_method="GetPanel"}}[{window}]))')
    # The load's calls, give or take the extrapolation Prometheus does at a window's edges.
    assert abs(increase - len(outcomes)) <= 0.1 * len(outcomes), (increase, len(outcomes))
    rate = prometheus.value(f'sum(rate(grpc_server_handled_total{{job="gateway",grpc_method="GetPanel"}}[{window}]))')
    assert abs(rate * 300 - increase) <= 0.01 * increase, (rate, increase)
    ratio = prometheus.value(
        f'sum(increase(grpc_server_handled_total{{job="gateway",grpc_method="GetPanel",grpc_code!="OK"}}[{window}]))'
        f' / sum(increase(grpc_server_handled_total{{job="gateway",grpc_method="GetPanel"}}[{window}]))')
    assert abs(ratio - 0.25) <= 0.03, ratio
    # The counters themselves: the exact share of NotFound among every panel asked for.
    exact = prometheus.value('sum(grpc_server_handled_total{job="gateway",grpc_method="GetPanel",grpc_code="NotFound"})'
                             ' / sum(grpc_server_handled_total{job="gateway",grpc_method="GetPanel"})')
    assert exact == (outcomes.count("NOT_FOUND") + 1) / total

    p99 = prometheus.value('histogram_quantile(0.99, sum by (le) (rate(grpc_server_handling_seconds_bucket{job="gateway",grpc_method="GetPanel"}[5m])))')
    assert p99 is not None and 0 < p99 < 10, p99
    # The gateway's own calls, seen from its side (the client series) and from conversation-svc's (the server series).
    # Each target is scraped on its own beat: they agree once both scrapes follow the last call.
    client = 'sum(grpc_client_handled_total{job="gateway",grpc_method="GetConversationContext"})'
    server = 'sum(grpc_server_handled_total{job="conversation",grpc_method="GetConversationContext"})'
    assert wait_until(lambda: prometheus.value(client) == prometheus.value(server) >= total, timeout=30), \
        (prometheus.value(client), prometheus.value(server), total)
    # Every order event of the seed reached loyalty-svc: the outbox's queue is empty.
    assert wait_until(lambda: prometheus.value('sum(chatmesh_outbox_events{job="order",state="pending"})') == 0, timeout=60)
    assert prometheus.value('sum(chatmesh_store_operations_total{job="order",op="write",outcome="ok"})') > 0
    assert prometheus.value('max(chatmesh_http2_connections{job="conversation"})') >= 1


def test_an_unavailable_section_is_counted_by_section_and_code(mesh):
    mesh, _ = mesh
    hoa = mesh.stub("conversation").ListConversations(
        cv.ListConversationsRequest(shop_id=SHOP, page_id="demo-page", query="Hoa"), metadata=md()).conversations[0]
    gateway_metrics = mesh.services["gateway"].metrics_address
    before = sample(scrape(gateway_metrics), "chatmesh_panel_section_unavailable_total", section="member")
    mesh.services["loyalty"].kill()
    try:
        panel = mesh.stub("gateway").GetPanel(p.GetPanelRequest(shop_id=SHOP, conversation_id=hoa.conversation_id), metadata=md(), timeout=10)
        assert [s.section for s in panel.unavailable_sections] == ["member"]
        code = panel.unavailable_sections[0].code
        page = scrape(gateway_metrics)
        assert sample(page, "chatmesh_panel_section_unavailable_total", section="member") == before + 1
        assert sample(page, "chatmesh_panel_section_unavailable_total", section="member", code=code) >= 1
        # Labels stay bounded: no shop, customer or conversation id in any series.
        assert SHOP not in page and hoa.conversation_id not in page
    finally:
        mesh.start("loyalty")


def test_the_deploy_files_hold_against_the_real_prometheus(mesh):
    """deploy/prometheus/prometheus.yml passes promtool; every query of the Grafana dashboard is PromQL that this
    Prometheus evaluates over the mesh's series (the dashboard's $__rate_interval as Grafana would fill it in), and
    the core panels have data."""
    mesh, prometheus = mesh
    root = os.path.join(os.path.dirname(__file__), "..", "..", "deploy")
    promtool = shutil.which("promtool")
    if promtool:
        checked = subprocess.run([promtool, "check", "config", os.path.join(root, "prometheus", "prometheus.yml")], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    with open(os.path.join(root, "grafana", "chatmesh-dashboard.json")) as fh:
        dashboard = json.load(fh)
    with_data = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m")
            if prometheus.query(expr):
                with_data.add(panel["title"])
    assert {"Calls/s by service", "p99 latency by method (server side)", "Busiest methods (calls/s)",
            "Outbox backlog (pending events)", "Connections and streams"} <= with_data, with_data
