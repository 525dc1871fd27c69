#!/usr/bin/env bash
# test_compose_run - compose.yml run for real, under Debian's podman and
# podman-compose (no Docker engine runs on these machines):
#
#   test_compose_run.sh SOURCE_DIR      (./nearchat test compose runs it)
#
#   1. the base image: debian:bookworm-slim made by debootstrap (minbase,
#      from the Debian mirror the host's apt uses) and imported, once;
#   2. the Dockerfile built into nearchat:compose-test (podman's layer cache
#      makes a rebuild with unchanged packages a build of our sources only);
#   3. `podman-compose up -d` of compose.yml and compose.tls.yml, with a
#      self-signed certificate made here by openssl mounted into the edge,
#      the edge's ports published on 127.0.0.1 only; the gateway's /healthz
#      through the edge answers ok with a shard, advertising wss:// over
#      https and ws:// over http;
#   4. a chat over wss through the edge: two WebSocket clients join a room,
#      one sends, the other receives (tests/compose_chat.js, the certificate
#      checked against the one made here); plain ws through the edge too;
#   5. kill -9 of the roomd and of the gateway daemons (a crash, which ends
#      the container): restart: unless-stopped brings each back, /healthz is
#      ok and a chat works again;
#   6. one more shard: a second `podman run` of roomd on compose's network
#      (podman-compose 1.0.3 has no --scale), listed by /healthz;
#   7. down: no container of the project left, its volumes, network and the
#      extra shard removed. The images stay, as the cache of the next run.
#
# Podman reads only the project's settings (tests/podman/, written into
# the state directory with its paths): CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF point there, never
# at the machine's /etc/containers. The images live in NEARCHAT_PODMAN_DIR
# (default SOURCE_DIR/.podman, git-ignored); podman's run state in
# /run/nearchat-podman-HASH. Published ports: COMPOSE_HTTP_PORT and
# COMPOSE_HTTPS_PORT, free ones chosen by the kernel if unset. Every wait is
# bounded; each failure says what is wrong; exit 1 if any check failed.
set -euo pipefail
source_dir=$(cd "${1:-$(dirname "$0")/..}" && pwd)
cd "$source_dir"

tag=compose-test
image=localhost/nearchat:$tag
base=docker.io/library/debian:bookworm-slim

failed=0
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
ok() { echo "ok   $*"; }
step() { printf '== %s (%ds)\n' "$*" "$SECONDS"; }
# A failure after which nothing else can be checked: the trap cleans up.
die() { echo "FAIL $*"; exit 1; }

for tool in podman podman-compose debootstrap openssl curl node; do
    command -v "$tool" >/dev/null \
        || die "$tool is missing (./nearchat test compose installs it)"
done
[ -d bench/node_modules/ws ] || die "bench/node_modules/ws is missing (./nearchat test compose installs it)"
[ "$(id -u)" -eq 0 ] || die "podman runs here as root (rootful: CNI networks, published ports)"

# --- podman's settings, the project's own ---------------------------------------
state=${NEARCHAT_PODMAN_DIR:-$source_dir/.podman}
mkdir -p "$state/conf" "$state/cni"
state=$(cd "$state" && pwd)
hash=$(printf '%s' "$state" | cksum | cut -d' ' -f1)
run=/run/nearchat-podman-$hash
mkdir -p "$run"
# The project (its containers' and network's names) is this checkout's: two
# checkouts' runs on one machine have separate stores, but CNI's addresses
# and bridges are the machine's.
project=nearchat-test-$hash
for conf in containers storage; do
    sed -e "s|@STATE@|$state|g" -e "s|@RUN@|$run|g" \
        "tests/podman/$conf.conf.in" >"$state/conf/$conf.conf"
done
export CONTAINERS_CONF=$state/conf/containers.conf
export CONTAINERS_STORAGE_CONF=$state/conf/storage.conf
export CONTAINERS_REGISTRIES_CONF=$source_dir/tests/podman/registries.conf

work=$(mktemp -d)
compose=(podman-compose -p "$project" -f compose.yml -f compose.tls.yml)
shard2=${project}_roomd_extra

