#!/usr/bin/env bash
# Runs every test of passcode, on SQLite, PostgreSQL and MariaDB. Sets up what the tests
# need first, and takes it down afterwards, also when tests fail:
#   - a Python venv with aiosmtpd and trustme, for the real SMTP servers the
#     integration tests start (and stop) themselves, PyJWT, a third-party token
#     verifier, schemathesis (the API fuzzer) and openapi-python-client;
#   - Chromium (apt-get, if missing), for the headless check of the API page;
#   - a throwaway PostgreSQL cluster on a free loopback port (installing the server
#     with apt-get if it is missing), unless TEST_DATABASE_URL names a server to use;
#   - a throwaway MariaDB server likewise, unless TEST_MARIADB_URL names one.
# Extra arguments go to every `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${PASSCODE_TEST_VENV:-$PWD/target/test-venv}"
if ! "$venv/bin/python" -c 'import aiosmtpd, trustme, jwt, schemathesis, openapi_python_client, standardwebhooks' 2>/dev/null; then
    echo "== installing the tests' Python tools (aiosmtpd, trustme, PyJWT, schemathesis, openapi-python-client, standardwebhooks) into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        echo "== python3 venv support missing; installing it with apt-get"
        apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/support/requirements.txt
fi
export PASSCODE_TEST_PYTHON="$venv/bin/python"

if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    echo "== installing Chromium with apt-get (the API page is checked in a headless browser)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

free_port() {
    "$PASSCODE_TEST_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
pg_dir=""
maria_dir=""
cleanup() {
    if [ -n "$pg_dir" ]; then bash scripts/pg-cluster.sh stop "$pg_dir"; rm -rf "$pg_dir"; fi
    if [ -n "$maria_dir" ]; then bash scripts/mariadb-server.sh stop "$maria_dir"; rm -rf "$maria_dir"; fi
}
trap cleanup EXIT

if [ -z "${TEST_DATABASE_URL:-}" ]; then
    pg_dir="$(mktemp -d /tmp/passcode-test-pg.XXXXXX)"
    pg_port="$(free_port)"
    echo "== starting a throwaway PostgreSQL cluster on 127.0.0.1:$pg_port"
    bash scripts/pg-cluster.sh start "$pg_dir" "$pg_port"
    export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
fi

if [ -z "${TEST_MARIADB_URL:-}" ]; then
    maria_dir="$(mktemp -d /tmp/passcode-test-mariadb.XXXXXX)"
    maria_port="$(free_port)"
    echo "== starting a throwaway MariaDB server on 127.0.0.1:$maria_port"
    bash scripts/mariadb-server.sh start "$maria_dir" "$maria_port"
    export TEST_MARIADB_URL="mysql://root@127.0.0.1:$maria_port/mysql"
fi

echo "== all tests; the HTTP suite on SQLite (the repository contract runs on every backend)"
cargo test --workspace "$@"
echo "== the HTTP suite again, on PostgreSQL"
PASSCODE_TEST_BACKEND=postgres cargo test -p passcode-app --test api "$@" -- --skip instances:: --skip cli::
echo "== the HTTP suite again, on MariaDB"
# (with the instances sharing a database, now on MariaDB)
PASSCODE_TEST_BACKEND=mariadb cargo test -p passcode-app --test api "$@" -- --skip instances::server_down_ --skip cli::
