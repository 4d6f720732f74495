#!/usr/bin/env bash
# Validates the compose files with the Debian docker-compose (1.29) that
# install-tools.sh installs, as a fresh clone has them: in a temporary copy of
# the files git tracks (plus new files not ignored), with no compose variable
# set, so a file that only a make target or a gitignored secret provides fails
# here as it would for a user.
#   1. docker-compose.yml, and with the `test` profile: nothing else needed.
#   2. merged with ops/compose/secure.yml, after what `make up-secure` does
#      first: the real `gen-certs` (target/release, built by `make build`)
#      writes ops/secure/ in the copy.
#   3. merged with ops/compose/scale.yml and the `scale` profile (make up-scale:
#      redis and two server replicas), alone and with the `test` profile
#      (make compose-test-scale).
set -euo pipefail
cd "$(dirname "$0")/../.."
compose=${COMPOSE_CHECK:-docker-compose}
command -v "$compose" >/dev/null || { echo "$compose not found: apt-get install docker-compose" >&2; exit 1; }
gen_certs=${GEN_CERTS:-target/release/gen-certs}
[[ -x $gen_certs ]] || { echo "$gen_certs not found: make build" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [[ -e $f ]] && printf '%s\0' "$f"
done | xargs -0 cp --parents -t "$tmp"
unset GRAFANA_ADMIN_PASSWORD MESSENGER_SECURE_DIR COMPOSE_FILE COMPOSE_PROFILES COMPOSE_PROJECT_NAME
(
    cd "$tmp"
    "$compose" -f docker-compose.yml config -q
    "$compose" -f docker-compose.yml --profile test config -q
    "$OLDPWD/$gen_certs" ops/secure --shared-keys >/dev/null
    "$compose" -f docker-compose.yml -f ops/compose/secure.yml config -q
    "$compose" -f docker-compose.yml -f ops/compose/scale.yml --profile scale config -q
    "$compose" -f docker-compose.yml -f ops/compose/scale.yml --profile scale --profile test config -q
)
echo "compose OK ($("$compose" version --short)) from a copy of the tracked files: docker-compose.yml, with profile test, merged with ops/compose/secure.yml after gen-certs, and merged with ops/compose/scale.yml (profile scale, with and without test)"
