#!/usr/bin/env bash
# test_compose - compose.yml and the Dockerfile agree with the binaries.
#
#   test_compose.sh SOURCE_DIR BIN_DIR
#
# No Docker engine is needed: Debian's docker-compose (1.29) must accept
# compose.yml with `config`, and the file it resolves is checked against
# the binaries in BIN_DIR. For every service:
#   - its command is one of our binaries, and the Dockerfile's last (runtime)
#     stage copies that binary into /usr/local/bin from the build stage,
#     which builds it, or, for a script (nearchat-edge), from the source tree;
#   - every variable it sets is one that binary reads (its --help lists it),
#     and every variable the binary reads is written out, so an operator
#     sees every setting;
#   - a value written as ${NAME:-DEFAULT} overrides NAME itself and DEFAULT
#     is the binary's own default (what --help prints); values written
#     literally are the wiring between containers; a name without a value
#     (passed on from the shell when set there) is a setting whose default
#     is empty (podman-compose 1.0.3 passes ${NAME:-} on literally);
#   - the binary accepts the values as resolved (--check);
#   - every ZeroMQ endpoint names a service that binds that port (never
#     127.0.0.1, which in a container is the container itself; TAP_ENDPOINT
#     alone is local on purpose);
#   - the edge (nearchat-edge) is the only service that publishes ports,
#     they are ports it listens on, on every interface; its EDGE_GATEWAY is
#     a service's port that is served; the runtime stage installs haproxy
#     and the edge's configuration where the script finds it;
#   - restart is unless-stopped; a healthcheck runs programs the image has
#     and asks ports that are served;
#   - DATA_DIR, where set, is a named volume;
#   - KEYS_DIR, where set, is the named volume a one-shot nearchat-keys
#     service (restart no) fills, mounted read-only by the daemons, which
#     depend on that service having completed.
# roomd must scale (--scale roomd=4): no container_name, no published port,
# SHARD_ID auto. The runtime stage runs as a user other than root, and
# .dockerignore keeps the host's build directories out of the context.
# compose.tls.yml, added to compose.yml, gives the edge alone a certificate
# and its key from one mounted directory, and changes nothing else.
# Each failure says what is wrong; the script exits 1 if any check failed.
set -euo pipefail
source_dir=$1
bin_dir=$(cd "$2" && pwd)
cd "$source_dir"

if ! command -v docker-compose >/dev/null; then
    echo "FAIL docker-compose is missing: install Debian's docker-compose (./nearchat build does)"
    exit 1
fi
if ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    echo "FAIL python3-yaml is missing: install Debian's python3-yaml (./nearchat build does)"
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The file as shipped: nothing from the caller's environment or an .env
# file may fill in a ${VAR}.
: >"$work/empty.env"
if ! env -i PATH="$PATH" HOME="$work" \
        docker-compose --env-file "$work/empty.env" -f compose.yml config >"$work/resolved.yml" \
        2>"$work/compose.err"; then
    echo "FAIL docker-compose does not accept compose.yml:"
    cat "$work/compose.err"
    exit 1
fi
echo "ok docker-compose accepts compose.yml"
if ! env -i PATH="$PATH" HOME="$work" TLS_DIR=/etc/nearchat/tls \
        docker-compose --env-file "$work/empty.env" -f compose.yml -f compose.tls.yml config \
        >"$work/resolved-tls.yml" 2>"$work/compose.err"; then
    echo "FAIL docker-compose does not accept compose.yml with compose.tls.yml:"
    cat "$work/compose.err"
    exit 1
fi
echo "ok docker-compose accepts compose.yml with compose.tls.yml"

exec /usr/bin/python3 - "$work/resolved.yml" compose.yml Dockerfile .dockerignore "$bin_dir" \
    "$work/resolved-tls.yml" <<'PY'
import fnmatch, os, re, shlex, subprocess, sys
import yaml

resolved_path, raw_path, dockerfile_path, dockerignore_path, bin_dir, tls_path = sys.argv[1:]
resolved = yaml.safe_load(open(resolved_path))
raw = yaml.safe_load(open(raw_path))       # for the ${NAME:-DEFAULT} forms
services = resolved.get("services") or {}
failed = 0


def fail(what):
    global failed
    failed += 1
    print("FAIL " + what)


def ok(what):
    print("ok " + what)


