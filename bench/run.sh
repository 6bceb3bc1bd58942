#!/usr/bin/env bash
# The load benchmark: builds the release binaries, starts a throwaway PostgreSQL
# cluster and MariaDB server (both durable, as in production), runs passcode-bench on
# SQLite, PostgreSQL and MariaDB, and stops the servers. passcode-bench starts a real
# SMTP server (aiosmtpd, tests/support/smtp_server.py) for each passcode it runs, from
# a Python venv with aiosmtpd and trustme that this script installs if it is missing.
# Arguments go to passcode-bench, e.g.
#   bash bench/run.sh --compare http://127.0.0.1:8100    (the tutorial's service)
#   bash bench/run.sh --backends sqlite --only refresh --duration 5
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p passcode-app -p passcode-bench

# The tests' venv serves if scripts/test.sh made it; otherwise one of the benchmark's own.
venv="$PWD/target/test-venv"
if ! "$venv/bin/python" -c 'import aiosmtpd, trustme' 2>/dev/null; then
    venv="$PWD/target/bench-venv"
    if ! "$venv/bin/python" -c 'import aiosmtpd, trustme' 2>/dev/null; then
        echo "== installing aiosmtpd and trustme (the benchmark's SMTP server) into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            $(grep -E '^(aiosmtpd|trustme)==' tests/support/requirements.txt)
    fi
fi
export BENCH_PYTHON="$venv/bin/python"

work="$(mktemp -d /tmp/passcode-bench.XXXXXX)"
chmod 755 "$work"
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port="$(free_port)"
maria_port="$(free_port)"
cleanup() {
    bash scripts/pg-cluster.sh stop "$work/pg" || true
    bash scripts/mariadb-server.sh stop "$work/mariadb" || true
    rm -rf "$work"
}
trap cleanup EXIT
PG_DURABLE=1 bash scripts/pg-cluster.sh start "$work/pg" "$port"
MARIADB_DURABLE=1 bash scripts/mariadb-server.sh start "$work/mariadb" "$maria_port"

BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" \
BENCH_MARIADB_URL="mysql://root@127.0.0.1:$maria_port/passcode" \
    target/release/passcode-bench "$@"
