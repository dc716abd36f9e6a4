// The grpc C++ reference peer of scripts/bench: Debian's libgrpc++ (1.51),
// callback API, insecure h2c, one trivial unary RPC. It is measured in the same
// run as ChatMesh so that the table's ratio holds on a noisy machine.
#include <cstdio>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "reference.grpc.pb.h"

namespace ref = chatmesh::bench::reference::v1;

class ReferenceService final : public ref::Reference::CallbackService {
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context, const ref::CheckRequest*,
                                  ref::CheckResponse* response) override {
    response->set_status(ref::CheckResponse::SERVING);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
    return 2;
  }
  const std::string address = argv[1];
  ReferenceService service;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::fprintf(stderr, "reference: cannot listen on %s\n", address.c_str());
    return 1;
  }
  // scripts/bench waits for this line, as it does for the ChatMesh services.
  std::printf("listening on %s\n", address.c_str());
  std::fflush(stdout);
  server->Wait();
  return 0;
}