# --- the binaries' settings, from --help --------------------------------------
# A setting is a line "  --flag   NAME   help" and the next "   default X[, ...]".
def settings_of(binary):
    text = subprocess.run([os.path.join(bin_dir, binary), "--help"], check=True, env={},
                          capture_output=True, text=True).stdout.splitlines()
    settings = {}
    for i, line in enumerate(text):
        m = re.match(r"\s+--[a-z0-9-]+\s+([A-Z][A-Z0-9_]*)\s", line)
        if not m:
            continue
        default = None
        if i + 1 < len(text):
            d = re.match(r"\s+default (.*)$", text[i + 1])
            if d:
                value = d.group(1)
                default = "" if value.startswith('""') else value.split(", ")[0]
        settings[m.group(1)] = default
    return settings


# --- the Dockerfile's stages ---------------------------------------------------
def dockerfile_stages(path):
    """[(name, [instruction lines with continuations joined])]"""
    stages, logical = [], ""
    for line in open(path).read().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue                    # a comment inside a continued line
        logical += line.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        words = logical.split()
        if words[0].upper() == "FROM":
            name = words[3] if len(words) >= 4 and words[2].upper() == "AS" else None
            stages.append((name, []))
        elif stages:
            stages[-1][1].append(logical)
        logical = ""
    return stages


stages = dockerfile_stages(dockerfile_path)
runtime = stages[-1][1] if stages else []
build_stage_names = [name for name, _ in stages[:-1] if name]
built_targets = None                    # None: the build stage builds everything
for _, lines in stages[:-1]:
    for line in lines:
        m = re.search(r"--target((?:\s+[A-Za-z0-9_.-]+)+)", line)
        if m:
            built_targets = (built_targets or set()) | set(m.group(1).split())
copied = set()                          # binaries the runtime stage copies in
scripts = set()                         # ... of them, from the source tree
shared = set()                          # files copied into /usr/local/share/nearchat
for line in runtime:
    words = shlex.split(line)
    if words[0].upper() != "COPY":
        continue
    sources = [w for w in words[1:] if not w.startswith("--")]
    source_stage = next((w.split("=", 1)[1] for w in words[1:] if w.startswith("--from=")), None)
    if len(sources) < 2:
        continue
    if source_stage is None and sources[-1].rstrip("/") == "/usr/local/share/nearchat":
        shared |= {os.path.basename(s) for s in sources[:-1] if os.path.isfile(s)}
    if sources[-1].rstrip("/") != "/usr/local/bin":
        continue
    if source_stage in build_stage_names:
        copied |= {os.path.basename(s) for s in sources[:-1]}
    elif source_stage is None:
        # From the build context: files of this tree (nothing to build).
        names = {os.path.basename(s) for s in sources[:-1] if os.path.isfile(s)}
        copied |= names
        scripts |= names
installed = set()                       # packages the runtime stage installs
for line in runtime:
    if line.split()[0].upper() == "RUN" and "apt-get" in line:
        for m in re.finditer(r"apt-get\s+install\s+([^&;|]*)", line):
            installed |= {w for w in m.group(1).split() if not w.startswith("-")}
user = [line.split()[1] for line in runtime if line.split()[0].upper() == "USER"]
if not user or user[-1] in ("root", "0") or user[-1].startswith("0:"):
    fail("Dockerfile: the runtime stage does not run as a user other than root")
else:
    ok("Dockerfile: the runtime stage runs as %s" % user[-1])


def image_has(binary, service):
    if binary not in copied:
        fail("%s: the Dockerfile's runtime stage does not copy %s into /usr/local/bin" % (service, binary))
        return False
    if built_targets is not None and binary not in built_targets and binary not in scripts:
        fail("%s: the Dockerfile's build stage does not build %s (--target)" % (service, binary))
        return False
    return True


# .dockerignore must keep the host's build trees (their CMakeCache.txt names
# this checkout) out of the image's /src/build, and the compose test's podman
# storage (.podman/, gigabytes) out of the build context.
ignored = [p.strip().rstrip("/") for p in open(dockerignore_path)
           if p.strip() and not p.startswith("#")] if os.path.exists(dockerignore_path) else []
for tree in ("build", "build-sanitize", "build-fuzz", "data", ".podman"):
    if not any(fnmatch.fnmatch(tree, p) for p in ignored):
        fail(".dockerignore does not leave out %s/" % tree)

