"""TLS and mutual TLS: a server with CHATMESH_TLS_CERT/_KEY, grpcio connecting with TLS and verifying it,
a server requiring client certificates (CHATMESH_TLS_CLIENT_CA) refusing a client without one or with one
from another CA, and ChatMesh's own client (HTTP2Channel, configured by CHATMESH_TLS_CA and
CHATMESH_TLS_CLIENT_CERT/_KEY) calling through it. The certificates are made here with openssl."""
import subprocess

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import EchoServer, mint_token
from chatmesh.testing.v1 import echo_pb2, echo_pb2_grpc

SHOP = "shop-tls"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=directory)


def make_cert(directory, name, ca, san):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)
    (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=directory)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "mesh-ca")
    make_ca(d, "other-ca")
    make_cert(d, "server", "mesh-ca", "IP:127.0.0.1,DNS:localhost")
    make_cert(d, "client", "mesh-ca", "DNS:gateway")
    make_cert(d, "stranger", "other-ca", "DNS:stranger")
    return d


def read(pki, name):
    return (pki / name).read_bytes()


def tls_env(pki, client_ca=False):
    env = {"CHATMESH_TLS_CERT": str(pki / "server.crt"), "CHATMESH_TLS_KEY": str(pki / "server.key")}
    if client_ca:
        env["CHATMESH_TLS_CLIENT_CA"] = str(pki / "mesh-ca.crt")
    return env


def echo(channel, text="over tls", method="Echo", timeout=10):
    stub = echo_pb2_grpc.EchoServiceStub(channel)
    call = getattr(stub, method)
    return call(echo_pb2.EchoRequest(shop_id=SHOP, text=text),
                metadata=[("authorization", "Bearer " + mint_token(SHOP))], timeout=timeout).text


def secure(server, pki, cert=None, ca="mesh-ca"):
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(pki, f"{ca}.crt"),
        private_key=read(pki, f"{cert}.key") if cert else None,
        certificate_chain=read(pki, f"{cert}.crt") if cert else None)
    return grpc.secure_channel(server.address, credentials)


def test_grpcio_connects_with_tls_and_verifies_the_server(pki):
    server = EchoServer(env=tls_env(pki))
    try:
        with secure(server, pki) as channel:
            assert echo(channel) == "over tls"
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # A client that trusts another CA does not accept the server; a plaintext client gets nowhere.
        with secure(server, pki, ca="other-ca") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                echo(channel, timeout=3)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                echo(channel, timeout=3)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert server.alive()
    finally:
        server.stop_cleanly()


def test_mutual_tls_refuses_a_client_without_the_mesh_certificate(pki):
    server = EchoServer(env=tls_env(pki, client_ca=True))
    try:
        with secure(server, pki, cert="client") as channel:
            assert echo(channel) == "over tls"
        for cert in (None, "stranger"):
            with secure(server, pki, cert=cert) as channel:
                with pytest.raises(grpc.RpcError) as refused:
                    echo(channel, timeout=3)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, cert
        assert server.alive()
    finally:
        server.stop_cleanly()


def test_the_mesh_client_calls_over_mutual_tls(pki):
    """grpcio → a relaying mesh-echo (plain) → a mesh-echo requiring client certificates: the relay's
    HTTP2Channel verifies the server by CHATMESH_TLS_CA and presents CHATMESH_TLS_CLIENT_CERT. Without its
    certificate the relay's call is refused."""
    upstream = EchoServer(env=tls_env(pki, client_ca=True))
    client_env = {"CHATMESH_TLS_CA": str(pki / "mesh-ca.crt"), "CHATMESH_TLS_CLIENT_CERT": str(pki / "client.crt"),
                  "CHATMESH_TLS_CLIENT_KEY": str(pki / "client.key")}
    relay = EchoServer("--relay-to", upstream.address, env=client_env)
    anonymous = EchoServer("--relay-to", upstream.address, env={"CHATMESH_TLS_CA": str(pki / "mesh-ca.crt")})
    try:
        with grpc.insecure_channel(relay.address) as channel:
            assert echo(channel, "relayed", method="Relay").endswith("relayed")
        with grpc.insecure_channel(anonymous.address) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                echo(channel, "relayed", method="Relay", timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
    finally:
        for server in (anonymous, relay, upstream):
            server.stop_cleanly()
