#!/usr/bin/env bash
# The order saga's benchmark of BENCHMARKS.md: orders placed per second against orders
# confirmed per second, and placement-to-confirmation latency (p50, p99), on SQLite with
# the in-memory bus and on PostgreSQL with a Tansu broker, in one run.
#
# Usage: scripts/bench-saga.sh [extra saga-bench flags, e.g. --orders 4000 --rate 50]
# Builds the benchmark in release, starts PostgreSQL on a free loopback port, installs
# Tansu if missing (see scripts/lib.sh), and prints one Markdown table per bus.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages
ensure_tansu
echo "==> cargo build --release (saga-bench)"
cargo build --release --locked -q -p platform-tests --example saga-bench
start_postgres
trap stop_postgres EXIT
export SLOOP_TEST_POSTGRES_URL="$POSTGRES_URL" TANSU_BIN RUST_LOG=warn
for bus in memory kafka; do
  echo "==> saga-bench --bus $bus"
  target/release/examples/saga-bench --bus "$bus" "$@"
done
