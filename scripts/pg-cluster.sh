#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, on loopback.
#   pg-cluster.sh start DIR PORT   initdb into DIR (if new) and start on PORT
#   pg-cluster.sh stop DIR         stop it (fast shutdown)
# Installs the server with apt-get if it is missing. As root, runs as `postgres`.
set -euo pipefail

find_bindir() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/pg_ctl" ]; then echo "$dir"; fi
    done | sort -V | tail -n 1
}

bindir="$(find_bindir)"
if [ -z "$bindir" ]; then
    if command -v pg_ctl >/dev/null; then
        bindir="$(dirname "$(command -v pg_ctl)")"
    else
        echo "== installing the PostgreSQL server (apt-get install postgresql)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bindir="$(find_bindir)"
    fi
fi

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd="${1:?usage: pg-cluster.sh start DIR PORT | stop DIR}"
dir="${2:?missing DIR}"
case "$cmd" in
start)
    port="${3:?missing PORT}"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as_owner "$bindir/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
    fi
    # fsync off: a test cluster trades durability for speed. PG_DURABLE=1 keeps
    # PostgreSQL's own defaults (the benchmark measures what production would see).
    durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    if [ "${PG_DURABLE:-0}" = 1 ]; then durability=""; fi
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 $durability -c max_connections=300" \
        start >/dev/null
    ;;
stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null || true
    fi
    ;;
*)
    echo "usage: pg-cluster.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
