#!/usr/bin/env bash
# Measures `sloop up` (release build, SQLite, the in-memory bus, spans exported to a local
# OTLP sink): start-up time from the command to every /readyz green (the summary printed),
# resident memory idle, and resident memory and latency under the shop mix at 1000
# requests/s through its gateway.
#
# Usage: scripts/bench-up.sh [--duration D] [--out DIR]
#   --duration D  the load phase (default 30s)
#   --out DIR     loadtest's reports (default results/sloop-up)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

duration=30s out=results/sloop-up
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

ensure_packages
echo "==> cargo build --release (sloop, loadtest)"
cargo build --release --locked -q -p sloop -p loadtest
mkdir -p "$out"
work="$(mktemp -d /tmp/sloop-bench-up.XXXXXX)"
trap 'stop_servers; rm -rf "$work"' EXIT

# The built-in routes with a per-client limit the load's one client stays under.
sed 's/^rate_limit: { rate: 100, burst: 200 }$/rate_limit: { rate: 100000, burst: 100000 }/' \
  services/gateway/gateway.yaml >"$work/gateway.yaml"
grep -q 'rate: 100000' "$work/gateway.yaml" || { echo "the gateway's rate-limit line changed shape" >&2; exit 1; }

start_otlp_sink "$work/sink.json"
port_offset=20000
started="$(date +%s.%N)"
OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_ENDPOINT" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf RUST_LOG=warn \
  target/release/sloop up --data-dir "$work/data" --port-offset "$port_offset" \
  --admin-email bench-admin@example.com --gateway-config "$work/gateway.yaml" >"$out/sloop.log" 2>&1 &
SLOOP_PID=$!
SLOOP_PIDS+=("$SLOOP_PID")
for _ in $(seq 600); do
  grep -q "Ctrl-C stops everything" "$out/sloop.log" && break
  kill -0 "$SLOOP_PID" 2>/dev/null || { cat "$out/sloop.log" >&2; exit 1; }
  sleep 0.05
done
ready="$(date +%s.%N)"
grep -q "Ctrl-C stops everything" "$out/sloop.log" || { echo "sloop up printed no summary in 30 s" >&2; exit 1; }
python3 -c "import sys; print(f'==> start-up: {float(sys.argv[2]) - float(sys.argv[1]):.2f} s from the command to every /readyz green')" "$started" "$ready"
grep "ready in" "$out/sloop.log"

sleep 5
echo "==> idle: $(awk '/^VmRSS:/ {printf "%.1f MiB", $2 / 1024}' "/proc/$SLOOP_PID/status") resident, $(ls "/proc/$SLOOP_PID/task" | wc -l) threads"

sample_rss "$SLOOP_PID" "$work/rss"
status=0
target/release/loadtest tests/load/scenarios/shop-mix.yaml --target "http://127.0.0.1:$((8080 + port_offset))" \
  --duration "$duration" --out "$out" || status=$?
rss_summary "$work/rss" "sloop up"
exit "$status"
