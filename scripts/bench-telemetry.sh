#!/usr/bin/env bash
# What telemetry costs on the read path of sloop-user, as ratios against a peer measured in
# the same run (this machine is shared and noisy), or two builds against each other.
#
# Usage: scripts/bench-telemetry.sh [--rounds 3] [--duration 8s] [--rate 2000] [--out DIR]
#                                   [VARIANT ...]
#   VARIANT is NAME=BINARY[,ENV=VALUE ...]; the first one is the baseline of every ratio.
#   With none given it compares, all with target/release/sloop-user:
#     off      OTEL_SDK_DISABLED=true: no span, no request metrics, no per-request layer
#     on       every span exported over OTLP/HTTP (to scripts/otlp-sink.py), request
#              metrics, JSON logs on stdout
#     sampled  as on, 10 % of traces sampled (OTEL_TRACES_SAMPLER=traceidratio)
#   Two builds: scripts/bench-telemetry.sh old=/tmp/sloop-user-old new=target/release/sloop-user
# Each round runs every variant in turn: a fresh process on SQLite, one user created, a 2 s
# warm-up, then GET /users/{id} two ways, measuring the service's CPU time (user + system,
# /proc/PID/stat) per request:
#   closed loop  wrk -t1 -c32 for DURATION: requests/s and CPU µs per request
#   fixed rate   target/release/loadtest at RATE req/s for DURATION: CPU µs per request
# Prints Markdown tables of medians, ranges and ratios; writes them to DIR/telemetry.md
# (default target/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
rounds=3 duration=8s rate=2000 out=target/bench variants=()
while (($#)); do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $1; see --help" >&2; exit 2 ;;
    *=*) variants+=("$1"); shift ;;
    *) echo "a variant is NAME=BINARY[,ENV=VALUE ...], not $1; see --help" >&2; exit 2 ;;
  esac
done
ensure_packages # wrk, python3, curl
if ((${#variants[@]} == 0)); then
  echo "==> cargo build --release (sloop-user, loadtest)"
  cargo build --release --locked -q -p sloop-user -p loadtest
  variants=(
    "off=target/release/sloop-user,OTEL_SDK_DISABLED=true"
    "on=target/release/sloop-user"
    "sampled=target/release/sloop-user,OTEL_TRACES_SAMPLER=traceidratio,OTEL_TRACES_SAMPLER_ARG=0.1"
  )
fi
for variant in "${variants[@]}"; do
  bin="${variant#*=}"; bin="${bin%%,*}"
  [[ -x "$bin" ]] || { echo "$bin is not an executable; build it with cargo build --release -p sloop-user" >&2; exit 2; }
done
[[ -x target/release/loadtest ]] || { echo "target/release/loadtest is missing: cargo build --release -p loadtest" >&2; exit 2; }

mkdir -p "$out"
work="$(mktemp -d /tmp/sloop-bench-telemetry.XXXXXX)"
trap 'stop_servers; rm -rf "$work"' EXIT
start_otlp_sink "$work/sink.json"
ticks="$(getconf CLK_TCK)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Prints "requests/s closed_loop_cpu_us fixed_rate_cpu_us" for one fresh process of variant $1.
measure() {
  local spec="${1#*=}" tag="$2" bin env_pairs pair id before after rps requests closed fixed
  bin="${spec%%,*}"
  env_pairs=()
  [[ "$spec" == *,* ]] && IFS=, read -r -a env_pairs <<<"${spec#*,}"
  # The variant's settings apply to this one process only.
  for pair in "${env_pairs[@]}"; do export "${pair?}"; done
  SLOOP_USER_BIN="$bin" start_user_service "sqlite://$work/$tag.db" on "$work/$tag.log"
  for pair in "${env_pairs[@]}"; do unset "${pair%%=*}"; done
  id="$(curl -sf -X POST "$USER_URL/users" -H 'content-type: application/json' \
    -d "{\"email\":\"bench-$tag@example.com\",\"name\":\"Bench\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
  wrk -t1 -c32 -d2s "$USER_URL/users/$id" >/dev/null # warm-up: caches, connections

  before="$(cpu_ticks "$USER_PID")"
  wrk -t1 -c32 -d"$duration" "$USER_URL/users/$id" >"$work/$tag.wrk"
  after="$(cpu_ticks "$USER_PID")"
  rps="$(awk '/^Requests\/sec:/ {print $2}' "$work/$tag.wrk")"
  requests="$(awk '/requests in/ {print $1}' "$work/$tag.wrk")"
  closed="$(python3 -c "import sys; t, k, n = map(float, sys.argv[1:]); print(f'{t / k / n * 1e6:.1f}')" "$((after - before))" "$ticks" "$requests")"

  printf 'name: fixed\nbase_url: %s\nstages:\n  - { duration: %s, rate: %s }\nsteps:\n  - { name: get, path: "/users/%s" }\n' \
    "$USER_URL" "$duration" "$rate" "$id" >"$work/fixed.yaml"
  before="$(cpu_ticks "$USER_PID")"
  target/release/loadtest "$work/fixed.yaml" --threads 1 --out "$work/$tag.fixed" >/dev/null 2>&1 || true
  after="$(cpu_ticks "$USER_PID")"
  requests="$(python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); print(r["overall"]["requests"])' "$work/$tag.fixed/result.json")"
  fixed="$(python3 -c "import sys; t, k, n = map(float, sys.argv[1:]); print(f'{t / k / n * 1e6:.1f}')" "$((after - before))" "$ticks" "$requests")"

  stop_pid "$USER_PID"
  echo "$rps $closed $fixed"
}

: >"$work/runs"
for ((round = 1; round <= rounds; round++)); do
  for variant in "${variants[@]}"; do
    name="${variant%%=*}"
    measure "$variant" "$name$round" >"$work/last" # not in a subshell: stop_servers must see the process
    read -r rps closed fixed <"$work/last"
    echo "==> round $round $name: $rps req/s, $closed µs CPU per request (closed loop), $fixed µs at $rate req/s"
    echo "$name $rps $closed $fixed" >>"$work/runs"
  done
done

python3 - "$work/runs" "$rounds" "$duration" "$rate" "${variants[@]}" >"$out/telemetry.md" <<'PY'
import statistics, sys
runs_file, rounds, duration, rate, *variants = sys.argv[1:]
runs = [line.split() for line in open(runs_file)]
names = [v.split("=", 1)[0] for v in variants]
col = lambda name, i: [float(r[i]) for r in runs if r[0] == name]
med = statistics.median
fmt = lambda x: f"{x:.0f}" if x >= 100 else f"{x:.1f}"
print(f"{rounds} alternating rounds, each variant a fresh process; closed loop `wrk -t1 -c32 -d{duration}`, "
      f"fixed rate `loadtest` at {rate} req/s for {duration}; ratios against `{names[0]}`\n")
for v in variants:
    print(f"- `{v}`")
print()
print("| variant | requests/s (range) | ratio | CPU µs/request, closed loop (range) | ratio | CPU µs/request at fixed rate (range) | ratio |")
print("| --- | --- | --- | --- | --- | --- | --- |")
base = [med(col(names[0], i)) for i in (1, 2, 3)]
for name in names:
    cells = []
    for i in (1, 2, 3):
        xs = col(name, i)
        cells += [f"{fmt(med(xs))} ({fmt(min(xs))}–{fmt(max(xs))})", f"{med(xs) / base[i - 1]:.2f}"]
    print(f"| {name} | " + " | ".join(cells) + " |")
PY
cat "$out/telemetry.md"