# Whatever the project made, gone: containers (running or not) with their
# anonymous volumes (the image's VOLUME /data: podman-compose's down leaves
# them), the extra shard, the named volumes, the network, and the working
# containers of a build that was interrupted. Run before (a run killed
# half-way) and after.
clean() {
    local ids
    podman rm -f -v -t 5 "$shard2" >/dev/null 2>&1 || true
    ids=$(podman ps -aq --filter "label=io.podman.compose.project=$project" 2>/dev/null || true)
    [ -z "$ids" ] || podman rm -f -v -t 5 $ids >/dev/null 2>&1 || true
    "${compose[@]}" down -v -t 5 >/dev/null 2>&1 || true
    ids=$(podman ps -a --external --format '{{.ID}} {{.Command}}' 2>/dev/null | awk '$2 == "buildah" { print $1 }')
    [ -z "$ids" ] || podman rm -f $ids >/dev/null 2>&1 || true
    ids=$(podman volume ls -q --filter "label=io.podman.compose.project=$project" 2>/dev/null || true)
    [ -z "$ids" ] || podman volume rm -f $ids >/dev/null 2>&1 || true
    podman network rm -f "${project}_default" >/dev/null 2>&1 || true
}
on_exit() {
    local status=$?
    if [ "$failed" -gt 0 ] || [ "$status" -ne 0 ]; then
        for c in $(podman ps -a --format '{{.Names}}' \
                       --filter "label=io.podman.compose.project=$project" 2>/dev/null) "$shard2"; do
            podman container exists "$c" 2>/dev/null || continue
            echo "--- podman logs $c (last 20 lines)"
            podman logs --tail 20 "$c" 2>&1 || true
        done
    fi
    clean
    rm -rf "$work"
    exit "$status"
}
trap on_exit EXIT
trap 'exit 1' INT TERM
clean

