"""Server reflection as grpcurl and Postman use it, driven by grpcio-reflection's own client
(ProtoReflectionDescriptorDatabase, v1alpha) and by hand over v1: every executable lists what it
serves and describes any symbol, with the files it imports, so a call can be made without protos."""
import tempfile

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import ServerProcess, ServiceProcess
from chatmesh.v1 import order_pb2_grpc


@pytest.fixture(scope="module")
def interop():
    proc = ServerProcess("interop-server", "--host", "127.0.0.1", "--port", "0")
    yield proc
    proc.stop_cleanly()


def test_grpcio_reflection_lists_services_and_builds_messages_to_call_with(interop):
    with grpc.insecure_channel(interop.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert {"grpc.testing.TestService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"} <= set(services)
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("grpc.testing.TestService")
        method = service.methods_by_name["UnaryCall"]
        assert method.input_type.full_name == "grpc.testing.SimpleRequest"
        # Messages built from what reflection said (its imports fetched too) make a real call.
        Request = message_factory.GetMessageClass(method.input_type)
        Response = message_factory.GetMessageClass(method.output_type)
        request = Request(response_size=1234)
        call = channel.unary_unary("/grpc.testing.TestService/UnaryCall", request_serializer=Request.SerializeToString,
                                   response_deserializer=Response.FromString)
        assert len(call(request, timeout=30).payload.body) == 1234
        # A symbol inside a message (a field) resolves to its file; an unknown one is NOT_FOUND.
        assert database.FindFileContainingSymbol("grpc.testing.SimpleRequest.response_size").name == "grpc/testing/messages.proto"
        with pytest.raises(KeyError):
            database.FindFileContainingSymbol("grpc.testing.Nope")


def _v1(channel, *requests):
    call = channel.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                                 request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=30))


def test_v1_answers_every_request_of_a_stream_in_order_with_dependencies(interop):
    with grpc.insecure_channel(interop.address) as channel:
        by_name, by_symbol, missing = _v1(
            channel,
            reflection_pb2.ServerReflectionRequest(file_by_filename="grpc/testing/test.proto"),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.testing.TestService.FullDuplexCall"),
            reflection_pb2.ServerReflectionRequest(file_by_filename="nope.proto"),
        )
    names = []
    from google.protobuf import descriptor_pb2
    for blob in by_name.file_descriptor_response.file_descriptor_proto:
        fd = descriptor_pb2.FileDescriptorProto()
        fd.ParseFromString(blob)
        names.append(fd.name)
    assert names[0] == "grpc/testing/test.proto" and set(names) == {"grpc/testing/test.proto", "grpc/testing/empty.proto", "grpc/testing/messages.proto"}
    assert by_name.original_request.file_by_filename == "grpc/testing/test.proto"
    assert len(by_symbol.file_descriptor_response.file_descriptor_proto) == 3
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_every_service_executable_serves_reflection():
    with tempfile.TemporaryDirectory(prefix="reflection-") as root:
        svc = ServiceProcess("order-svc", order_pb2_grpc.OrderServiceStub, root)
        try:
            database = ProtoReflectionDescriptorDatabase(svc.channel)
            assert "chatmesh.v1.OrderService" in database.get_services()
            pool = descriptor_pool.DescriptorPool(database)
            assert "CreateOrder" in pool.FindServiceByName("chatmesh.v1.OrderService").methods_by_name
        finally:
            svc.close()
