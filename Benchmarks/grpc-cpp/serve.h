// What both grpc C++ peers of the suite do around their service: listen on HOST:PORT (argv[1]),
// print "listening on HOST:PORT" once bound — tests and scripts/bench wait for that line, as they
// do for the ChatMesh executables — and serve until killed.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

inline int ServeUntilKilled(int argc, char** argv, grpc::Service* service, const char* name) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
    return 2;
  }
  const std::string address = argv[1];
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound == 0) {
    std::fprintf(stderr, "%s: cannot listen on %s\n", name, address.c_str());
    return 1;
  }
  std::printf("listening on %s\n", address.c_str());
  std::fflush(stdout);
  server->Wait();
  return 0;
}
