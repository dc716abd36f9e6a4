"""Server reflection as grpcurl and Postman use it, driven by grpcio-reflection's own client
(ProtoReflectionDescriptorDatabase, v1alpha) and by hand over v1: every executable lists what it
serves and describes any symbol, with the files it imports, so a call can be made without protos."""
import base64
import json
import os
import subprocess
import tempfile

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import AUTH_KEY, ServerProcess, ServiceProcess, binary, mint_token
from chatmesh.v1 import order_pb2, order_pb2_grpc


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


def _call(address, method, request, *extra):
    """`chatmesh call`: the Swift client, knowing the method only through the server's reflection."""
    return subprocess.run([binary("chatmesh"), "call", method, json.dumps(request), "--target", address, *extra],
                          env={**os.environ, "CHATMESH_AUTH_KEY": AUTH_KEY}, capture_output=True, text=True, timeout=60)


def test_chatmesh_call_writes_and_reads_any_message_as_json_through_reflection(interop):
    with tempfile.TemporaryDirectory(prefix="reflection-") as root:
        svc = ServiceProcess("order-svc", order_pb2_grpc.OrderServiceStub, root)
        try:
            made = _call(svc.address, "chatmesh.v1.OrderService/UpsertProduct", {
                "shopId": "shop-r", "name": "Áo sơ mi \"trắng\"",
                "variants": [{"title": "Size M", "priceVnd": "300000", "stock": 7, "weightG": 250},
                             {"title": "Size L", "price_vnd": 320000, "stock": 0}]})
            assert made.returncode == 0, made.stderr
            product = json.loads(made.stdout)
            assert product["name"] == "Áo sơ mi \"trắng\"" and product["productId"]
            # 64-bit integers come back as strings (proto3 JSON), whichever way they went in.
            assert [(v["title"], v["priceVnd"]) for v in product["variants"]] == [("Size M", "300000"), ("Size L", "320000")]
            # What grpcio reads with the generated Python classes is what the JSON said.
            token = mint_token("shop-r", role="owner")
            listed = svc.stub.ListProducts(order_pb2.ListProductsRequest(shop_id="shop-r"),
                                           metadata=[("authorization", "Bearer " + token)], timeout=30)
            assert [(v.title, v.price_vnd, v.stock, v.weight_g) for v in listed.products[0].variants] == \
                [("Size M", 300000, 7, 250), ("Size L", 320000, 0, 0)]
            summary = _call(svc.address, "chatmesh.v1.OrderService/GetOrderSummary", {"shopId": "shop-r", "customerId": "cu-1"})
            assert summary.returncode == 0 and json.loads(summary.stdout) == {"stats": {}}
            # The service's refusal is the exit status and the status on stderr, naming the field.
            refused = _call(svc.address, "chatmesh.v1.OrderService/GetOrderSummary", {"shopId": "shop-r"})
            assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr and "customer_id" in refused.stderr
            # A field the message does not have, and a method the service does not have, are named.
            bad = _call(svc.address, "chatmesh.v1.OrderService/GetOrderSummary", {"shopId": "shop-r", "customer": "x"})
            assert bad.returncode != 0 and "customer" in bad.stderr and "no such field" in bad.stderr
            missing = _call(svc.address, "chatmesh.v1.OrderService/Nope", {})
            assert missing.returncode != 0 and "GetOrderSummary" in missing.stderr
        finally:
            svc.close()


def test_chatmesh_call_streams_both_ways(interop):
    listed = subprocess.run([binary("chatmesh"), "call", "list", "--target", interop.address], capture_output=True, text=True, timeout=60)
    assert "grpc.testing.TestService" in listed.stdout.split()
    duplex = _call(interop.address, "grpc.testing.TestService/FullDuplexCall",
                   [{"responseParameters": [{"size": 3}]}, {"responseParameters": [{"size": 5}, {"size": 1}]}])
    assert duplex.returncode == 0, duplex.stderr
    answers = [json.loads(chunk) for chunk in duplex.stdout.replace("}\n{", "}\x00{").split("\x00")]
    assert [len(base64.b64decode(a["payload"]["body"])) for a in answers] == [3, 5, 1]
    summed = _call(interop.address, "grpc.testing.TestService/StreamingInputCall",
                   [{"payload": {"body": base64.b64encode(b"x" * 4).decode()}}, {"payload": {"body": base64.b64encode(b"y" * 9).decode()}}])
    assert summed.returncode == 0 and json.loads(summed.stdout) == {"aggregatedPayloadSize": 13}
    status = _call(interop.address, "grpc.testing.TestService/UnaryCall", {"responseStatus": {"code": 5, "message": "không có"}})
    assert status.returncode == 1 and "NOT_FOUND: không có" in status.stderr
