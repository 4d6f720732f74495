#!/usr/bin/env bash
# Stand-in images for a host that reaches no image registry (make stack-test on
# podman; see ops/check/README.md). Test infrastructure, not part of the product:
# each stand-in is built from Debian packages or from a tool already on the host,
# and tagged with the name our Dockerfiles and compose file expect, so that they
# build and run unchanged. Stand-ins carry the host's CA bundle (the project's
# images never do: they only build FROM these here).
#
#   standins.sh GRPCURL   GRPCURL: the host's x86-64 grpcurl (make test's)
#
# Prints one line per stand-in: the tag, what really runs under it, and its
# version. An existing stand-in is kept (STANDINS_REBUILD=1 rebuilds them).
set -euo pipefail
cd "$(dirname "$0")/../.."
grpcurl=$1
work=target/stack/standins
mkdir -p "$work"

# The tags our files expect, read from them (so a version bump needs no edit here).
from() { sed -n "s|^FROM \($1[^ ]*\).*|\1|p" "${@:2}" | sort -u; }
image() { sed -n "s|^ *image: \($1[^ ]*\)|\1|p" docker-compose.yml | sort -u; }
debian=$(from debian: server/Dockerfile)
rust=$(from rust: server/Dockerfile client/Dockerfile)
python=$(from python: tests/course/Dockerfile)
grpcurl_tag=$(from fullstorydev/grpcurl: tests/course/Dockerfile)
prometheus=$(image prom/prometheus:)
redis=$(image redis:)

have() { [[ -z ${STANDINS_REBUILD:-} ]] && podman image exists "$1"; }
build() { # build TAG DIR: the Containerfile on stdin, context DIR
    cat > "$2/Containerfile"
    podman build -q --network host --pull=never -t "$1" -f "$2/Containerfile" "$2" >/dev/null
}
report() { printf 'stand-in %-34s %s\n' "$1" "$(podman run --rm --network host "$1" "${@:2}" 2>&1 | head -1)"; }

# Debian bookworm from Debian's packages (debootstrap), with the host's CA bundle
# (package access may go through an intercepting proxy) and Docker's policy-rc.d,
# so that no package starts its service while an image is built.
if ! have "$debian"; then
    rm -rf "$work/rootfs"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$work/rootfs" \
        http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log"; exit 1; }
    cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
    printf '#!/bin/sh\nexit 101\n' > "$work/rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$work/rootfs/usr/sbin/policy-rc.d"
    rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin
    tar -C "$work/rootfs" -c . | podman import -q -c 'CMD ["bash"]' - "$debian" >/dev/null
    rm -rf "$work/rootfs"
fi
report "$debian" cat /etc/debian_version

# The Rust build image: the host's toolchain (the one `make build` uses) on that
# base, with gcc and libc6-dev as rust:*-slim has them.
if ! have "$rust"; then
    mkdir -p "$work/rust"
    rm -rf "$work/rust/toolchain"
    sysroot=$(rustc --print sysroot)
    cp -al "$sysroot" "$work/rust/toolchain" 2>/dev/null || cp -a "$sysroot" "$work/rust/toolchain"
    rm -rf "$work/rust/toolchain/share/doc"
    build "$rust" "$work/rust" <<EOF
FROM $debian
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
    rm -rf "$work/rust/toolchain"
fi
report "$rust" rustc --version

# The Python image the tests image starts from: Debian's Python 3.11 and pip,
# allowed to install system-wide, with `python` and `pip` in /usr/local/bin as
# in python:* (the suite finds the tools pip installs next to sys.executable).
if ! have "$python"; then
    mkdir -p "$work/python"
    build "$python" "$work/python" <<EOF
FROM $debian
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \
    && rm -rf /var/lib/apt/lists/* /usr/lib/python3*/EXTERNALLY-MANAGED \
    && ln -s /usr/bin/python3 /usr/local/bin/python && ln -s /usr/bin/pip3 /usr/local/bin/pip
CMD ["python3"]
EOF
fi
report "$python" python --version

# grpcurl's multi-arch image: the host's x86-64 grpcurl at the image's path.
if ! have "$grpcurl_tag"; then
    mkdir -p "$work/grpcurl"
    cp "$grpcurl" "$work/grpcurl/grpcurl"
    build "$grpcurl_tag" "$work/grpcurl" <<EOF
FROM scratch
COPY grpcurl /bin/grpcurl
ENTRYPOINT ["/bin/grpcurl"]
EOF
fi
printf 'stand-in %-34s grpcurl %s\n' "$grpcurl_tag" "$("$grpcurl" -version 2>&1 | awk '{print $2}')"

# Prometheus and Redis from Debian's packages, laid out as the official images
# are: Prometheus as nobody in /prometheus with wget (the compose healthcheck);
# Redis with /data owned by the uid:gid compose runs it as (999:1000).
if ! have "$prometheus"; then
    mkdir -p "$work/prometheus"
    build "$prometheus" "$work/prometheus" <<EOF
FROM $debian
RUN apt-get update && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
EOF
fi
report "$prometheus" --version

if ! have "$redis"; then
    mkdir -p "$work/redis"
    build "$redis" "$work/redis" <<EOF
FROM $debian
RUN apt-get update && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /data && chown 999:1000 /data
WORKDIR /data
CMD ["redis-server"]
EOF
fi
report "$redis" redis-server --version