# --- compose.yml ---------------------------------------------------------------
for expected in ("stored", "gateway", "roomd", "reaper", "edge"):
    if expected not in services:
        fail("compose.yml has no service %s" % expected)

BASE_PROGRAMS = {"sh", "cat", "grep", "test", "["}   # in every Debian image
LISTENING_ANY = ("*", "0.0.0.0", "::", "[::]")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
ENDPOINT = re.compile(r"tcp://(\[[^\]]*\]|[^:/,]+):(\d+)")


def env_of(service):
    return {k: "" if v is None else str(v)
            for k, v in (services[service].get("environment") or {}).items()}


def binds_of(service):
    """Ports a service listens on for other containers."""
    ports = set()
    for name, value in env_of(service).items():
        for host, port in ENDPOINT.findall(value):
            if host in LISTENING_ANY:
                ports.add(int(port))
        if name.endswith("_PORT") and value.isdigit():
            ports.add(int(value))
    return ports


def check_reach(service, what, host, port):
    """host:port, as asked from inside service's container, is served."""
    if host in LOOPBACK:
        target = service
    elif host in services:
        target = host
    else:
        fail("%s: %s names %s, which is no service" % (service, what, host))
        return
    if port not in binds_of(target):
        fail("%s: %s asks %s:%d, but %s listens on no such port for other containers"
             " (its ports: %s)" % (service, what, host, port, target,
                                   sorted(binds_of(target)) or "none"))


