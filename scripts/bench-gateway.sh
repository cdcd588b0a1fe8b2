#!/usr/bin/env bash
# The gateway's cost, measured against its peers in one run (release binaries, loopback):
#   1. throughput through the gateway vs through nginx `proxy_pass` (2 workers, as the
#      gateway has 2 runtime threads on this machine) to the same upstream (an nginx that
#      answers `200 ok`), with wrk -t1 -c32, rounds alternating:
#        bare      a public route, telemetry off (OTEL_SDK_DISABLED=true)
#        telemetry a public route, every span exported over OTLP to a local sink
#        full      a protected route: JWT verification, rate limiting, telemetry exported
#   2. the latency the gateway adds at 1000 requests/s: p99 of GET /api/users/{id} through
#      the gateway (signed in) minus p99 of GET /users/{id} straight at the user service,
#      each 30 s with loadtest, telemetry on in every service.
# Usage: scripts/bench-gateway.sh [--rounds 2] [--duration 10s] [--out DIR]
# Prints a Markdown summary and writes it to DIR/summary.md (default target/bench-gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

rounds=2 duration=10s out=target/bench-gateway
while (($#)); do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

ensure_packages
echo "==> cargo build --release (gateway, auth, user, loadtest)"
cargo build --release --locked -q -p sloop-gateway -p sloop-auth -p sloop-user -p loadtest
mkdir -p "$out"
work="$(mktemp -d /tmp/sloop-bench-gateway.XXXXXX)"
cleanup() {
  stop_servers
  rm -rf "$work"
}
trap cleanup EXIT
start_otlp_sink "$work/sink.json"

# The upstream and the nginx proxy, one configuration each.
upstream_port="$(free_port)" nginx_port="$(free_port)"
nginx_conf() {
  local name="$1" server="$2"
  mkdir -p "$work/$name/logs"
  cat >"$work/$name/nginx.conf" <<CONF
worker_processes 2;
pid $work/$name/nginx.pid;
error_log $work/$name/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:$upstream_port; keepalive 128; }
  $server
}
CONF
  nginx -p "$work/$name" -c "$work/$name/nginx.conf" -g 'daemon off;' &
  SLOOP_PIDS+=("$!")
}
nginx_conf upstream "server { listen 127.0.0.1:$upstream_port; location / { return 200 'ok'; } }"
nginx_conf proxy "server { listen 127.0.0.1:$nginx_port; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

user_port="$(free_port)" auth_port="$(free_port)" gateway_port="$(free_port)"
telemetry_env=(OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_ENDPOINT" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf LOG_FORMAT=json RUST_LOG=warn)
env "${telemetry_env[@]}" target/release/sloop-user --listen "127.0.0.1:$user_port" \
  --database-url "sqlite://$work/user.db" >"$work/user.log" 2>&1 &
SLOOP_PIDS+=("$!")
env "${telemetry_env[@]}" target/release/sloop-auth --listen "127.0.0.1:$auth_port" \
  --database-url "sqlite://$work/auth.db" --upstream "user=http://127.0.0.1:$user_port" \
  >"$work/auth.log" 2>&1 &
SLOOP_PIDS+=("$!")
wait_for_http "http://127.0.0.1:$user_port/readyz"
wait_for_http "http://127.0.0.1:$auth_port/readyz"

# The built-in routes, a bench upstream (public and protected), and no practical rate
# limit (the limiter still runs on every request).
target/release/sloop-gateway --print-config \
  | sed 's/rate_limit: { rate: 100, burst: 200 }/rate_limit: { rate: 1000000, burst: 1000000 }/' \
  | sed "s#^upstreams:#upstreams:\n  bench: http://127.0.0.1:$upstream_port#" >"$work/gateway.yaml"
cat >>"$work/gateway.yaml" <<YAML
  - { prefix: /api/open, upstream: bench, strip: /api, public: true }
  - { prefix: /api/closed, upstream: bench, strip: /api }
YAML
gateway() {
  local mode="$1" env=(LOG_FORMAT=json RUST_LOG=warn)
  if [[ "$mode" == bare ]]; then env+=(OTEL_SDK_DISABLED=true); else env+=("${telemetry_env[@]}"); fi
  env "${env[@]}" target/release/sloop-gateway --listen "127.0.0.1:$gateway_port" --config "$work/gateway.yaml" \
    --upstream "user=http://127.0.0.1:$user_port" --upstream "auth=http://127.0.0.1:$auth_port" \
    >>"$work/gateway.log" 2>&1 &
  GATEWAY_PID=$!
  SLOOP_PIDS+=("$GATEWAY_PID")
  wait_for_http "http://127.0.0.1:$gateway_port/readyz"
}

# A token for the protected route.
gateway bare
token="$(python3 - "http://127.0.0.1:$gateway_port" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=10))
account = {"email": "bench@example.com", "password": "correct horse battery", "name": "Bench"}
post("/api/auth/register", account)
print(post("/api/auth/login", {"email": account["email"], "password": account["password"]})["access_token"])
PY
)"
stop_pid "$GATEWAY_PID"

