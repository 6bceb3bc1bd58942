#!/usr/bin/env bash
# Writing transactions per request, on PostgreSQL: builds the release binary, starts a
# throwaway durable cluster and passcode on it (mail to files), sends each request of
# every flow one at a time, and reads `txid_current()` before and after each one. Only
# a transaction that writes takes an id, so the difference, less the reading's own,
# counts the request's writes. Each request waits until the outbox has sent every mail,
# and the worker gathers for 500 ms before it claims, so its writes fall outside the
# requests.
#   bash bench/writes.sh [ROUNDS]      (default 5 rounds of every flow)
# BIN=path uses that binary instead of building one (to compare two commits).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"

if [ -z "${BIN:-}" ]; then
    cargo build --release -q -p passcode-app
    BIN="$PWD/target/release/passcode"
fi

work="$(mktemp -d /tmp/passcode-writes.XXXXXX)"
chmod 755 "$work"
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pg_port="$(free_port)"
port="$(free_port)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; fi
    bash scripts/pg-cluster.sh stop "$work/pg" || true
    rm -rf "$work"
}
trap cleanup EXIT
PG_DURABLE=1 bash scripts/pg-cluster.sh start "$work/pg" "$pg_port"
mkdir -p "$work/mail"
APP__SERVER__PORT="$port" \
APP__DATABASE__URL="postgres://postgres@127.0.0.1:$pg_port/postgres" \
APP__MAIL__TRANSPORT=file APP__MAIL__FILE_DIR="$work/mail" \
APP__MAIL__OUTBOX__GATHER_MS=500 \
APP__LIMITS__RESEND_COOLDOWN_SECONDS=1 \
    "$BIN" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
    sleep 0.2
done
curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null || {
    echo "passcode did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
}

