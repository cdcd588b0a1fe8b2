#!/usr/bin/env bash
# Runs every test of the workspace against real servers.
#
# Installs what the tests need when it is missing: Debian packages (PostgreSQL, Prometheus
# with promtool, Alertmanager with amtool, wrk, python3, Chromium for the HTML reports'
# layout checks), the Tansu Kafka-protocol broker
# (`cargo install tansu`, kept in cargo's bin folder so later runs reuse it; about 15
# minutes the first time) and schemathesis (PyPI, in a virtualenv under ~/.cache).
# Starts PostgreSQL on a free loopback port in a temporary data directory, runs
# `cargo test` (tests start their own brokers, Prometheus and services), and stops it.
# Then:
#   - the OpenAPI contracts: schemathesis fuzzes user, auth and the gateway
#     (scripts/contract.sh);
#   - the load proof: the user service's 1000 requests/s mix, as release binaries with
#     telemetry on, for 20 s (scripts/load-user.sh; the thresholds decide its exit status);
#   - the distributed mode: scripts/distributed-up.sh starts every service as its own
#     process (the debug builds the tests used) on its own PostgreSQL database with Tansu,
#     chat as two processes, the shop journey runs through its gateway (its chat users on
#     different chat instances), scripts/distributed-down.sh stops it.
# Extra arguments go to `cargo test`, e.g. `./scripts/test.sh -p sloop-user`, and skip
# the contract and load stages.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# The distributed mode as README starts it, on ports of its own, with the shop journey
# through its gateway; stopped and deleted whatever the outcome.
distributed_journey() {
  local run_dir status=0
  run_dir="$(mktemp -d /tmp/sloop-distributed.XXXXXX)"
  chmod 755 "$run_dir"
  # The debug binaries `cargo test` built: this stage proves the wiring, not the speed,
  # and a release build of every service would cost CI minutes for nothing.
  export SLOOP_RUN_DIR="$run_dir" SLOOP_PORT_OFFSET=30000 SLOOP_PG_PORT="$(free_port)" \
    SLOOP_KAFKA_PORT="$(free_port)" AUTH_ADMIN_EMAILS=admin@example.com SLOOP_BIN_DIR=target/debug \
    SLOOP_CHAT_INSTANCES=2
  if ./scripts/distributed-up.sh; then
    cargo run --locked -q -p platform-tests --example journey -- http://127.0.0.1:38080 "$SLOOP_CHAT_INSTANCES" || status=$?
  else
    status=$?
  fi
  ./scripts/distributed-down.sh --purge || true
  return "$status"
}

ensure_packages
ensure_tansu
start_postgres
trap stop_postgres EXIT

export SLOOP_TEST_POSTGRES_URL="$POSTGRES_URL"
echo "==> cargo test --no-run (build every test first, so the time limit below counts only running)"
cargo test --workspace --locked --no-run "$@"
echo "==> cargo test (PostgreSQL at $POSTGRES_URL, Tansu at $TANSU_BIN)"
# A test that hangs must fail the run, not eat CI's whole budget: no test here needs more
# than a few minutes, and the whole suite about ten on two cores.
TEST_TIME_LIMIT="${TEST_TIME_LIMIT:-30m}"
status=0
timeout --kill-after=30s "$TEST_TIME_LIMIT" cargo test --workspace --locked "$@" || status=$?
if ((status == 124 || status == 137)); then
  echo "error: the tests did not finish within $TEST_TIME_LIMIT; the test cargo reported as" \
    "'running for over 60 seconds' above is the one that hung" >&2
fi
((status == 0)) || exit "$status"

if (($# == 0)); then
  echo "==> OpenAPI contracts (schemathesis)"
  ./scripts/contract.sh
  echo "==> load proof: user-mix at 1000 requests/s for 20 s (release build)"
  ./scripts/load-user.sh --duration 20s --out target/load/user-mix
  echo "==> distributed mode: scripts/distributed-up.sh, the shop journey, scripts/distributed-down.sh"
  distributed_journey
fi
