"""A Python grpcio client calls the Swift server (mesh-echo)."""
import base64
import hashlib
import hmac
import json
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import AUTH_KEY, mint_token
from chatmesh.testing.v1 import echo_pb2, echo_pb2_grpc

SHOP = "shop-interop"


@pytest.fixture
def stub(shared_echo_server):
    channel = grpc.insecure_channel(shared_echo_server.address)
    yield echo_pb2_grpc.EchoServiceStub(channel)
    channel.close()


@pytest.fixture(scope="module")
def auth():
    return [("authorization", "Bearer " + mint_token(SHOP, staff="staff-7"))]


def call_error(fn, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kwargs)
    return info.value


def test_success_echoes_and_sees_the_caller(stub, auth):
    reply = stub.Echo(echo_pb2.EchoRequest(shop_id=SHOP, text="hello", words=["a", "b"], labels={"k": "v"}),
                      metadata=auth, timeout=5)
    assert reply.text == "hello"
    assert list(reply.words) == ["a", "b"]
    assert dict(reply.labels) == {"k": "v"}
    assert reply.caller_shop_id == SHOP
    assert reply.caller_staff_id == "staff-7"
    # The client's 5 s timeout arrived as the handler's deadline.
    assert 0 < reply.deadline_remaining_ms <= 5000


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c != grpc.StatusCode.OK])
def test_every_error_status_arrives_with_its_message(stub, auth, code):
    message = f"lỗi {code.name} 100% — thử lại"
    err = call_error(stub.Echo, echo_pb2.EchoRequest(shop_id=SHOP, fail_with_code=code.value[0], fail_with_message=message),
                     metadata=auth, timeout=5)
    assert err.code() == code
    assert err.details() == message


def test_deadline_exceeded(stub, auth):
    started = time.monotonic()
    err = call_error(stub.Echo, echo_pb2.EchoRequest(shop_id=SHOP, delay_ms=3000), metadata=auth, timeout=0.3)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2.0


def test_server_enforces_the_deadline_it_was_given(shared_echo_server, auth):
    # A raw call with grpc-timeout and a generous client-side wait: the server itself must answer.
    channel = grpc.insecure_channel(shared_echo_server.address)
    call = channel.unary_unary("/chatmesh.testing.v1.EchoService/Echo",
                               request_serializer=echo_pb2.EchoRequest.SerializeToString,
                               response_deserializer=echo_pb2.EchoResponse.FromString)
    err = call_error(call, echo_pb2.EchoRequest(shop_id=SHOP, delay_ms=5000), metadata=auth, timeout=0.5)
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    channel.close()


def test_oversize_message_is_resource_exhausted(shared_echo_server, auth):
    channel = grpc.insecure_channel(shared_echo_server.address, options=[("grpc.max_send_message_length", 16 << 20),
                                                                         ("grpc.max_receive_message_length", 16 << 20)])
    stub = echo_pb2_grpc.EchoServiceStub(channel)
    err = call_error(stub.Echo, echo_pb2.EchoRequest(shop_id=SHOP, payload=b"x" * (5 << 20)), metadata=auth, timeout=10)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Just under the limit still works, in both directions.
    reply = stub.Echo(echo_pb2.EchoRequest(shop_id=SHOP, payload=b"y" * ((4 << 20) - 64)), metadata=auth, timeout=10)
    assert len(reply.payload) == (4 << 20) - 64
    channel.close()


def test_unknown_method_is_unimplemented(shared_echo_server, auth):
    channel = grpc.insecure_channel(shared_echo_server.address)
    call = channel.unary_unary("/chatmesh.testing.v1.EchoService/NoSuchMethod",
                               request_serializer=echo_pb2.EchoRequest.SerializeToString,
                               response_deserializer=echo_pb2.EchoResponse.FromString)
    err = call_error(call, echo_pb2.EchoRequest(shop_id=SHOP), metadata=auth, timeout=5)
    assert err.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "NoSuchMethod" in err.details()
    channel.close()


def test_missing_token_is_unauthenticated(stub):
    err = call_error(stub.Echo, echo_pb2.EchoRequest(shop_id=SHOP, text="x"), timeout=5)
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED


def test_bad_tokens_are_unauthenticated(stub):
    good = mint_token(SHOP)
    forged = mint_token(SHOP, key="another-mesh-key")
    expired = mint_token(SHOP, ttl=-10)
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for token in (forged, expired, tampered, "not-a-token"):
        err = call_error(stub.Echo, echo_pb2.EchoRequest(shop_id=SHOP), metadata=[("authorization", "Bearer " + token)], timeout=5)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, token


def test_token_format_is_documented_hmac(stub):
    # README documents the format; a token minted here, without the CLI, is accepted.
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    claims = {"shop": SHOP, "staff": "py", "role": "agent", "exp": int(time.time() * 1000) + 60_000}
    body = "cm1." + b64(json.dumps(claims).encode())
    token = body + "." + b64(hmac.new(AUTH_KEY.encode(), body.encode(), hashlib.sha256).digest())
    reply = stub.Echo(echo_pb2.EchoRequest(shop_id=SHOP), metadata=[("authorization", "Bearer " + token)], timeout=5)
    assert reply.caller_staff_id == "py"


