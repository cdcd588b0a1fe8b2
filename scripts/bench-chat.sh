#!/usr/bin/env bash
# The chat fan-out benchmark of BENCHMARKS.md: a release `sloop-chat` (SQLite, the
# in-memory bus) with one room of 1000 members, each holding a WebSocket; one sender posts
# messages at a fixed rate and every socket times each from its POST to its frame.
#
# Usage: scripts/bench-chat.sh [--sockets N] [--messages N] [--rates "10 50"]
# Prints, per rate, deliveries per second, sockets dropped and the latency distribution.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

sockets=1000 messages=300 rates="10 50"
while (($#)); do
  case "$1" in
    --sockets) sockets="$2"; shift 2 ;;
    --messages) messages="$2"; shift 2 ;;
    --rates) rates="$2"; shift 2 ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1; see --help" >&2; exit 2 ;;
  esac
done

ensure_packages
echo "==> cargo build --release (sloop-chat, fanout-bench)"
cargo build --release --locked -q -p sloop-chat --bin sloop-chat --example fanout-bench
# Two descriptors per socket (client and server) and then some.
ulimit -n "$(( (sockets * 2 + 1024) > $(ulimit -n) ? sockets * 2 + 1024 : $(ulimit -n) ))"
work="$(mktemp -d /tmp/sloop-bench-chat.XXXXXX)"
trap 'stop_servers; rm -rf "$work"' EXIT
for rate in $rates; do
  port="$(free_port)"
  RUST_LOG=warn target/release/sloop-chat --listen "127.0.0.1:$port" \
    --database-url "sqlite://$work/chat-$rate.db" >"$work/chat-$rate.log" 2>&1 &
  SLOOP_PIDS+=("$!")
  wait_for_http "http://127.0.0.1:$port/readyz"
  echo "==> $sockets sockets, $messages messages at $rate/s"
  target/release/examples/fanout-bench --target "http://127.0.0.1:$port" --sockets "$sockets" \
    --messages "$messages" --rate "$rate"
  stop_servers
  SLOOP_PIDS=()
done
