"""ChatMesh's own client on grpc's interop cases: `interop-client` (HTTP2Channel and the generated
client) against grpc C++'s interop server built from Debian's libgrpc++ (Benchmarks/grpc-cpp/interop), and against
ChatMesh's `interop-server`, one process run per case as grpc's interop runner does."""
import os
import subprocess

import pytest

from conftest import ROOT, ServerProcess, binary

CASES = ["empty_unary", "large_unary", "client_compressed_unary", "server_compressed_unary", "client_streaming",
         "client_compressed_streaming", "server_streaming", "server_compressed_streaming", "ping_pong", "empty_stream",
         "timeout_on_sleeping_server", "cancel_after_begin", "cancel_after_first_response", "custom_metadata",
         "status_code_and_message", "special_status_message", "unimplemented_method", "unimplemented_service"]


class CppInteropServer:
    """grpc C++'s TestService (Benchmarks/grpc-cpp/interop/server.cc), built with make on first use."""

    def __init__(self):
        directory = os.path.join(ROOT, "Benchmarks", "grpc-cpp", "interop")
        subprocess.run(["make", "-s", "-C", directory], check=True, timeout=600)
        from conftest import free_port

        self.port = free_port()
        self.proc = subprocess.Popen([os.path.join(directory, ".build", "interop-server"), f"127.0.0.1:{self.port}"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), f"grpc C++ interop server did not start: {line!r}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cpp_server():
    server = CppInteropServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def swift_server():
    proc = ServerProcess("interop-server", "--host", "127.0.0.1", "--port", "0")
    yield proc
    proc.stop_cleanly()


def run_case(port, case):
    out = subprocess.run([binary("interop-client"), "--server_port", str(port), "--test_case", case],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{case}: {out.stdout}{out.stderr}"
    assert out.stdout.strip() == f"{case}: passed"


@pytest.mark.parametrize("case", CASES)
def test_chatmesh_client_against_grpc_cpp(cpp_server, case):
    run_case(cpp_server.port, case)


@pytest.mark.parametrize("case", CASES)
def test_chatmesh_client_against_chatmesh_server(swift_server, case):
    run_case(swift_server.port, case)
