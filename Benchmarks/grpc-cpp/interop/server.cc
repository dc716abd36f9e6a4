// grpc's interop service (grpc.testing.TestService) on Debian's libgrpc++ (1.51): the peer that
// ChatMesh's own client (`interop-client`) is checked against, case by case, and the reference for
// scripts/bench's streaming rows. Built from proto/grpc/testing by this directory's Makefile.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "grpc/testing/test.grpc.pb.h"
#include "serve.h"

// What grpc's own interop server asks to check expect_compressed: exported by libgrpc (C++ linkage),
// declared in grpc's internal call_test_only.h, which Debian does not ship.
uint32_t grpc_call_test_only_get_message_flags(grpc_call* call);
grpc_compression_algorithm grpc_call_test_only_get_compression_algorithm(grpc_call* call);

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;
namespace t = grpc::testing;

namespace {

void EchoMetadata(ServerContext* context) {
  const auto& sent = context->client_metadata();
  auto initial = sent.find("x-grpc-test-echo-initial");
  if (initial != sent.end()) {
    context->AddInitialMetadata("x-grpc-test-echo-initial", std::string(initial->second.data(), initial->second.size()));
  }
  auto trailing = sent.find("x-grpc-test-echo-trailing-bin");
  if (trailing != sent.end()) {
    context->AddTrailingMetadata("x-grpc-test-echo-trailing-bin", std::string(trailing->second.data(), trailing->second.size()));
  }
}

void Fill(t::Payload* payload, int size) {
  payload->set_type(t::COMPRESSABLE);
  payload->set_body(std::string(size > 0 ? size : 0, '\0'));
}

// Whether the request arrived compressed, as grpc's own interop server tells: the message's
// GRPC_WRITE_INTERNAL_COMPRESS flag, or the call's incoming grpc-encoding.
bool WasCompressed(ServerContext* context) {
  return (grpc_call_test_only_get_message_flags(context->c_call()) & 0x80000000u) != 0 ||
         grpc_call_test_only_get_compression_algorithm(context->c_call()) != GRPC_COMPRESS_NONE;
}

// expect_compressed, when set, must match how the request arrived.
Status CheckCompression(ServerContext* context, bool present, bool expected) {
  if (present && expected != WasCompressed(context)) {
    return Status(StatusCode::INVALID_ARGUMENT, expected ? "expected a compressed request" : "expected an uncompressed request");
  }
  return Status::OK;
}

Status Requested(const t::EchoStatus& status) {
  return Status(static_cast<StatusCode>(status.code()), status.message());
}

// Answers one StreamingOutputCallRequest: its responses (each compressed or not, as asked), then its status.
template <typename Writer>
Status Respond(ServerContext* context, const t::StreamingOutputCallRequest& request, Writer* writer) {
  for (const auto& parameters : request.response_parameters()) {
    if (parameters.interval_us() > 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(parameters.interval_us()));
    }
    t::StreamingOutputCallResponse response;
    Fill(response.mutable_payload(), parameters.size());
    grpc::WriteOptions options;
    if (!parameters.compressed().value()) options.set_no_compression();
    if (!writer->Write(response, options)) return Status(StatusCode::CANCELLED, "the client went away");
  }
  if (request.has_response_status() && request.response_status().code() != 0) return Requested(request.response_status());
  return Status::OK;
}

bool AnyCompressed(const t::StreamingOutputCallRequest& request) {
  for (const auto& parameters : request.response_parameters()) {
    if (parameters.compressed().value()) return true;
  }
  return false;
}

class TestService final : public t::TestService::Service {
  Status EmptyCall(ServerContext* context, const t::Empty*, t::Empty*) override {
    EchoMetadata(context);
    return Status::OK;
  }

  Status UnaryCall(ServerContext* context, const t::SimpleRequest* request, t::SimpleResponse* response) override {
    EchoMetadata(context);
    Status compression = CheckCompression(context, request->has_expect_compressed(), request->expect_compressed().value());
    if (!compression.ok()) return compression;
    if (request->response_compressed().value()) context->set_compression_algorithm(GRPC_COMPRESS_GZIP);
    if (request->has_response_status() && request->response_status().code() != 0) return Requested(request->response_status());
    Fill(response->mutable_payload(), request->response_size());
    return Status::OK;
  }

  Status CacheableUnaryCall(ServerContext* context, const t::SimpleRequest* request, t::SimpleResponse* response) override {
    return UnaryCall(context, request, response);
  }

  Status StreamingOutputCall(ServerContext* context, const t::StreamingOutputCallRequest* request,
                             grpc::ServerWriter<t::StreamingOutputCallResponse>* writer) override {
    EchoMetadata(context);
    if (AnyCompressed(*request)) context->set_compression_algorithm(GRPC_COMPRESS_GZIP);
    return Respond(context, *request, writer);
  }

  Status StreamingInputCall(ServerContext* context, grpc::ServerReader<t::StreamingInputCallRequest>* reader,
                            t::StreamingInputCallResponse* response) override {
    EchoMetadata(context);
    t::StreamingInputCallRequest request;
    int total = 0;
    while (reader->Read(&request)) {
      Status compression = CheckCompression(context, request.has_expect_compressed(), request.expect_compressed().value());
      if (!compression.ok()) return compression;
      total += request.payload().body().size();
    }
    response->set_aggregated_payload_size(total);
    return Status::OK;
  }

  Status FullDuplexCall(ServerContext* context,
                        grpc::ServerReaderWriter<t::StreamingOutputCallResponse, t::StreamingOutputCallRequest>* stream) override {
    EchoMetadata(context);
    t::StreamingOutputCallRequest request;
    while (stream->Read(&request)) {
      Status status = Respond(context, request, stream);
      if (!status.ok()) return status;
    }
    return Status::OK;
  }

  Status HalfDuplexCall(ServerContext* context,
                        grpc::ServerReaderWriter<t::StreamingOutputCallResponse, t::StreamingOutputCallRequest>* stream) override {
    EchoMetadata(context);
    std::vector<t::StreamingOutputCallRequest> all;
    t::StreamingOutputCallRequest request;
    while (stream->Read(&request)) all.push_back(request);
    for (const auto& each : all) {
      Status status = Respond(context, each, stream);
      if (!status.ok()) return status;
    }
    return Status::OK;
  }
};

}  // namespace

int main(int argc, char** argv) {
  TestService service;
  return ServeUntilKilled(argc, argv, &service, "interop server");
}
