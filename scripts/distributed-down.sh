#!/usr/bin/env bash
# Stops what scripts/distributed-up.sh started: the services (the gateway first, each
# draining its requests and flushing its outbox), then the broker and PostgreSQL. Data
# stays in the run directory for the next start; --purge deletes it.
#
# Settings (environment): SLOOP_RUN_DIR, as for distributed-up.sh [./sloop-distributed]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

RUN_DIR="$(realpath -m "${SLOOP_RUN_DIR:-sloop-distributed}")"
purge=false
for arg in "$@"; do
  case "$arg" in
    --purge) purge=true ;;
    -h | --help)
      sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown argument $arg; the only one is --purge" >&2
      exit 2
      ;;
  esac
done
if [[ ! -d "$RUN_DIR/pids" ]]; then
  echo "nothing runs from $RUN_DIR (no pids directory)" >&2
  exit 0
fi

# SIGTERM, then up to 40 s for a clean exit (services drain for up to 30 s), then SIGKILL.
stop() {
  local name="$1" file="$RUN_DIR/pids/$1.pid" pid i
  [[ -f "$file" ]] || return 0
  pid="$(cat "$file")"
  if kill -TERM "$pid" 2>/dev/null; then
    for ((i = 0; i < 400; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name did not stop within 40 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$file"
  echo "==> stopped $name"
}

# Chat's further instances (chat-2, ...) go just before chat.
for service in gateway batch audit notification payment store; do
  stop "$service"
done
for file in "$RUN_DIR"/pids/chat-*.pid; do
  [[ -e "$file" ]] || continue
  name="$(basename "$file" .pid)"
  stop "$name"
done
for service in chat auth user broker; do
  stop "$service"
done
if [[ -d "$RUN_DIR/postgres/data" ]]; then
  as_pg_user "$(postgres_bin)/pg_ctl" -D "$RUN_DIR/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
  echo "==> stopped PostgreSQL"
fi
if $purge; then
  rm -rf "$RUN_DIR"
  echo "==> deleted $RUN_DIR"
fi
