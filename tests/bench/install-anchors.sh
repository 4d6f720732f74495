#!/usr/bin/env bash
# Installs the Debian tools `make bench` needs for its broker anchor: nats-server.
# Idempotent; run as root (CI and the dev machines are), or with sudo.
set -euo pipefail
if ! command -v nats-server >/dev/null 2>&1; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server
fi
nats-server --version