def test_another_shops_id_is_permission_denied(stub, auth):
    err = call_error(stub.Echo, echo_pb2.EchoRequest(shop_id="someone-elses-shop"), metadata=auth, timeout=5)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "someone-elses-shop" in err.details()


def test_missing_shop_id_is_invalid_argument(stub, auth):
    err = call_error(stub.Echo, echo_pb2.EchoRequest(text="no shop"), metadata=auth, timeout=5)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "shop_id" in err.details()


def test_service_token_for_every_shop(stub):
    token = mint_token("*", staff="", role="service")
    reply = stub.Echo(echo_pb2.EchoRequest(shop_id="any-shop"), metadata=[("authorization", "Bearer " + token)], timeout=5)
    assert reply.caller_shop_id == "*"


def test_strings_round_trip_exactly(stub, auth):
    samples = [
        "Chị ơi, áo size L còn không ạ? Giao gấp về Q.1, TP.HCM nha 🙏",
        "😀🇻🇳👨‍👩‍👧‍👦 ∑ ∞ 中文 ทดสอบ",
        "đ" * 32768,  # 64 KiB of two-byte characters
        "x" * 65536,
    ]
    for text in samples:
        reply = stub.Echo(echo_pb2.EchoRequest(shop_id=SHOP, text=text, words=[text[:50], ""], labels={text[:20]: text[:30]}),
                          metadata=auth, timeout=5)
        assert reply.text == text
        assert list(reply.words) == [text[:50], ""]
        assert dict(reply.labels) == {text[:20]: text[:30]}


def test_embedded_nul_is_invalid_argument_not_cut(stub, auth):
    for request in (echo_pb2.EchoRequest(shop_id=SHOP, text="Giao gấp\x00 hôm nay"),
                    echo_pb2.EchoRequest(shop_id=SHOP, words=["ok", "a\x00b"]),
                    echo_pb2.EchoRequest(shop_id=SHOP, labels={"k": "v\x00"})):
        err = call_error(stub.Echo, request, metadata=auth, timeout=5)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "NUL" in err.details()


def test_invalid_utf8_is_invalid_argument(shared_echo_server, auth):
    # Field 2 (text) with the bytes C3 28: not UTF-8. Sent raw, as a non-conforming client could.
    channel = grpc.insecure_channel(shared_echo_server.address)
    call = channel.unary_unary("/chatmesh.testing.v1.EchoService/Echo",
                               request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
    shop = SHOP.encode()
    raw = b"\x0a" + bytes([len(shop)]) + shop + b"\x12\x02\xc3\x28"
    err = call_error(call, raw, metadata=auth, timeout=5)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in err.details()
    channel.close()


def test_undecodable_protobuf_is_internal_and_server_survives(shared_echo_server, auth, stub):
    channel = grpc.insecure_channel(shared_echo_server.address)
    call = channel.unary_unary("/chatmesh.testing.v1.EchoService/Echo",
                               request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
    err = call_error(call, b"\x0a\xff\xff\xff\xff\x0f", metadata=auth, timeout=5)
    assert err.code() == grpc.StatusCode.INTERNAL
    channel.close()
    assert stub.Echo(echo_pb2.EchoRequest(shop_id=SHOP, text="still here"), metadata=auth, timeout=5).text == "still here"


def test_custom_metadata_is_not_lost(stub, auth):
    reply = stub.Echo(echo_pb2.EchoRequest(shop_id=SHOP, text="m"), metadata=auth + [("x-request-id", "abc-123")], timeout=5)
    assert reply.text == "m"


def test_health_check_needs_no_token(shared_echo_server):
    channel = grpc.insecure_channel(shared_echo_server.address)
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="chatmesh.testing.v1.EchoService"), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


def test_relay_forwards_token_and_deadline(shared_echo_server):
    from conftest import EchoServer
    front = EchoServer("--relay-to", shared_echo_server.address)
    try:
        channel = grpc.insecure_channel(front.address)
        stub = echo_pb2_grpc.EchoServiceStub(channel)
        token = mint_token(SHOP, staff="relay-staff")
        reply = stub.Relay(echo_pb2.EchoRequest(shop_id=SHOP, text="via front"),
                           metadata=[("authorization", "Bearer " + token)], timeout=2)
        assert reply.text == "via front"
        assert reply.caller_staff_id == "relay-staff"
        assert 0 < reply.deadline_remaining_ms <= 2000
        # The downstream's deadline is the caller's: a slow downstream makes the whole call expire.
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.Relay(echo_pb2.EchoRequest(shop_id=SHOP, delay_ms=5000),
                       metadata=[("authorization", "Bearer " + token)], timeout=0.4)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 2.0
        channel.close()
    finally:
        front.stop_cleanly()