txid() { psql -h 127.0.0.1 -p "$pg_port" -U postgres -Atqc "SELECT txid_current()"; }
# POST $2 to path $1 (with bearer token $3): prints the status, keeps the body.
post() {
    curl -s -o "$work/body" -w "%{http_code}" -H 'content-type: application/json' \
        ${3:+-H "authorization: Bearer $3"} -d "$2" "http://127.0.0.1:$port$1"
}
# The access token of the last answer.
access() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print((d.get("token") or d)["access"])' "$work/body"; }
refresh() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print((d.get("token") or d)["refresh"])' "$work/body"; }
# The code in the newest mail to $1 (waiting for it), then every mail removed.
code() {
    local file=""
    for _ in $(seq 100); do
        file="$(grep -l "^To: $1" "$work"/mail/*.eml 2>/dev/null | xargs -r ls -t | head -n 1 || true)"
        [ -n "$file" ] && break
        sleep 0.05
    done
    [ -n "$file" ] || { echo "no mail to $1" >&2; exit 1; }
    grep -oE '\b[0-9]{6}\b' "$file" | head -n 1
    rm -f "$work"/mail/*.eml
}
declare -A writes statuses
order=()
# Waits until the outbox worker has sent every mail and marked it sent.
settle() {
    for _ in $(seq 100); do
        [ "$(psql -h 127.0.0.1 -p "$pg_port" -U postgres -Atqc \
            "SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending')")" = 0 ] && return
        sleep 0.05
    done
    echo "the outbox did not empty" >&2
    exit 1
}
# measure NAME PATH BODY [TOKEN]: one request, its writes counted.
measure() {
    settle
    local before after status
    before="$(txid)"
    status="$(post "$2" "$3" "${4:-}")"
    after="$(txid)"
    [ -n "${writes[$1]+x}" ] || order+=("$1")
    writes[$1]=$((${writes[$1]:-0} + after - before - 1))
    statuses[$1]="${statuses[$1]:-} $status"
}

pw="writes Correct Horse 7 battery staple"
for i in $(seq "$rounds"); do
    a="a$i@example.com" b="b$i@example.com" c="c$i@example.com"
    measure "register" /api/accounts/create/ \
        "{\"email\":\"$a\",\"full_name\":\"A $i\",\"password\":\"$pw\"}"
    sleep 1.1
    measure "resend-otp" /api/accounts/resend-otp/ "{\"email\":\"$a\"}"
    measure "resend-otp, unknown address" /api/accounts/resend-otp/ "{\"email\":\"u$i@example.com\"}"
    measure "validate-otp, right code" /api/accounts/validate-otp/ \
        "{\"email\":\"$a\",\"otp\":\"$(code "$a")\"}"
    measure "validate-otp, wrong code" /api/accounts/validate-otp/ \
        "{\"email\":\"$a\",\"otp\":\"000000\"}"
    measure "login, right password" /api/accounts/token/ \
        "{\"email\":\"$a\",\"password\":\"$pw\"}"
    token="$(access)" renewal="$(refresh)"
    measure "login, wrong password" /api/accounts/token/ \
        "{\"email\":\"$a\",\"password\":\"not the password\"}"
    measure "token/refresh" /api/accounts/token/refresh/ "{\"refresh\":\"$renewal\"}"
    post /api/accounts/token/ "{\"email\":\"$a\",\"password\":\"$pw\"}" >/dev/null
    second="$(access)" renewal="$(refresh)"
    measure "sessions/end-others" /api/accounts/sessions/end-others/ "{}" "$second"
    measure "logout" /api/accounts/logout/ "{\"refresh\":\"$renewal\"}"
    post /api/accounts/token/ "{\"email\":\"$a\",\"password\":\"$pw\"}" >/dev/null
    token="$(access)"
    measure "change-password" /api/accounts/change-password/ \
        "{\"old_password\":\"$pw\",\"new_password\":\"$pw 2\"}" "$token"
    post /api/accounts/token/ "{\"email\":\"$a\",\"password\":\"$pw 2\"}" >/dev/null
    token="$(access)"
    measure "change-email request" /api/accounts/change-email/ \
        "{\"new_email\":\"$b\",\"password\":\"$pw 2\"}" "$token"
    measure "change-email confirm" /api/accounts/change-email/confirm/ \
        "{\"new_email\":\"$b\",\"otp\":\"$(code "$b")\"}" "$token"
    measure "password-reset request" /api/accounts/password-reset/ "{\"email\":\"$b\"}"
    measure "password-reset confirm" /api/accounts/password-reset/confirm/ \
        "{\"email\":\"$b\",\"otp\":\"$(code "$b")\",\"new_password\":\"$pw\"}"
    post /api/accounts/token/ "{\"email\":\"$b\",\"password\":\"$pw\"}" >/dev/null
    measure "delete, by password" /api/accounts/delete/ "{\"password\":\"$pw\"}" "$(access)"
    # An account without a password: registered, never verified, signed in by code.
    post /api/accounts/create/ "{\"email\":\"$c\",\"full_name\":\"C $i\",\"password\":\"$pw\"}" >/dev/null
    code "$c" >/dev/null
    sleep 1.1
    measure "sign-in code request" /api/accounts/sign-in/code/ "{\"email\":\"$c\"}"
    measure "sign-in by code, unverified" /api/accounts/sign-in/ \
        "{\"email\":\"$c\",\"otp\":\"$(code "$c")\"}"
    token="$(access)"
    sleep 1.1
    post /api/accounts/sign-in/code/ "{\"email\":\"$c\"}" >/dev/null
    measure "delete, by code" /api/accounts/delete/ "{\"otp\":\"$(code "$c")\"}" "$token"
done
settle
before="$(txid)"
sleep 5
idle=$(($(txid) - before - 1))

printf '%-30s %8s %12s  %s\n' request requests "writes each" statuses
for name in "${order[@]}"; do
    printf '%-30s %8d %12.2f  %s\n' "$name" "$rounds" \
        "$(echo "${writes[$name]} / $rounds" | bc -l)" \
        "$(echo "${statuses[$name]}" | tr ' ' '\n' | grep . | sort | uniq -c | awk '{printf "%s×%s ", $1, $2}')"
done
echo "idle server: $idle writes in 5 s"
