#!/usr/bin/env bash
# Runs every test of the workspace against real servers.
#
# Installs what the tests need when it is missing (Debian packages: PostgreSQL, Prometheus
# with promtool, Alertmanager with amtool, wrk), starts PostgreSQL on a free loopback port
# in a temporary data directory, runs `cargo test`, and stops PostgreSQL again. Then the
# load proof: the user service's 1000 requests/s mix, as release binaries with telemetry
# on, for 20 s (scripts/load-user.sh; the thresholds decide its exit status).
# Extra arguments go to `cargo test`, e.g. `./scripts/test.sh -p sloop-user`, and skip the
# load proof.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages
start_postgres
trap stop_postgres EXIT

export SLOOP_TEST_POSTGRES_URL="$POSTGRES_URL"
echo "==> cargo test (PostgreSQL at $POSTGRES_URL)"
cargo test --workspace --locked "$@"

if (($# == 0)); then
  echo "==> load proof: user-mix at 1000 requests/s for 20 s (release build)"
  ./scripts/load-user.sh --duration 20s --out target/load/user-mix
fi