# --- 1. the base image -------------------------------------------------------
# debian_mirror SUITE: the mirror the host's apt uses for SUITE (deb822 or
# one-line sources), or nothing.
debian_mirror() {
    local mirror
    mirror=$(awk -v suite="$1" '/^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) print u }' \
                 /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$mirror" ] || mirror=$(awk -v suite="$1" '$1 == "deb" && $3 == suite { print $2 }' \
                                     /etc/apt/sources.list 2>/dev/null | head -n 1)
    echo "$mirror"
}
if ! podman image exists "$base"; then
    mirror=$(debian_mirror bookworm)
    mirror=${mirror:-http://deb.debian.org/debian}
    step "debootstrap bookworm (minbase) from $mirror"
    timeout 600 debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log"; die "debootstrap failed"; }
    # As the official slim image: bookworm, its updates and security, no
    # package lists or caches kept.
    security=$(debian_mirror bookworm-security)
    security=${security:-http://deb.debian.org/debian-security}
    cat >"$work/rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
EOF
    rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin \
           "$work/rootfs/var/cache/apt/archives/"*.deb
    tar -C "$work/rootfs" -c . | podman import -q --change 'CMD ["bash"]' - "$base" >/dev/null \
        || die "podman import of the debootstrapped tree failed"
    rm -rf "$work/rootfs"
fi
ok "base image $base ($(podman image inspect --format '{{.Size}}' "$base") bytes)"

# --- 2. the image ---------------------------------------------------------------
step "podman build -t $image"
build_started=$SECONDS
old_id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
if ! timeout 900 podman build --pull=never -t "$image" . >"$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log"
    die "podman build of the Dockerfile failed"
fi
ok "the Dockerfile builds ($((SECONDS - build_started)) s)"
# The cache is this build's steps (each "--> ID" of its log, cache hits
# included: the package layers of both stages): every other untagged image,
# a replaced nearchat image or an earlier build stage, goes. Not `podman
# image prune`, which would take the build stage's package layer too (no
# tagged image is made from it). A parent goes once its children have.
new_id=$(podman image inspect --format '{{.Id}}' "$image")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    podman rmi "$old_id" >/dev/null 2>&1 || true
fi
keep=" $(grep -oE '^--> (Using cache )?[0-9a-f]{11,}' "$work/build.log" | awk '{ print substr($NF, 1, 11) }' | tr '\n' ' ') "
for _ in 1 2 3; do
    for id in $(podman images -a --format '{{.ID}} {{.Repository}}' | awk '$2 == "<none>" { print $1 }'); do
        case "$keep" in *" ${id:0:11} "*) continue ;; esac
        podman rmi "$id" >/dev/null 2>&1 || true
    done
done
cached=$(grep -c '^--> Using cache' "$work/build.log" || true)
steps=$(grep -cE 'STEP [0-9]+/' "$work/build.log" || true)
ok "image $image: $cached of $steps steps from the cache"

# --- 3. up, with TLS at the edge --------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
http_port=${COMPOSE_HTTP_PORT:-$(free_port)}
https_port=${COMPOSE_HTTPS_PORT:-$(free_port)}
mkdir -p "$work/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null \
    || die "openssl could not make a certificate"
# The edge runs as the image's user nearchat, not as the owner of the key.
chmod 0755 "$work/tls"
chmod 0644 "$work/tls/key.pem" "$work/tls/cert.pem"

export NEARCHAT_TAG=$tag HTTP_PUBLISH=127.0.0.1:$http_port HTTPS_PUBLISH=127.0.0.1:$https_port
export TLS_DIR=$work/tls
step "podman-compose up -d (http 127.0.0.1:$http_port, https 127.0.0.1:$https_port)"
if ! timeout 300 "${compose[@]}" up -d --no-build >"$work/up.log" 2>&1; then
    tail -n 30 "$work/up.log"
    die "podman-compose up -d failed"
fi
ok "podman-compose up -d"

https=https://127.0.0.1:$https_port
http=http://127.0.0.1:$http_port
cacert=(--cacert "$work/tls/cert.pem")

# healthz URL CONDITION SECONDS: poll /healthz until the python CONDITION on
# its JSON (h) holds, at most SECONDS; the last answer is in $work/healthz.
healthz() {
    local url=$1 condition=$2 limit=$3 start=$SECONDS
    while [ $((SECONDS - start)) -lt "$limit" ]; do
        if curl -sS --max-time 3 "${cacert[@]}" -o "$work/healthz" "$url/healthz" 2>/dev/null \
           && python3 -c 'import json, sys; h = json.load(open(sys.argv[1])); sys.exit(0 if eval(sys.argv[2]) else 1)' \
                  "$work/healthz" "$condition" 2>/dev/null; then
            return 0
        fi
        sleep 1
    done
    return 1
}
ready='h["status"] == "ok" and h["stored"] == "up" and len(h["shards"]) >= 1'
if healthz "$https" "$ready" 120; then
    ok "/healthz over https through the edge: ok, stored up, shards $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["shards"])' "$work/healthz")"
else
    die "/healthz over https did not answer ok within 120 s (last: $(cat "$work/healthz" 2>/dev/null))"
fi
# The gateway holds no TLS; it learns the client's scheme from the edge
# (X-Forwarded-Proto) and advertises the WebSocket to match.
if healthz "$https" 'h["websocketEndpoint"].startswith("wss://")' 10; then
    ok "/healthz over https advertises $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["websocketEndpoint"])' "$work/healthz")"
else
    fail "/healthz over https does not advertise wss:// (last: $(cat "$work/healthz" 2>/dev/null))"
fi
if healthz "$http" "$ready"' and h["websocketEndpoint"].startswith("ws://")' 10; then
    ok "/healthz over plain http through the edge, advertising $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["websocketEndpoint"])' "$work/healthz")"
else
    fail "/healthz over plain http did not answer ok with a ws:// endpoint (last: $(cat "$work/healthz" 2>/dev/null))"
fi

# Only the edge is published, and only on loopback.
published=$(podman ps --filter "label=io.podman.compose.project=$project" \
                --format '{{.Names}} {{.Ports}}' | awk 'NF > 1')
if [ "$(printf '%s\n' "$published" | grep -c .)" -eq 1 ] \
   && printf '%s' "$published" | grep -q "_edge_" \
   && ! printf '%s' "$published" | grep -q '0\.0\.0\.0'; then
    ok "only the edge publishes ports, on 127.0.0.1: $published"
else
    fail "published ports are not the edge's alone on loopback: $published"
fi

# --- 4. a chat over wss through the edge --------------------------------------
chat() {   # chat URL WHAT
    if NODE_PATH=bench/node_modules timeout 30 node tests/compose_chat.js "$1" "$work/tls/cert.pem" \
           >"$work/chat.log" 2>&1; then
        ok "$2: $(tail -n 1 "$work/chat.log")"
    else
        fail "$2: $(tail -n 5 "$work/chat.log" | tr '\n' ' ')"
    fi
}
chat "$https" "a chat over wss through the edge"
chat "$http" "a chat over plain ws through the edge"

# --- 5. restart: unless-stopped --------------------------------------------------
# A daemon that dies (kill -9 of its process, from the host: a crash) ends
# its container (init: true, the daemon its init's only child), and the
# policy starts it again: running, with a new start time, within 60 s.
# Not `podman kill`: podman counts that as stopped by the user, which
# unless-stopped leaves stopped.
restarted() {   # restarted CONTAINER
    local container=$1 before init daemon start=$SECONDS
    before=$(podman inspect --format '{{.State.StartedAt}}' "$container")
    init=$(podman inspect --format '{{.State.Pid}}' "$container")
    daemon=$(pgrep -P "$init" | head -n 1)
    [ -n "$daemon" ] || { echo "no daemon under $container's init ($init)"; return 1; }
    kill -KILL "$daemon"
    while [ $((SECONDS - start)) -lt 60 ]; do
        if [ "$(podman inspect --format '{{.State.Running}}' "$container")" = true ] \
           && [ "$(podman inspect --format '{{.State.StartedAt}}' "$container")" != "$before" ]; then
            return 0
        fi
        sleep 1
    done
    return 1
}
# A shard's id (SHARD_ID auto) is its container's hostname and its pid
# there: the gateway keeps routing to a dead one until SHARD_TIMEOUT_MS
# without heartbeats, so after the roomd's restart /healthz must list the
# new one and no longer the old one (if the pid differs).
shard_id() {   # shard_id CONTAINER
    local pid
    pid=$(podman top "$1" pid comm | awk '$2 == "roomd" { print $1 }')
    echo "$(podman inspect --format '{{.Config.Hostname}}' "$1")-$pid"
}
for service in roomd gateway; do
    container=${project}_${service}_1
    [ "$service" = roomd ] && old_shard=$(shard_id "$container")
    step "kill -9 of $service in $container"
    if restarted "$container"; then
        ok "$service: killed, brought back by restart: unless-stopped"
    else
        fail "$service: not running again 60 s after its kill -9"
        continue
    fi
    condition=$ready
    if [ "$service" = roomd ]; then
        new_shard=$(shard_id "$container")
        condition="$ready and '$new_shard' in h['shards'] and ('$new_shard' == '$old_shard' or '$old_shard' not in h['shards'])"
    fi
    if healthz "$https" "$condition" 60; then
        ok "$service: /healthz ok again after the restart"
    else
        fail "$service: /healthz not ok 60 s after the restart (last: $(cat "$work/healthz" 2>/dev/null))"
    fi
    chat "$https" "$service: a chat over wss after the restart"
done

# --- 6. one more shard ---------------------------------------------------------------
# podman-compose 1.0.3 has no --scale: the second shard is the roomd
# service's container run again by hand, with its settings, on its network.
step "podman run of a second roomd"
first=${project}_roomd_1
run_env=()
while IFS= read -r line; do
    case "$line" in PATH=*|HOSTNAME=*|HOME=*|container=*|"") continue ;; esac
    run_env+=(-e "$line")
done < <(podman inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$first")
keys_volume=$(podman inspect --format '{{range .Mounts}}{{if eq .Destination "/keys"}}{{.Name}}{{end}}{{end}}' "$first")
if ! podman run -d --name "$shard2" --hostname roomd-extra --init \
        --network "${project}_default" -v "$keys_volume:/keys:ro" "${run_env[@]}" \
        "$image" roomd >/dev/null 2>"$work/run.err"; then
    fail "podman run of a second roomd: $(cat "$work/run.err")"
elif healthz "$https" 'len(h["shards"]) >= 2 and any(s.startswith("roomd-extra-") for s in h["shards"])' 60; then
    ok "a second shard joined: /healthz lists $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["shards"])' "$work/healthz")"
else
    fail "the second shard is not in /healthz within 60 s (last: $(cat "$work/healthz" 2>/dev/null))"
fi

# --- 7. down ------------------------------------------------------------------------
step "podman-compose down -v"
podman rm -f -v -t 5 "$shard2" >/dev/null 2>&1 || true
# podman-compose's down removes the containers without their anonymous
# volumes (the image's VOLUME /data), so they go first, by hand.
ids=$(podman ps -aq --filter "label=io.podman.compose.project=$project")
[ -z "$ids" ] || podman stop -t 10 $ids >/dev/null 2>&1 || true
[ -z "$ids" ] || podman rm -v $ids >/dev/null 2>&1 || fail "podman rm -v of the project's containers failed"
"${compose[@]}" down -v -t 10 >"$work/down.log" 2>&1 || fail "podman-compose down failed: $(tail -n 5 "$work/down.log")"
podman network rm -f "${project}_default" >/dev/null 2>&1 || true
left=$(podman ps -a --filter "label=io.podman.compose.project=$project" --format '{{.Names}}')
volumes=$(podman volume ls -q)
networks=$(podman network ls -q --filter "name=^${project}_")
if [ -z "$left$volumes$networks" ] && ! podman container exists "$shard2"; then
    ok "down: no container, volume (named or anonymous) or network of the project left"
else
    fail "down left containers [$left] volumes [$volumes] networks [$networks]"
fi

echo "$failed failed (${SECONDS}s)"
[ "$failed" -eq 0 ]
