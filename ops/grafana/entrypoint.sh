#!/bin/sh
# Grafana's admin password, never in git and never needing a file before
# `docker compose up` (a fresh clone works as it is):
#   - GF_SECURITY_ADMIN_PASSWORD (compose passes $GRAFANA_ADMIN_PASSWORD from
#     the shell or a gitignored .env) or GF_SECURITY_ADMIN_PASSWORD__FILE, when
#     the operator sets one, is used as it is;
#   - otherwise a random password is made at first start and kept, mode 0600,
#     in the data volume ($GF_PATHS_DATA/admin-password), so it survives
#     restarts. Read it with
#       docker compose exec grafana cat /var/lib/grafana/admin-password
# Grafana applies the admin password only when it creates its database, on
# the first start with an empty volume. Then runs the image's entrypoint ("$@").
set -eu
if [ -z "${GF_SECURITY_ADMIN_PASSWORD:-}" ] && [ -z "${GF_SECURITY_ADMIN_PASSWORD__FILE:-}" ]; then
    unset GF_SECURITY_ADMIN_PASSWORD
    file="${GF_PATHS_DATA:-/var/lib/grafana}/admin-password"
    if [ ! -s "$file" ]; then
        (
            umask 077
            od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$file.new"
            mv "$file.new" "$file"
        )
        echo "messenger: made a random Grafana admin password in $file"
    fi
    GF_SECURITY_ADMIN_PASSWORD=$(cat "$file")
    export GF_SECURITY_ADMIN_PASSWORD
fi
exec "$@"