for service in sorted(services):
    spec = services[service]
    command = spec.get("command") or []
    if isinstance(command, str):
        command = shlex.split(command)
    binary = command[0] if command else ""
    if not binary or not os.access(os.path.join(bin_dir, binary), os.X_OK):
        fail("%s: command '%s' is none of our binaries in %s" % (service, binary, bin_dir))
        continue
    image_has(binary, service)
    reads = settings_of(binary)
    env = env_of(service)
    raw_env = (raw.get("services", {}).get(service, {}) or {}).get("environment") or {}
    # NAME with no value: passed on from the shell, unset by default (the
    # resolved file leaves it out then).
    passed = sorted(name for name, value in raw_env.items() if value is None)
    for name in passed:
        if name not in reads:
            fail("%s: %s passes on %s, which %s does not read (not in its --help)"
                 % (service, binary, name, binary))
        elif reads[name] not in ("", None):
            fail("%s: %s is passed on unset, but %s's default is %r: write ${%s:-%s}"
                 % (service, name, binary, reads[name], name, reads[name]))
        env.setdefault(name, "")

    for name in sorted(env):
        if name not in reads:
            fail("%s: %s sets %s, which %s does not read (not in its --help)"
                 % (service, binary, name, binary))
    for name in sorted(reads):
        if name not in env:
            fail("%s: %s reads %s (default %r) but compose.yml does not write it out"
                 % (service, binary, name, reads[name]))

    # ${NAME:-DEFAULT}: the operator's NAME, the binary's default.
    for name, value in sorted(raw_env.items()):
        value = "" if value is None else str(value)
        if "$" not in value.replace("$$", ""):
            continue
        m = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-(.*)\}", value)
        if not m:
            fail("%s: %s=%s: write an override as ${%s:-DEFAULT}" % (service, name, value, name))
            continue
        if m.group(1) != name:
            fail("%s: %s is overridden by ${%s}, not by ${%s}" % (service, name, m.group(1), name))
        if name in reads and reads[name] is not None and m.group(2) != reads[name]:
            fail("%s: %s defaults to %r in compose.yml but to %r in %s --help"
                 % (service, name, m.group(2), reads[name], binary))

    # The values as compose gives them, through the binary's own checks.
    # EDGE_GATEWAY names a service, which only compose's network resolves
    # (haproxy -c resolves it): the check gets loopback instead, and
    # check_reach below sees that the service serves the port.
    check_env = dict(env)
    edge_gateway = re.fullmatch(r"([^:]+):(\d+)", env.get("EDGE_GATEWAY", ""))
    if edge_gateway and edge_gateway.group(1) in services:
        check_env["EDGE_GATEWAY"] = "127.0.0.1:" + edge_gateway.group(2)
    check = subprocess.run([os.path.join(bin_dir, binary), "--check"], env=check_env,
                           capture_output=True, text=True)
    if check.returncode != 0:
        fail("%s: %s refuses its settings: %s" % (service, binary,
                                                  (check.stderr or check.stdout).strip()))

    # ZeroMQ endpoints: another service by name, never this container's
    # loopback (TAP_ENDPOINT is local on purpose: nearchat-spy runs inside).
    for name, value in sorted(env.items()):
        for host, port in ENDPOINT.findall(value):
            if host in LISTENING_ANY:
                continue
            if host in LOOPBACK and name != "TAP_ENDPOINT":
                fail("%s: %s=%s: in a container %s is the container itself; name the service"
                     % (service, name, value, host))
            elif host not in LOOPBACK:
                check_reach(service, name, host, int(port))

    # The edge forwards to a served port of a service.
    if binary == "nearchat-edge":
        if not edge_gateway:
            fail("%s: EDGE_GATEWAY=%s is not host:port" % (service, env.get("EDGE_GATEWAY")))
        elif edge_gateway.group(1) in LOOPBACK:
            fail("%s: EDGE_GATEWAY=%s: in a container %s is the container itself; name the service"
                 % (service, env["EDGE_GATEWAY"], edge_gateway.group(1)))
        else:
            check_reach(service, "EDGE_GATEWAY", edge_gateway.group(1), int(edge_gateway.group(2)))
        if "haproxy" not in installed:
            fail("%s: the runtime stage does not install haproxy, which nearchat-edge runs" % service)
        if "nearchat-edge.cfg" not in shared:
            fail("%s: the runtime stage does not copy nearchat-edge.cfg into /usr/local/share/nearchat"
                 " (where nearchat-edge finds it)" % service)

    # Published ports: the edge's alone, served, on every interface.
    if spec.get("ports") and binary != "nearchat-edge":
        fail("%s: publishes ports; the edge is the only published service" % service)
    for port in spec.get("ports") or []:
        target = int(port["target"] if isinstance(port, dict) else str(port).split(":")[-1].split("/")[0])
        if target not in binds_of(service):
            fail("%s: publishes container port %d, on which %s does not listen" % (service, target, binary))
    if spec.get("ports") and env.get("HTTP_BIND", reads.get("HTTP_BIND") or "") not in ("0.0.0.0", "::"):
        fail("%s: publishes ports but HTTP_BIND=%s is not every interface" % (service, env["HTTP_BIND"]))

    # nearchat-keys is a one-shot (it makes the keys and exits); the rest
    # are kept running.
    if binary == "nearchat-keys":
        if str(spec.get("restart")) not in ("no", "False"):
            fail("%s: restart is %r; a one-shot key maker wants no" % (service, spec.get("restart")))
    elif spec.get("restart") != "unless-stopped":
        fail("%s: restart is %r, not unless-stopped" % (service, spec.get("restart")))

    # KEYS_DIR is the named volume the one-shot key maker writes, read-only
    # for the daemons, which start once it has finished.
    if "KEYS_DIR" in env:
        named = set((resolved.get("volumes") or {}).keys())
        keys_mounts = []
        for volume in spec.get("volumes") or []:
            if isinstance(volume, dict):
                keys_mounts.append((volume.get("source"), volume.get("target"),
                                    bool(volume.get("read_only"))))
            else:
                parts = str(volume).split(":")
                keys_mounts.append((parts[0], parts[1] if len(parts) > 1 else parts[0],
                                    len(parts) > 2 and "ro" in parts[2].split(",")))
        mount = next((m for m in keys_mounts if m[0] in named
                      and m[1].rstrip("/") == env["KEYS_DIR"].rstrip("/")), None)
        if not mount:
            fail("%s: KEYS_DIR=%s is not a named volume's mount" % (service, env["KEYS_DIR"]))
        elif binary != "nearchat-keys" and not mount[2]:
            fail("%s: mounts the keys (%s) writable; read-only is enough" % (service, mount[0]))
        if binary != "nearchat-keys":
            depends = spec.get("depends_on") or {}
            makers = [name for name in services
                      if (services[name].get("command") or [""])[0] == "nearchat-keys"]
            if not any(isinstance(depends, dict)
                       and (depends.get(m) or {}).get("condition") == "service_completed_successfully"
                       for m in makers):
                fail("%s: does not wait for the keys (depends_on the key maker, "
                     "condition service_completed_successfully)" % service)

    # A healthcheck runs programs the image has and asks ports that are served.
    health = (spec.get("healthcheck") or {}).get("test")
    if health:
        if isinstance(health, str):
            health = ["CMD-SHELL", health]
        if health[0] == "CMD":
            programs, text = [health[1]], " ".join(health[1:])
        elif health[0] == "CMD-SHELL":
            text = health[1].replace("$$", "$")
            programs = [segment.split()[0] for segment in re.split(r"\|\|?|&&|;", text) if segment.split()]
        else:
            programs, text = [], ""
            if health[0] != "NONE":
                fail("%s: healthcheck test starts with %r" % (service, health[0]))
        for program in programs:
            if os.path.exists(os.path.join(bin_dir, program)):
                image_has(program, service)
            elif program not in installed and program not in BASE_PROGRAMS:
                fail("%s: healthcheck runs %s, which the runtime stage does not install" % (service, program))
        for host, port in re.findall(r"(?:tcp|https?)://(\[[^\]]*\]|[^:/]+):(\d+)", text):
            check_reach(service, "its healthcheck", host, int(port))
    elif binary in ("stored", "gateway"):
        fail("%s: no healthcheck, though %s answers on a socket" % (service, binary))

    # DATA_DIR lives in a named volume.
    if "DATA_DIR" in env:
        named = set((resolved.get("volumes") or {}).keys())
        mounts = []
        for volume in spec.get("volumes") or []:
            if isinstance(volume, dict):
                mounts.append((volume.get("type"), volume.get("source"), volume.get("target")))
            else:
                parts = str(volume).split(":")
                mounts.append(("volume" if len(parts) > 1 and parts[0] in named else "bind",
                               parts[0], parts[1] if len(parts) > 1 else parts[0]))
        if not any(kind == "volume" and source in named and target.rstrip("/") == env["DATA_DIR"].rstrip("/")
                   for kind, source, target in mounts):
            fail("%s: DATA_DIR=%s is not a named volume's mount" % (service, env["DATA_DIR"]))

    ok("%s runs %s with %d settings" % (service, binary, len(env)))

