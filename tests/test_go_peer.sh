#!/bin/bash
# test_go_peer: the Go peer (bench/peers/go-peer) builds and serves the
# subset the load generator needs: a small fan-out through it delivers
# every message once, with no error. Its figures are not asserted.
# usage: test_go_peer.sh BIN_DIR
set -u
bin=$1
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$bin/go-peer" ] || fail "$bin/go-peer was not built (golang-go and golang-github-gorilla-websocket-dev)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out=$(mktemp -d)
"$bin/go-peer" --port "$port" 2>"$out/peer.log" & peer=$!
trap 'kill -TERM $peer 2>/dev/null; wait $peer 2>/dev/null; rm -rf "$out"' EXIT
healthy() {
    python3 -c 'import sys, urllib.request
sys.exit(0 if b"ok" in urllib.request.urlopen(sys.argv[1], timeout=2).read() else 1)' \
        "http://127.0.0.1:$port/healthz" 2>/dev/null
}
for _ in $(seq 1 50); do
    healthy && break
    sleep 0.1
done
healthy || fail "go-peer did not answer /healthz: $(cat "$out/peer.log")"
timeout 60 "$bin/nearchat-load" fanout --port "$port" --rooms 10 --members 5 --rate 5 \
    --seconds 2 --label go-peer --json "$out/fanout.json" || fail "nearchat-load failed"
python3 - "$out/fanout.json" <<'PY' || exit 1
import json, sys
r = json.load(open(sys.argv[1]))
print({k: r[k] for k in ("sent", "delivered", "expected", "missing", "duplicated", "errors", "failed_sockets")})
ok = r["sent"] > 0 and r["delivered"] == r["expected"] > 0 and r["missing"] == 0 \
     and r["duplicated"] == 0 and r["errors"] == 0 and r["failed_sockets"] == 0
print("ok" if ok else "FAIL: not every message was delivered once")
sys.exit(0 if ok else 1)
PY
