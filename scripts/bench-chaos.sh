#!/usr/bin/env bash
# What the fault layer costs a service, in CPU time per request, from one run (release
# sloop-user on SQLite, telemetry off, wrk -t1 -c16 on GET /users/{id}, rounds alternating):
#   off   started without --chaos: the layer is compiled in but not mounted
#   idle  --chaos with no rule: every request consults an empty rule list
#   miss  --chaos with one rule matching a header no request carries: every request is
#         matched against a rule and let through
# CPU per request = the service process's user + system time over the wrk run (from
# /proc/PID/stat) divided by the requests wrk completed; ratios are against `off` in the
# same round.
# Usage: scripts/bench-chaos.sh [--rounds 3] [--duration 10s] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

rounds=3 duration=10s out=target/bench-chaos
while (($#)); do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

ensure_packages
echo "==> cargo build --release (user)"
cargo build --release --locked -q -p sloop-user
mkdir -p "$out"
work="$(mktemp -d /tmp/sloop-bench-chaos.XXXXXX)"
cleanup() {
  stop_servers
  rm -rf "$work"
}
trap cleanup EXIT
ticks="$(getconf CLK_TCK)"
token=bench-token

# user+system CPU ticks of process $1
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

results="$work/results.tsv"
for round in $(seq 1 "$rounds"); do
  for mode in off idle miss; do
    args=()
    [[ "$mode" != off ]] && args=(--chaos)
    CHAOS_TOKEN="$token" start_user_service "sqlite://$work/user-$round-$mode.db" off \
      "$work/user-$round-$mode.log" "${args[@]}"
    id="$(curl -sf -X POST "$USER_URL/users" -H 'content-type: application/json' \
      -d '{"email":"bench@example.com","name":"Bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
    if [[ "$mode" == miss ]]; then
      curl -sf -X POST "$USER_URL/chaos/faults" -H "authorization: Bearer $token" \
        -H 'content-type: application/json' \
        -d '{"match":{"headers":{"x-never":"1"}},"action":{"abort":{"status":503}},"ttl":"10m"}' >/dev/null
    fi
    wrk -t1 -c16 -d2s "$USER_URL/users/$id" >/dev/null # warm up
    before="$(cpu_ticks "$USER_PID")"
    wrk -t1 -c16 -d"$duration" "$USER_URL/users/$id" >"$work/wrk-$round-$mode.txt"
    after="$(cpu_ticks "$USER_PID")"
    requests="$(awk '/requests in/ {print $1}' "$work/wrk-$round-$mode.txt")"
    rps="$(awk '/Requests\/sec/ {print $2}' "$work/wrk-$round-$mode.txt")"
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$((after - before))" "$requests" "$rps" >>"$results"
    echo "round $round $mode: $requests requests, $rps req/s, $((after - before)) CPU ticks"
    stop_pid "$USER_PID"
  done
done

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
python3 - "$results" "$ticks" "$cpu" "$duration" >"$out/summary.md" <<'PY'
import sys, statistics
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
ticks = float(sys.argv[2])
per = {}   # mode -> [µs CPU per request]
ratio = {} # mode -> [ratio to off in the same round]
by_round = {}
for r, mode, t, n, rps in rows:
    us = float(t) / ticks / float(n) * 1e6
    per.setdefault(mode, []).append(us)
    by_round.setdefault(r, {})[mode] = us
for r, modes in by_round.items():
    for mode, us in modes.items():
        ratio.setdefault(mode, []).append(us / modes["off"])
print(f"CPU per request of sloop-user (release, SQLite, telemetry off), GET /users/{{id}}, wrk -t1 -c16 for {sys.argv[4]} per round, {len(by_round)} rounds alternating; {sys.argv[3]}, {ticks:.0f} ticks/s.\n")
print("| chaos | CPU per request (median µs) | vs off (median of per-round ratios) |")
print("| --- | ---: | ---: |")
names = {"off": "off (not mounted)", "idle": "on, no rules", "miss": "on, one rule that never matches"}
for mode in ["off", "idle", "miss"]:
    print(f"| {names[mode]} | {statistics.median(per[mode]):.1f} | {statistics.median(ratio[mode]):.3f} |")
PY
cat "$out/summary.md"
