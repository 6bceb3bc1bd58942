#!/usr/bin/env bash
# The load benchmark: builds the release binaries, starts a throwaway PostgreSQL
# cluster (fsync on, as in production), runs passcode-bench on SQLite and PostgreSQL,
# and stops the cluster. Arguments go to passcode-bench, e.g.
#   bash bench/run.sh --compare http://127.0.0.1:8100    (the tutorial's service)
#   bash bench/run.sh --backends sqlite --only refresh --duration 5
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p passcode-app -p passcode-bench

work="$(mktemp -d /tmp/passcode-bench.XXXXXX)"
chmod 755 "$work"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cleanup() {
    bash scripts/pg-cluster.sh stop "$work/pg" || true
    rm -rf "$work"
}
trap cleanup EXIT
PG_DURABLE=1 bash scripts/pg-cluster.sh start "$work/pg" "$port"

BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" \
    target/release/passcode-bench "$@"
