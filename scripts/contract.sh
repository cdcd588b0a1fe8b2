#!/usr/bin/env bash
# The OpenAPI contract of every service, checked by an independent fuzzer: schemathesis
# (from PyPI, pinned) generates requests from each service's /openapi.json, valid and
# invalid, and fails when a response's status, content type or body is not what the
# document says, when a 5xx comes back, or when invalid input is accepted.
#
# Usage: scripts/contract.sh [--examples N]
# Starts user, auth and the gateway from debug builds on free loopback ports (SQLite, the
# in-memory bus), then fuzzes user and auth directly and the whole API through the
# gateway with an admin's token. Exit status 1 when any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

examples=50
while (($#)); do
  case "$1" in
    --examples) examples="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

ensure_packages
ensure_schemathesis
echo "==> cargo build (sloop-user, sloop-auth, sloop-gateway)"
cargo build --locked -q -p sloop-user -p sloop-auth -p sloop-gateway

work="$(mktemp -d /tmp/sloop-contract.XXXXXX)"
cleanup() {
  stop_servers
  rm -rf "$work"
}
trap cleanup EXIT

user_port="$(free_port)" auth_port="$(free_port)" gateway_port="$(free_port)"
export LOG_FORMAT=json RUST_LOG=warn
target/debug/sloop-user --listen "127.0.0.1:$user_port" --database-url "sqlite://$work/user.db" \
  >"$work/user.log" 2>&1 &
SLOOP_PIDS+=("$!")
AUTH_HASH_MEMORY_KIB=1024 AUTH_HASH_ITERATIONS=1 AUTH_ADMIN_EMAILS=contract@example.com \
  target/debug/sloop-auth --listen "127.0.0.1:$auth_port" --database-url "sqlite://$work/auth.db" \
  --upstream "user=http://127.0.0.1:$user_port" >"$work/auth.log" 2>&1 &
SLOOP_PIDS+=("$!")
target/debug/sloop-gateway --listen "127.0.0.1:$gateway_port" \
  --upstream "user=http://127.0.0.1:$user_port" --upstream "auth=http://127.0.0.1:$auth_port" \
  >"$work/gateway.log" 2>&1 &
SLOOP_PIDS+=("$!")
for port in "$user_port" "$auth_port" "$gateway_port"; do
  wait_for_http "http://127.0.0.1:$port/readyz"
done

# An admin, so the fuzzer can reach every route through the gateway.
token="$(python3 - "http://127.0.0.1:$gateway_port" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
def post(path, body):
    request = urllib.request.Request(base + path, json.dumps(body).encode(),
                                     {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=10))
account = {"email": "contract@example.com", "password": "contract passphrase", "name": "Contract"}
post("/api/auth/register", account)
print(post("/api/auth/login", {"email": account["email"], "password": account["password"]})["access_token"])
PY
)"

status=0
# One worker: schemathesis' coverage phase trips a CPython 3.11 ast bug with several.
fuzz() {
  local name="$1" url="$2"; shift 2
  echo "==> schemathesis: $name ($url)"
  "$SCHEMATHESIS" run "$url" --checks all --max-examples "$examples" --seed 42 --workers 1 \
    --request-timeout 10 --report junit --report-junit-path "$work/$name.xml" "$@" || {
    status=1
    echo "contract of $name broken: see the failures above; logs in $work" >&2
  }
}
fuzz user "http://127.0.0.1:$user_port/openapi.json"
fuzz auth "http://127.0.0.1:$auth_port/openapi.json" -H "x-user-id: contract" -H "x-user-roles: user,admin"
fuzz gateway "http://127.0.0.1:$gateway_port/openapi.json" -H "Authorization: Bearer $token"
if ((status != 0)); then
  for log in user auth gateway; do
    echo "--- $log log (last lines)"; tail -n 20 "$work/$log.log"
  done
fi
exit "$status"
