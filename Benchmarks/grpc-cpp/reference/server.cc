// The grpc C++ reference peer of scripts/bench: Debian's libgrpc++ (1.51),
// callback API, insecure h2c, one trivial unary RPC. It is measured in the same
// run as ChatMesh so that the table's ratio holds on a noisy machine.
#include <string>

#include <grpcpp/grpcpp.h>

#include "reference.grpc.pb.h"
#include "serve.h"

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
  ReferenceService service;
  return ServeUntilKilled(argc, argv, &service, "reference");
}
