"""`chatmesh health`, the containers' health check (docker-compose.yml): exit 0 while the service answers
SERVING, 1 for a service it does not serve, 1 once it is gone; and both sides run as the image's
unprivileged user."""
import os
import subprocess
import tempfile

import grpc
import pytest

from conftest import ServerProcess, ServiceProcess, binary, mint_token
from chatmesh.v1 import common_pb2
from chatmesh.v1 import loyalty_pb2_grpc as l_grpc

# The image's user (Dockerfile): no capabilities at all.
UNPRIVILEGED = ["setpriv", "--reuid=10001", "--regid=10001", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]


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


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start processes as another user (CI runs as root)")
def test_a_service_and_its_health_check_work_as_an_unprivileged_user():
    """As uid 10001 without capabilities, as in the image and the Kubernetes pods: a socket option only root may
    set (SO_DEBUG, which TCP_NODELAY set at the wrong level once was) fails every connection, found by running
    the image."""
    with tempfile.TemporaryDirectory(prefix="health-user-") as root:
        os.chmod(root, 0o755)
        data = os.path.join(root, "data")
        os.mkdir(data)
        os.chown(data, 10001, 10001)
        svc = ServerProcess("loyalty-svc", env={"CHATMESH_DATA_DIR": data}, prefix=UNPRIVILEGED)
        try:
            status = open(f"/proc/{svc.proc.pid}/status").read()
            assert "\nUid:\t10001\t10001" in status and "\nCapEff:\t0000000000000000" in status
            checked = subprocess.run([*UNPRIVILEGED, binary("chatmesh"), "health", "--target", svc.address],
                                     capture_output=True, text=True, timeout=30)
            assert checked.returncode == 0 and "SERVING" in checked.stdout, checked.stdout + checked.stderr
            # Its accepted connections too: a call from another process is answered.
            with grpc.insecure_channel(svc.address) as channel:
                meta = [("authorization", "Bearer " + mint_token("shop-user", staff="lan", role="owner"))]
                l_grpc.LoyaltyServiceStub(channel).GetProgram(common_pb2.ShopRequest(shop_id="shop-user"), metadata=meta, timeout=10)
        finally:
            svc.stop_cleanly()
