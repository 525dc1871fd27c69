#!/usr/bin/env bash
# test_compose - compose.yml is valid and agrees with the binaries.
#
#   test_compose.sh SOURCE_DIR BIN_DIR
#
# Debian's docker-compose must accept compose.yml (no Docker engine is
# needed for `config`). Then, for every service of the resolved file: its
# command is one of our binaries; every variable it sets is one that binary
# reads (its --help lists it); every variable the binary reads is written
# out (so an operator sees every default); and the binary accepts the
# values as they are (--check). The Dockerfile's runtime stage copies
# every binary a service runs. Each failure says what is wrong.
set -euo pipefail
source_dir=$1
bin_dir=$2
cd "$source_dir"

command -v docker-compose >/dev/null \
    || { echo "FAIL docker-compose is missing (./nearchat installs Debian's docker-compose)"; exit 1; }
resolved=$(mktemp)
trap 'rm -f "$resolved"' EXIT
if ! docker-compose -f compose.yml config >"$resolved"; then
    echo "FAIL docker-compose does not accept compose.yml"
    exit 1
fi
echo "ok docker-compose accepts compose.yml"

# The resolved file as lines: SERVICE COMMAND, then SERVICE NAME=VALUE.
# (Debian's python3 has python3-yaml; docker-compose itself needs it.)
listing=$(/usr/bin/python3 - "$resolved" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
for name, service in sorted(config["services"].items()):
    command = service.get("command") or []
    print(name, "command", command[0] if command else "")
    for key, value in sorted((service.get("environment") or {}).items()):
        print(name, "env", "%s=%s" % (key, "" if value is None else value))
PY
)

failed=0
fail() { echo "FAIL $*"; failed=$((failed + 1)); }

services=$(awk '$2 == "command" {print $1}' <<<"$listing")
[ -n "$services" ] || fail "no services"
for expected in stored gateway roomd reaper; do
    grep -qx "$expected" <<<"$services" || fail "no service $expected"
done

for service in $services; do
    binary=$(awk -v s="$service" '$1 == s && $2 == "command" {print $3}' <<<"$listing")
    if [ -z "$binary" ] || [ ! -x "$bin_dir/$binary" ]; then
        fail "$service: command '$binary' is none of ours"
        continue
    fi
    grep -q "build/bin/$binary\b" Dockerfile || fail "$service: the Dockerfile does not copy $binary"
    help=$("$bin_dir/$binary" --help)
    reads=$(awk '$1 ~ /^--/ && $2 ~ /^[A-Z_]+$/ {print $2}' <<<"$help" | sort)
    sets=$(awk -v s="$service" '$1 == s && $2 == "env" {sub(/=.*/, "", $3); print $3}' <<<"$listing" | sort)
    for name in $sets; do
        grep -qx "$name" <<<"$reads" || fail "$service: $binary does not read $name"
    done
    for name in $reads; do
        grep -qx "$name" <<<"$sets" || fail "$service: $name is not written out"
    done
    # The values as compose gives them, through the binary's own checks.
    env_args=()
    while IFS= read -r pair; do env_args+=("$pair"); done \
        < <(awk -v s="$service" '$1 == s && $2 == "env" {sub(/^[^ ]+ env /, ""); print}' <<<"$listing")
    if ! out=$(env -i "${env_args[@]}" "$bin_dir/$binary" --check 2>&1); then
        fail "$service: $binary refuses its settings: $out"
    fi
    echo "ok $service runs $binary with $(wc -w <<<"$sets") settings it reads and accepts"
done

echo "$failed failed"
[ "$failed" -eq 0 ]
