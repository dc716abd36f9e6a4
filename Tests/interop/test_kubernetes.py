"""deploy/kubernetes (issue 25): each overlay rendered by kustomize (kubectl kustomize) and validated against the
Kubernetes OpenAPI schemas (kubernetes-validate, strict: an unknown field fails) of a current version, then
read for what the README promises of it: gRPC probes, non-root pods, resources, graceful termination, secrets,
a budget and an autoscaler for each service that scales out, and addresses that name the Services."""
import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
# The newest minor release of the schemas kubernetes-validate ships, and the oldest we promise (native gRPC
# probes are GA since 1.27; PodDisruptionBudget policy/v1 and autoscaling/v2 since 1.23).
VERSIONS = [kubernetes_validate.latest_version(), "1.29.0"]
SERVICES = {
    "conversation-svc": (50051, "chatmesh.v1.ConversationService", "conversation"),
    "order-svc": (50052, "chatmesh.v1.OrderService", "order"),
    "loyalty-svc": (50053, "chatmesh.v1.LoyaltyService", "loyalty"),
    "messaging-svc": (50054, "chatmesh.v1.MessagingService", "messaging"),
    "gateway": (50050, "chatmesh.v1.PanelService", None),
}
# Every service scales out; messaging-svc's replicas share its broadcasts and scenario steps through leases.
SCALES_OUT = {"conversation-svc", "order-svc", "loyalty-svc", "messaging-svc", "gateway"}


def render(overlay):
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the overlays (scripts/setup installs it)"
    out = subprocess.run([kubectl, "kustomize", str(KUBE / "overlays" / overlay)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module", params=["local", "production"])
def overlay(request):
    return request.param, render(request.param)


def test_every_resource_is_valid_for_current_kubernetes(overlay):
    name, docs = overlay
    assert len(docs) > 20
    for version in VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_what_kubernetes_would():
    docs = render("local")
    deployment = copy.deepcopy(by_kind(docs, "Deployment")["gateway"])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["sevice"] = "typo"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)
    deployment = copy.deepcopy(by_kind(docs, "Deployment")["gateway"])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


def test_each_service_runs_as_promised(overlay):
    name, docs = overlay
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    config = by_kind(docs, "ConfigMap")["chatmesh-config"]["data"]
    assert set(deployments) == set(SERVICES)
    for service, (port, grpc_name, database) in SERVICES.items():
        deployment = deployments[service]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == [service]
        env = {e["name"]: e for e in container["env"]}
        assert env["CHATMESH_LISTEN"]["value"] == f"0.0.0.0:{port}"
        # (The local overlay's generated Secret carries a hash after its name.)
        def secret(variable):
            ref = env[variable]["valueFrom"]["secretKeyRef"]
            assert ref["name"].startswith("chatmesh-secrets")
            return ref["key"]
        assert secret("CHATMESH_AUTH_KEY") == "auth-key"
        if database:
            assert secret("DATABASE_URL") == f"{database}-database-url"
        else:
            assert "DATABASE_URL" not in env
        assert {"configMapRef": {"name": "chatmesh-config"}} in container["envFrom"]
        # Probes through grpc.health.v1 on the port it listens on; ready means its own service is SERVING.
        assert container["readinessProbe"]["grpc"] == {"port": port, "service": grpc_name}
        assert container["livenessProbe"]["grpc"]["port"] == port
        assert container["startupProbe"]["grpc"]["port"] == port
        # Non-root, nothing to escalate to, nothing written outside its volumes.
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}
        }
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]
        # Terminating: the preStop pause, then SIGTERM and the 30 s drain, all within the grace period.
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert pod["terminationGracePeriodSeconds"] > 30 + pause
        assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} >= {"kubernetes.io/hostname"}
        # Its Service selects its pods on the same port, and the others reach it by that name.
        svc = services[service]
        assert svc["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert {"name": "grpc", "port": port, "targetPort": "grpc", "appProtocol": "kubernetes.io/h2c"} in svc["spec"]["ports"]
        if service != "gateway":
            assert config[f"CHATMESH_{database.upper()}_ADDRS"] == f"{service}:{port}"
        assert service in SCALES_OUT
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_budgets_and_autoscalers_for_what_scales_out(overlay):
    name, docs = overlay
    deployments = by_kind(docs, "Deployment")
    budgets, autoscalers = by_kind(docs, "PodDisruptionBudget"), by_kind(docs, "HorizontalPodAutoscaler")
    assert set(budgets) == SCALES_OUT and set(autoscalers) == SCALES_OUT
    for service in SCALES_OUT:
        assert budgets[service]["spec"]["selector"]["matchLabels"] == deployments[service]["spec"]["selector"]["matchLabels"]
        hpa = autoscalers[service]["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
        assert hpa["minReplicas"] == deployments[service]["spec"]["replicas"] <= hpa["maxReplicas"]
        if name == "production":
            assert hpa["minReplicas"] >= 2, "a production service that scales out keeps two replicas through a disruption"


def test_secrets_and_images_per_overlay(overlay):
    name, docs = overlay
    secrets = [d for d in docs if d["kind"] == "Secret"]
    images = {c["image"] for d in by_kind(docs, "Deployment").values() for c in d["spec"]["template"]["spec"]["containers"]}
    if name == "local":
        (chatmesh,) = [s for s in secrets if s["metadata"]["name"].startswith("chatmesh-secrets")]
        keys = set(chatmesh["data"])
        assert keys == {"auth-key"} | {f"{db}-database-url" for _, _, db in SERVICES.values() if db}
        # kustomize renamed the generated Secret with a hash: every reference follows it.
        for d in by_kind(docs, "Deployment").values():
            for e in d["spec"]["template"]["spec"]["containers"][0]["env"]:
                if "valueFrom" in e:
                    assert e["valueFrom"]["secretKeyRef"]["name"] == chatmesh["metadata"]["name"]
        assert images == {"chatmesh:latest"}
        assert by_kind(docs, "StatefulSet")["postgres"]
    else:
        assert secrets == [], "production's secrets come from the operators' store, never from the repository"
        assert not any(d["kind"] == "StatefulSet" for d in docs), "production uses the operators' PostgreSQL"
        (image,) = images
        assert not image.endswith(":latest"), "production pins a version"


def test_the_example_postgres_creates_the_compose_databases():
    assert (KUBE / "examples/postgres/postgres-init.sql").read_text() == (ROOT / "deploy/postgres-init.sql").read_text()
