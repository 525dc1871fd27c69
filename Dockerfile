# nearchat: one image for every daemon (stored, gateway, roomd, reaper), the
# edge (nearchat-edge: Debian's HAProxy in front of the gateway) and the
# operators' tools (nearchat-spy, nearchat-ping, nearchat-keys); compose.yml
# picks the daemon with each service's command. Libraries come from Debian's
# packages.

# --- build ------------------------------------------------------------------
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libzmq3-dev libczmq-dev libcivetweb-dev libmsgpack-dev liblmdb-dev uuid-dev \
      libjansson-dev libjwt-dev libwslay-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build build -j "$(nproc)" \
      --target stored gateway roomd reaper nearchat-spy nearchat-ping nearchat-keys

# --- run --------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libzmq5 libczmq4 libcivetweb1 libmsgpackc2 liblmdb0 libuuid1 libjansson4 libjwt0 libwslay1 libssl3 \
      haproxy curl lmdb-utils ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /data --shell /usr/sbin/nologin nearchat \
 && mkdir -p /data /keys && chown nearchat:nearchat /data /keys
COPY --from=build /src/build/bin/stored /src/build/bin/gateway /src/build/bin/roomd \
                  /src/build/bin/reaper /src/build/bin/nearchat-spy \
                  /src/build/bin/nearchat-ping /src/build/bin/nearchat-keys /usr/local/bin/
# The edge: a script, and the HAProxy configuration it finds in
# ../share/nearchat.
COPY gateway/edge/nearchat-edge /usr/local/bin/
COPY gateway/edge/nearchat-edge.cfg /usr/local/share/nearchat/
USER nearchat
WORKDIR /data
VOLUME /data
ENV DATA_DIR=/data
EXPOSE 8080 8443
CMD ["gateway"]
