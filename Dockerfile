# One image for every ChatMesh executable: conversation-svc, order-svc, loyalty-svc, messaging-svc,
# gateway, and the chatmesh CLI (health checks, events, seed). docker-compose.yml picks one per service.
#
#   docker build -t chatmesh .
#   docker run --rm chatmesh chatmesh --help

# Build: the Swift toolchain and the C libraries' -dev packages.
FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends pkg-config libnghttp2-dev libprotobuf-c-dev libsqlite3-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN swift package resolve
# The Swift runtime and Foundation linked in, so the run stage needs no toolchain (scripts/image-check builds them
# on the host with the same script, and gives them to the run stage with `--build-context build=DIR`).
RUN scripts/build-executables /out

# Run: a slim Debian with only the runtime libraries, as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libnghttp2-14 libprotobuf-c1 libsqlite3-0 zlib1g ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 chatmesh \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --create-home chatmesh
COPY --from=build /out/ /usr/local/bin/
USER chatmesh
WORKDIR /data
# SQLite (no DATABASE_URL) keeps its files here; mount a volume to keep them.
ENV CHATMESH_DATA_DIR=/data LOG_LEVEL=info
EXPOSE 50050 50051 50052 50053 50054
CMD ["chatmesh", "--help"]
