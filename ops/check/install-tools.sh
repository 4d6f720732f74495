#!/usr/bin/env bash
# Installs what `make ops-check` needs from Debian when it is missing:
# docker-compose 1.29 (validates the compose files; no engine needed) and the
# prometheus package (promtool, and the prometheus binary that the dashboard
# check runs itself on a free port; the package's own service is not used).
# Called by `make ops-check` and by .ci/run. Needs root (or sudo) only when
# something is missing.
set -euo pipefail

missing=()
command -v docker-compose >/dev/null || missing+=(docker-compose)
{ command -v promtool && command -v prometheus; } >/dev/null || missing+=(prometheus)
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
echo "docker-compose $(docker-compose version --short); $(promtool --version | head -1)"