rps() { awk '/^Requests\/sec:/ {printf "%d", $2}' "$1"; }
declare -A total=([nginx]=0 [bare]=0 [telemetry]=0 [full]=0)
declare -A runs=([nginx]="" [bare]="" [telemetry]="" [full]="")
for ((round = 1; round <= rounds; round++)); do
  echo "==> round $round: nginx"
  wrk -t1 -c32 -d"$duration" "http://127.0.0.1:$nginx_port/open/x" >"$work/nginx-$round.txt"
  r="$(rps "$work/nginx-$round.txt")"; total[nginx]=$((total[nginx] + r)); runs[nginx]+="$r "
  for mode in bare telemetry full; do
    gateway "$mode"
    path=/api/open/x header=()
    if [[ "$mode" == full ]]; then path=/api/closed/x header=(-H "Authorization: Bearer $token"); fi
    echo "==> round $round: gateway $mode"
    wrk -t1 -c32 -d"$duration" "${header[@]}" "http://127.0.0.1:$gateway_port$path" >"$work/$mode-$round.txt"
    r="$(rps "$work/$mode-$round.txt")"; total[$mode]=$((total[$mode] + r)); runs[$mode]+="$r "
    grep -q "Non-2xx" "$work/$mode-$round.txt" && { echo "gateway $mode answered errors:"; cat "$work/$mode-$round.txt"; exit 1; }
    stop_pid "$GATEWAY_PID"
  done
done

echo "==> latency added at 1000 requests/s"
gateway full
target/release/loadtest tests/load/scenarios/gateway-read.yaml --target "http://127.0.0.1:$gateway_port" \
  --out "$out/through-gateway" | tail -n 8
target/release/loadtest tests/load/scenarios/user-read.yaml --target "http://127.0.0.1:$user_port" \
  --duration 30s --out "$out/direct" | tail -n 8
p99() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["overall"]["latency_ms"]["p99"])' "$1/result.json"; }
through="$(p99 "$out/through-gateway")" direct="$(p99 "$out/direct")"

ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f'{a / b:.2f}' if b else 'n/a')" "$1" "$2"; }
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
{
  echo "Run of $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores ($cpu); wrk -t1 -c32 -d$duration, $rounds alternating rounds."
  echo
  echo "| figure | gateway | nginx, same rounds | ratio |"
  echo "| --- | --- | --- | --- |"
  for mode in bare telemetry full; do
    echo "| throughput, $mode (req/s per round: ${runs[$mode]% }) | $((total[$mode] / rounds)) | $((total[nginx] / rounds)) (${runs[nginx]% }) | $(ratio "${total[$mode]}" "${total[nginx]}") |"
  done
  echo
  echo "| figure | through the gateway | direct | added |"
  echo "| --- | --- | --- | --- |"
  echo "| p99 at 1000 req/s, GET user by id (ms) | $through | $direct | $(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.2f}')" "$through" "$direct") |"
} | tee "$out/summary.md"
