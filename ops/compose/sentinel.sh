#!/bin/sh
# One Redis Sentinel of the two-replica stack (docker-compose.yml, sentinel-1..3;
# make up-scale). Sentinel rewrites its config file as it learns the topology, so
# the file cannot be a read-only mount: this writes it into /tmp (a tmpfs) at
# each start and runs Sentinel on it.
#
#   sentinel.sh <announced name> <port> <myid: 40 hex digits>
#
# From the environment (set in docker-compose.yml): SENTINEL_MASTER (the master
# name MESSENGER_BROKER_URL asks for), SENTINEL_PRIMARY ("host port" of the
# primary to monitor at first start), SENTINEL_QUORUM, SENTINEL_DOWN_AFTER_MS,
# SENTINEL_FAILOVER_TIMEOUT_MS (ops/README.md, Operating Redis under Sentinel).
#
# - The myid is fixed: a Sentinel that restarts with a new id stays counted under
#   its old one by the others, and a failover then needs more votes than there
#   are Sentinels (Redis's docs: SENTINEL RESET after removing a Sentinel).
# - After a failover a restarted Sentinel starts from SENTINEL_PRIMARY again;
#   the hello messages of the other Sentinels carry the newer configuration
#   epoch, and it adopts the current primary from them.
# - resolve-hostnames and announce-hostnames: the nodes and Sentinels announce
#   compose service names, and clients are handed names, not container addresses.
set -eu
name=$1 port=$2 myid=$3
conf=/tmp/sentinel.conf
cat > "$conf" <<CONF
port $port
dir /tmp
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $name
sentinel announce-port $port
sentinel myid $myid
sentinel monitor $SENTINEL_MASTER $SENTINEL_PRIMARY $SENTINEL_QUORUM
sentinel down-after-milliseconds $SENTINEL_MASTER $SENTINEL_DOWN_AFTER_MS
sentinel failover-timeout $SENTINEL_MASTER $SENTINEL_FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $SENTINEL_MASTER 1
CONF
exec redis-server "$conf" --sentinel
