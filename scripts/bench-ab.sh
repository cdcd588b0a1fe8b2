#!/usr/bin/env bash
# Two builds of sloop-user against each other on the read path, telemetry on (every span
# exported over OTLP/HTTP to scripts/otlp-sink.py), SQLite: for a change to what every
# request does (spans, layers), measured as ratios because this machine is shared.
#
# Usage: scripts/bench-ab.sh A_BINARY B_BINARY [--rounds 3] [--duration 8s] [--out DIR]
#   e.g. build the old commit in a worktree, copy its target/release/sloop-user to
#   /tmp/sloop-user-a, then: scripts/bench-ab.sh /tmp/sloop-user-a target/release/sloop-user
# Each round runs A then B: a fresh process, one user created, then
# `wrk -t1 -c32 -d DURATION` on GET /users/{id}. Per run it reports requests/s and the
# service's CPU time per request (user + system from /proc/PID/stat over the wrk run).
# Prints a Markdown table with the medians and the B/A ratios; writes it to DIR/ab.md
# (default target/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

[[ $# -ge 2 ]] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
a_bin="$1" b_bin="$2"
shift 2
rounds=3 duration=8s out=target/bench
while (($#)); do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1; see --help" >&2; exit 2 ;;
  esac
done
for bin in "$a_bin" "$b_bin"; do
  [[ -x "$bin" ]] || { echo "$bin is not an executable; build it with cargo build --release -p sloop-user" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }

mkdir -p "$out"
work="$(mktemp -d /tmp/sloop-ab.XXXXXX)"
trap 'stop_servers; rm -rf "$work"' EXIT
start_otlp_sink "$work/sink.json"
ticks="$(getconf CLK_TCK)"

# Prints "requests/s cpu_us_per_request" for one fresh process of binary $1.
measure() {
  local bin="$1" tag="$2" id before after rps requests
  SLOOP_USER_BIN="$bin" start_user_service "sqlite://$work/$tag.db" on "$work/$tag.log"
  id="$(curl -sf -X POST "$USER_URL/users" -H 'content-type: application/json' \
    -d "{\"email\":\"ab-$tag@example.com\",\"name\":\"AB\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  wrk -t1 -c32 -d2s "$USER_URL/users/$id" >/dev/null # warm-up: caches, connections
  before="$(awk '{print $14 + $15}' "/proc/$USER_PID/stat")"
  wrk -t1 -c32 -d"$duration" "$USER_URL/users/$id" >"$work/$tag.wrk"
  after="$(awk '{print $14 + $15}' "/proc/$USER_PID/stat")"
  stop_pid "$USER_PID"
  rps="$(awk '/^Requests\/sec:/ {print $2}' "$work/$tag.wrk")"
  requests="$(awk '/requests in/ {print $1}' "$work/$tag.wrk")"
  python3 -c "import sys; t, ticks, n, rps = map(float, sys.argv[1:]); print(f'{rps:.0f} {t / ticks / n * 1e6:.1f}')" \
    "$((after - before))" "$ticks" "$requests" "$rps"
}

: >"$work/runs"
for ((round = 1; round <= rounds; round++)); do
  for side in A B; do
    bin="$a_bin"; [[ "$side" == B ]] && bin="$b_bin"
    read -r rps cpu < <(measure "$bin" "$side$round")
    echo "==> round $round $side: $rps req/s, $cpu µs CPU per request"
    echo "$side $rps $cpu" >>"$work/runs"
  done
done

python3 - "$work/runs" "$a_bin" "$b_bin" >"$out/ab.md" <<'PY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1])]
col = lambda side, i: [float(r[i]) for r in runs if r[0] == side]
med = lambda xs: statistics.median(xs)
spread = lambda xs: f"{min(xs):.0f}–{max(xs):.0f}" if xs[0] > 100 else f"{min(xs):.1f}–{max(xs):.1f}"
print(f"A = `{sys.argv[2]}`, B = `{sys.argv[3]}`, {len(col('A', 1))} alternating rounds\n")
print("| measure | A median (range) | B median (range) | B / A |")
print("| --- | --- | --- | --- |")
for name, i in (("requests/s", 1), ("CPU µs per request", 2)):
    a, b = col("A", i), col("B", i)
    print(f"| {name} | {med(a):.1f} ({spread(a)}) | {med(b):.1f} ({spread(b)}) | {med(b) / med(a):.2f} |")
PY
cat "$out/ab.md"