# Shards scale: docker compose up --scale roomd=4.
if "roomd" in services:
    roomd = services["roomd"]
    if "container_name" in roomd:
        fail("roomd: container_name %s stops --scale roomd=N" % roomd["container_name"])
    if roomd.get("ports"):
        fail("roomd: a published port stops --scale roomd=N")
    if env_of("roomd").get("SHARD_ID") != "auto":
        fail("roomd: SHARD_ID=%s is shared by every replica; auto gives each its own"
             % env_of("roomd").get("SHARD_ID"))

# The edge publishes; compose.tls.yml gives it TLS_CERT and TLS_KEY from one
# read-only mount and changes no other service.
edges = [name for name in services if (services[name].get("command") or [""])[0] == "nearchat-edge"]
if not edges:
    fail("compose.yml has no service running nearchat-edge")
elif not services[edges[0]].get("ports"):
    fail("%s: publishes no port" % edges[0])
tls = (yaml.safe_load(open(tls_path)).get("services") or {})
for name in sorted(tls):
    if name in edges:
        continue
    if tls[name] != services.get(name):
        fail("compose.tls.yml changes %s; it is for the edge alone" % name)
for edge in edges:
    env = {k: "" if v is None else str(v) for k, v in (tls[edge].get("environment") or {}).items()}
    mounts = []
    for volume in tls[edge].get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append((volume.get("target", "").rstrip("/"), bool(volume.get("read_only"))))
        else:
            parts = str(volume).split(":")
            mounts.append((parts[1].rstrip("/") if len(parts) > 1 else parts[0],
                           len(parts) > 2 and "ro" in parts[2].split(",")))
    for name in ("TLS_CERT", "TLS_KEY"):
        directory = os.path.dirname(env.get(name, ""))
        if not env.get(name):
            fail("compose.tls.yml: %s gets no %s" % (edge, name))
        elif not any(target == directory and ro for target, ro in mounts):
            fail("compose.tls.yml: %s=%s is not in a read-only mount of %s" % (name, env[name], edge))
    if all(env.get(n) for n in ("TLS_CERT", "TLS_KEY")):
        ok("compose.tls.yml: %s gets TLS_CERT=%s and TLS_KEY=%s" % (edge, env["TLS_CERT"], env["TLS_KEY"]))

print("%d failed" % failed)
sys.exit(1 if failed else 0)
PY
