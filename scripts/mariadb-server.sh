#!/usr/bin/env bash
# A throwaway MariaDB server for tests, on loopback.
#   mariadb-server.sh start DIR PORT   create a data folder in DIR (if new) and start on PORT
#   mariadb-server.sh stop DIR         stop it
# Installs the server with apt-get if it is missing. As root, runs as `mysql`.
# Anyone on loopback may connect as root without a password: a test server only.
set -euo pipefail

find_server() {
    local bin
    for bin in mariadbd mysqld; do
        if command -v "$bin" >/dev/null; then command -v "$bin"; return; fi
        if [ -x "/usr/sbin/$bin" ]; then echo "/usr/sbin/$bin"; return; fi
    done
}

server="$(find_server)"
if [ -z "$server" ] || ! command -v mariadb-install-db >/dev/null; then
    echo "== installing the MariaDB server (apt-get install mariadb-server)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
    server="$(find_server)"
fi

user_args=()
if [ "$(id -u)" = 0 ]; then user_args=(--user=mysql); fi

cmd="${1:?usage: mariadb-server.sh start DIR PORT | stop DIR}"
dir="${2:?missing DIR}"
case "$cmd" in
start)
    port="${3:?missing PORT}"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown mysql "$dir"; fi
    if [ ! -d "$dir/data/mysql" ]; then
        mariadb-install-db --no-defaults "${user_args[@]}" --datadir="$dir/data" \
            --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
            || { cat "$dir/install.log" >&2; exit 1; }
    fi
    # Durability off (as for the PostgreSQL test cluster): a test server trades it for
    # speed. MARIADB_DURABLE=1 keeps MariaDB's defaults (the benchmark measures those).
    durability=(--innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0)
    if [ "${MARIADB_DURABLE:-0}" = 1 ]; then durability=(); fi
    "$server" --no-defaults "${user_args[@]}" --datadir="$dir/data" --port="$port" \
        --bind-address=127.0.0.1 --socket="$dir/mysqld.sock" --pid-file="$dir/mysqld.pid" \
        --log-error="$dir/server.log" --skip-log-bin --max-connections=500 \
        "${durability[@]}" \
        --innodb-buffer-pool-size=128M --character-set-server=utf8mb4 \
        --collation-server=utf8mb4_bin >/dev/null 2>&1 &
    for _ in $(seq 1 300); do
        if mariadb-admin --no-defaults --socket="$dir/mysqld.sock" -uroot ping >/dev/null 2>&1; then
            # An empty database for a service of its own (tests create theirs beside it).
            mariadb --no-defaults --socket="$dir/mysqld.sock" -uroot \
                -e 'CREATE DATABASE IF NOT EXISTS passcode'
            exit 0
        fi
        sleep 0.1
    done
    echo "MariaDB did not start within 30 s; its log:" >&2
    tail -n 30 "$dir/server.log" >&2 || true
    exit 1
    ;;
stop)
    if [ -f "$dir/mysqld.pid" ]; then
        pid="$(cat "$dir/mysqld.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || exit 0
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    ;;
*)
    echo "usage: mariadb-server.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
