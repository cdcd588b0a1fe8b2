#!/usr/bin/env bash
# Runs a load scenario against the user service, both as release binaries in their own
# processes, the way they run in production.
#
# Usage: scripts/load-user.sh [options] [-- extra loadtest flags]
#   --duration D        replace every stage's duration (default: the scenario's, 60 s)
#   --rate-scale F      scale every stage's rate (default 1)
#   --database KIND     sqlite (default) or postgres (a throwaway server is started)
#   --telemetry on|off  on (default): every span exported over OTLP/HTTP to a local sink,
#                       metrics recorded, logs written; off: OTEL_SDK_DISABLED=true
#   --scenario FILE     default tests/load/scenarios/user-mix.yaml
#   --out DIR           default results/user-mix
#
# Exit status is loadtest's (0 when every threshold holds), or 1 when telemetry was on and
# no span reached the sink. Prints the service's resident memory: idle (the first sample,
# once ready) and peak and median under load.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

duration="" rate_scale=1 database=sqlite telemetry=on
scenario=tests/load/scenarios/user-mix.yaml out=results/user-mix extra=()
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --rate-scale) rate_scale="$2"; shift 2 ;;
    --database) database="$2"; shift 2 ;;
    --telemetry) telemetry="$2"; shift 2 ;;
    --scenario) scenario="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

ensure_packages
echo "==> cargo build --release (sloop-user, loadtest)"
cargo build --release --locked -q -p sloop-user -p loadtest

mkdir -p "$out"
work="$(mktemp -d /tmp/sloop-load.XXXXXX)"
cleanup() {
  stop_servers
  [[ "$database" != postgres ]] || stop_postgres
  rm -rf "$work"
}
trap cleanup EXIT

case "$database" in
  sqlite) database_url="sqlite://$work/user.db" ;;
  postgres) start_postgres; database_url="$POSTGRES_URL" ;;
  *) echo "--database must be sqlite or postgres" >&2; exit 2 ;;
esac

if [[ "$telemetry" == on ]]; then
  start_otlp_sink "$work/sink.json"
fi
start_user_service "$database_url" "$telemetry" "$out/service.log"
sample_rss "$USER_PID" "$work/rss"
echo "==> sloop-user (pid $USER_PID) at $USER_URL, $database, telemetry $telemetry"

args=("$scenario" --target "$USER_URL" --out "$out" --rate-scale "$rate_scale")
[[ -z "$duration" ]] || args+=(--duration "$duration")
status=0
target/release/loadtest "${args[@]}" "${extra[@]}" || status=$?

rss_summary "$work/rss"

stop_servers
if [[ "$telemetry" == on ]]; then
  exports="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["exports"])' "$work/sink.json")"
  echo "==> OTLP sink received $exports exports"
  if ((exports == 0)); then
    echo "telemetry was on but no span reached the OTLP sink; see $out/service.log" >&2
    status=1
  fi
fi
exit "$status"
