#!/usr/bin/env bash
# Installs the Debian tools the checks and tests run, when they are missing:
#   docker-compose  docker-compose 1.29: validates the compose files (no engine needed);
#   prometheus      promtool, and the prometheus binary that the dashboard check
#                   (ops/check/live.py) runs itself on a free port;
#   redis-server    the broker that the Redis-engine tests, the course suite
#                   against two replicas and the dashboard check start themselves,
#                   each on a free loopback port;
#   redis-sentinel  the Sentinels of the failover tests (tests/src/sentinel.rs:
#                   a primary, two replicas and three Sentinels on free loopback ports);
#   libfaketime     the LD_PRELOAD library that the clock tests put into the
#                   server process only (FAKETIME=-1h: a clock that is behind);
#   chromium        the browser the page's tests (tests/browser) drive through
#                   Playwright for Python, headless, on loopback only.
# The packages' own services are never used (apt may start them; nothing here
# talks to them).
#
#   install-tools.sh                 all of them (make ops-check, .ci/run)
#   install-tools.sh redis-server    only the named ones (make test-rust, test-course-replicas,
#                                    test-browser)
#
# Idempotent: with everything present it changes nothing and needs no network.
# Needs root (or sudo) only when something is missing. Debian 12 (bookworm).
set -euo pipefail

all=(docker-compose prometheus redis-server redis-sentinel libfaketime chromium)
wanted=("$@")
((${#wanted[@]})) || wanted=("${all[@]}")

# The commands each package must provide (none for a library).
commands_of() {
    case $1 in
    docker-compose) echo docker-compose ;;
    prometheus) echo promtool prometheus ;;
    redis-server) echo redis-server ;;
    redis-sentinel) echo redis-sentinel ;;
    chromium) echo chromium ;;
    esac
}
# Whether a package that provides no command is installed.
installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
for package in "${wanted[@]}"; do
    [[ " ${all[*]} " == *" $package "* ]] || { echo "install-tools.sh: unknown tool $package (known: ${all[*]})" >&2; exit 2; }
done

missing=()
for package in "${wanted[@]}"; do
    if [[ -z $(commands_of "$package") ]]; then
        installed "$package" || missing+=("$package")
        continue
    fi
    for cmd in $(commands_of "$package"); do
        if ! command -v "$cmd" >/dev/null; then
            missing+=("$package")
            break
        fi
    done
done
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

for package in "${wanted[@]}"; do
    case $package in
    docker-compose) echo "docker-compose $(docker-compose version --short)" ;;
    prometheus) promtool --version | head -1 ;;
    redis-server) redis-server --version ;;
    redis-sentinel) redis-sentinel --version ;;
    libfaketime) echo "libfaketime $(dpkg-query -W -f='${Version}' libfaketime)" ;;
    chromium) chromium --version ;;
    esac
done
