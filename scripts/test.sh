#!/usr/bin/env bash
# Runs every test of passcode. Installs what the tests need first: a Python venv with
# aiosmtpd and trustme, for the real SMTP servers the integration tests start (and
# stop) themselves. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${PASSCODE_TEST_VENV:-$PWD/target/test-venv}"
if ! "$venv/bin/python" -c 'import aiosmtpd, trustme' 2>/dev/null; then
    echo "== installing the test SMTP server (aiosmtpd, trustme) into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        echo "== python3 venv support missing; installing it with apt-get"
        apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/support/requirements.txt
fi
export PASSCODE_TEST_PYTHON="$venv/bin/python"

cargo test --workspace "$@"
