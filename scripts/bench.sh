#!/usr/bin/env bash
# The four benchmarks of BENCHMARKS.md, in one run so every ratio compares figures taken on
# the same machine minutes apart. Release binaries, each in its own process, loopback only.
#
# Usage: scripts/bench.sh [--trial 10s] [--precision 0.05] [--out DIR]
#   1. read ceiling: the highest GET /users/{id} rate with p99 < 200 ms, no failure and
#      nothing dropped (loadtest --find-max), on SQLite and on PostgreSQL;
#   2. telemetry cost: the same ceiling on SQLite with telemetry on (every span exported to
#      a local OTLP sink) and off (OTEL_SDK_DISABLED=true);
#   3. the load tester's own ceiling against wrk, both on GET /healthz of one service;
#   4. the service's resident memory at 1000 requests/s (the user-mix scenario, 60 s)
#      against its idle memory.
# Prints a Markdown summary at the end and writes it to DIR/summary.md (default
# target/bench). Takes about 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

trial=10s precision=0.05 out=target/bench
while (($#)); do
  case "$1" in
    --trial) trial="$2"; shift 2 ;;
    --precision) precision="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

ensure_packages
echo "==> cargo build --release (sloop-user, loadtest)"
cargo build --release --locked -q -p sloop-user -p loadtest
mkdir -p "$out"
work="$(mktemp -d /tmp/sloop-bench.XXXXXX)"
cleanup() {
  stop_servers
  stop_postgres
  rm -rf "$work"
}
trap cleanup EXIT
start_postgres
start_otlp_sink "$work/sink.json"

# Sets CEILING to the highest rate of scenario $1 that USER_URL sustains; the search goes
# to $out/$2. Not run in a $(...) subshell: servers it starts must stay in SLOOP_PIDS.
ceiling() {
  local scenario="$1" name="$2"
  target/release/loadtest "$scenario" --target "$USER_URL" --out "$out/$name" \
    --find-max --trial "$trial" --precision "$precision" --start-rate 1000
  CEILING="$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["max_rate"] or 0))' \
    "$out/$name/search.json")"
}

# `ceiling` against a fresh service on database $1 with telemetry $2.
service_ceiling() {
  local database_url="$1" telemetry="$2" scenario="$3" name="$4"
  start_user_service "$database_url" "$telemetry" "$out/$name.service.log"
  echo "==> $name: sloop-user at $USER_URL"
  ceiling "$scenario" "$name"
  stop_pid "$USER_PID"
}

read_scenario=tests/load/scenarios/user-read.yaml
service_ceiling "sqlite://$work/on.db" on "$read_scenario" read-sqlite
sqlite_on="$CEILING"
service_ceiling "$POSTGRES_URL" on "$read_scenario" read-postgres
postgres_on="$CEILING"
service_ceiling "sqlite://$work/off.db" off "$read_scenario" read-sqlite-telemetry-off
sqlite_off="$CEILING"

# 3. The tester against wrk on the cheapest route, so the tester's own cost dominates.
start_user_service "sqlite://$work/healthz.db" on "$out/healthz.service.log"
echo "==> wrk -t2 -c64 -d${trial} $USER_URL/healthz"
wrk -t2 -c64 -d"$trial" --latency "$USER_URL/healthz" | tee "$out/wrk.txt"
wrk_rps="$(awk '/^Requests\/sec:/ {printf "%d", $2}' "$out/wrk.txt")"
wrk_p99="$(awk '$1 == "99%" {print $2}' "$out/wrk.txt")"
ceiling tests/load/scenarios/healthz.yaml tester-ceiling
tester_max="$CEILING"
stop_pid "$USER_PID"

# 4. Memory at 1000 requests/s: the user-mix scenario, telemetry on, 60 s.
scripts/load-user.sh --out "$out/user-mix" | tee "$out/user-mix.txt"
rss_line="$(grep '^==> sloop-user RSS' "$out/user-mix.txt")"
p99_mix="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["overall"]["latency_ms"]["p99"])' "$out/user-mix/result.json")"
rss_idle="$(sed -E 's/.*idle ([0-9.]+) MiB.*/\1/' <<<"$rss_line")"
rss_peak="$(sed -E 's/.*peak ([0-9.]+) MiB.*/\1/' <<<"$rss_line")"

ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}' if b else 'n/a')" "$1" "$2"; }
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
{
  echo "Run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($cpu), trials of $trial, precision $precision."
  echo
  echo "| figure | measured | peer, same run | ratio |"
  echo "| --- | --- | --- | --- |"
  echo "| read ceiling, p99 < 200 ms, PostgreSQL vs SQLite | $postgres_on req/s | SQLite $sqlite_on req/s | $(ratio "$postgres_on" "$sqlite_on") |"
  echo "| read ceiling, telemetry off vs on (SQLite) | $sqlite_off req/s | on: $sqlite_on req/s | $(ratio "$sqlite_off" "$sqlite_on") |"
  echo "| loadtest ceiling vs wrk, GET /healthz | $tester_max req/s (p99 < 200 ms, nothing dropped) | wrk -t2 -c64: $wrk_rps req/s (p99 $wrk_p99) | $(ratio "$tester_max" "$wrk_rps") |"
  echo "| RSS at 1000 req/s (user-mix 60 s, telemetry on, p99 $p99_mix ms) vs idle | peak $rss_peak MiB | idle $rss_idle MiB | $(ratio "$rss_peak" "$rss_idle") |"
} | tee "$out/summary.md"
