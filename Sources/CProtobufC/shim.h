#include <sys/types.h>
#include <protobuf-c/protobuf-c.h>
