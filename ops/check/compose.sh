#!/usr/bin/env bash
# Validates docker-compose.yml, alone and merged with ops/compose/secure.yml,
# with the Debian docker-compose (1.29) that .ci/run installs. The files that
# `make up` / `make certs` would create (the Grafana env file, ops/secure/*)
# are not committed, so placeholders are written to a temp dir and passed
# through GRAFANA_ENV_FILE and MESSENGER_SECURE_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
compose=${COMPOSE_CHECK:-docker-compose}
command -v "$compose" >/dev/null || { echo "$compose not found: apt-get install docker-compose" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp ops/grafana/grafana.env.example "$tmp/grafana.env"
for f in ca.pem server.pem server.key client.pem client.key tokens; do echo placeholder >"$tmp/$f"; done
for c in client1 client2; do echo "MESSENGER_CLIENT_TOKEN=placeholder" >"$tmp/$c.env"; done
export GRAFANA_ENV_FILE="$tmp/grafana.env" MESSENGER_SECURE_DIR="$tmp"
"$compose" -f docker-compose.yml config -q
"$compose" -f docker-compose.yml --profile test config -q
"$compose" -f docker-compose.yml -f ops/compose/secure.yml config -q
echo "compose OK ($("$compose" version --short)): docker-compose.yml, with profile test, merged with ops/compose/secure.yml"
