"""`chatmesh health`, the containers' health check (docker-compose.yml): exit 0 while the service answers
SERVING, 1 for a service it does not serve, 1 once it is gone."""
import subprocess
import tempfile

from conftest import ServiceProcess, binary
from chatmesh.v1 import loyalty_pb2_grpc as l_grpc


def health(target, *args):
    return subprocess.run([binary("chatmesh"), "health", "--target", target, *args], capture_output=True, text=True, timeout=30)


def test_health_exits_0_while_serving_and_1_otherwise():
    with tempfile.TemporaryDirectory(prefix="health-") as root:
        svc = ServiceProcess("loyalty-svc", l_grpc.LoyaltyServiceStub, root)
        try:
            ok = health(svc.address)
            assert ok.returncode == 0 and "SERVING" in ok.stdout
            assert health(svc.address, "--service", "chatmesh.v1.LoyaltyService").returncode == 0
            unknown = health(svc.address, "--service", "chatmesh.v1.Nope")
            assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stdout
        finally:
            address = svc.address
            svc.close()
        gone = health(address)
        assert gone.returncode == 1 and "UNAVAILABLE" in gone.stdout
