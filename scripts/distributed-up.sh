#!/usr/bin/env bash
# Starts the platform in its distributed mode on this machine: every service as its own
# process (release builds), each with its own PostgreSQL database, events over a
# Kafka-protocol broker (Tansu), all on loopback. Stop it with scripts/distributed-down.sh.
#
# Installs what is missing first (PostgreSQL from Debian's packages, the patched Tansu
# broker, once, about 15 minutes), builds the services, starts PostgreSQL and Tansu in the
# run directory, creates one database per service, then starts the services in order (each
# after those it calls, the gateway last) and waits until every /readyz answers. Chat runs
# as two instances (chat on 8083, chat-2 on 8093) sharing its database; the gateway hands
# sockets and requests to them in turn, and messages cross between them through the broker.
#
# Settings (environment):
#   SLOOP_RUN_DIR      where data, logs and pids go      [./sloop-distributed]
#   SLOOP_PORT_OFFSET  added to every service's port     [0: gateway 8080 ... payment 8088]
#   SLOOP_PG_PORT      PostgreSQL's port                 [55432]
#   SLOOP_KAFKA_PORT   the broker's port                 [9092]
#   SLOOP_BIN_DIR      prebuilt sloop-<service> binaries [build them: target/release]
#   SLOOP_CHAT_INSTANCES  chat processes behind the gateway, instance n on 8083+10(n-1) [2]
#   AUTH_ADMIN_EMAILS, OTEL_EXPORTER_OTLP_ENDPOINT, LOKI_URL, SENTRY_DSN, RUST_LOG,
#   LOG_FORMAT and every other variable the services read pass through to all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

RUN_DIR="$(realpath -m "${SLOOP_RUN_DIR:-sloop-distributed}")"
OFFSET="${SLOOP_PORT_OFFSET:-0}"
PG_PORT="${SLOOP_PG_PORT:-55432}"
KAFKA_PORT="${SLOOP_KAFKA_PORT:-9092}"
CHAT_INSTANCES="${SLOOP_CHAT_INSTANCES:-2}"
if ! [[ "$CHAT_INSTANCES" =~ ^[1-9]$ ]]; then
  echo "SLOOP_CHAT_INSTANCES is how many chat processes run, 1 to 9, not '$CHAT_INSTANCES'" >&2
  exit 2
fi
# Start order: each service after the ones it calls, the gateway last.
SERVICES=(user auth chat store payment notification audit batch gateway)
declare -A PORTS=([gateway]=8080 [auth]=8081 [user]=8082 [chat]=8083 [store]=8084 [batch]=8085 [notification]=8086 [audit]=8087 [payment]=8088)

if [[ -f "$RUN_DIR/pids/gateway.pid" ]] && kill -0 "$(cat "$RUN_DIR/pids/gateway.pid")" 2>/dev/null; then
  echo "the platform already runs from $RUN_DIR; stop it with scripts/distributed-down.sh" >&2
  exit 1
fi
mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids" "$RUN_DIR/broker"

ensure_packages
ensure_tansu
if [[ -n "${SLOOP_BIN_DIR:-}" ]]; then
  BIN_DIR="$(realpath "$SLOOP_BIN_DIR")"
else
  echo "==> building the services (release)"
  cargo build --release --locked $(printf -- '-p sloop-%s ' "${SERVICES[@]}")
  BIN_DIR="$PWD/target/release"
fi

port_of() { echo $((PORTS[$1] + OFFSET)); }
url_of() { echo "http://127.0.0.1:$(port_of "$1")"; }

# PostgreSQL keeps its data in the run directory across restarts.
pg="$(postgres_bin)"
if [[ ! -d "$RUN_DIR/postgres/data" ]]; then
  mkdir -p "$RUN_DIR/postgres"
  [[ $(id -u) -ne 0 ]] || chown -R postgres:postgres "$RUN_DIR/postgres"
  as_pg_user "$pg/initdb" -D "$RUN_DIR/postgres/data" -U postgres --auth=trust -E UTF8 >/dev/null
fi
echo "==> PostgreSQL on 127.0.0.1:$PG_PORT ($RUN_DIR/postgres)"
as_pg_user "$pg/pg_ctl" -D "$RUN_DIR/postgres/data" -l "$RUN_DIR/postgres/log" -w -o \
  "-p $PG_PORT -k $RUN_DIR/postgres -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
for service in "${SERVICES[@]}"; do
  [[ "$service" == gateway ]] && continue
  if ! as_pg_user "$pg/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'sloop_$service'" | grep -q 1; then
    as_pg_user "$pg/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "sloop_$service"
  fi
done

echo "==> Tansu broker on 127.0.0.1:$KAFKA_PORT ($RUN_DIR/broker)"
(
  cd "$RUN_DIR/broker"
  listener="tcp://127.0.0.1:$KAFKA_PORT"
  RUST_LOG=warn setsid "$TANSU_BIN" broker --cluster-id sloop --listener-url "$listener" \
    --advertised-listener-url "$listener" --storage-engine sqlite://tansu.db \
    >>"$RUN_DIR/logs/broker.log" 2>&1 &
  echo $! >"$RUN_DIR/pids/broker.pid"
)
python3 - "$KAFKA_PORT" <<'PY'
import socket, sys, time
deadline = time.time() + 30
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("the broker did not listen within 30 s; see its log")
PY

# Starts process `name` (a service, or chat-N) of `service` on `port` and waits until ready.
start_process() {
  local name="$1" service="$2" port="$3" upstreams="$4"
  echo "==> $name on http://127.0.0.1:$port"
  local settings=("LISTEN_ADDR=127.0.0.1:$port" "EVENT_BUS=kafka://127.0.0.1:$KAFKA_PORT")
  [[ "$service" == gateway ]] ||
    settings+=("DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/sloop_$service")
  [[ -z "$upstreams" ]] || settings+=("UPSTREAMS=$upstreams")
  env "${settings[@]}" setsid "$BIN_DIR/sloop-$service" >>"$RUN_DIR/logs/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/pids/$name.pid"
  if ! wait_for_http "http://127.0.0.1:$port/readyz" 60; then
    echo "$name did not become ready; the last lines of $RUN_DIR/logs/$name.log:" >&2
    tail -n 20 "$RUN_DIR/logs/$name.log" >&2
    exit 1
  fi
}

# Services call the first instance of another; the gateway also gets chat's other instances
# (an upstream named twice is balanced).
upstreams=""
gateway_extra=""
for service in "${SERVICES[@]}"; do
  if [[ "$service" == gateway ]]; then
    start_process gateway gateway "$(port_of gateway)" "$upstreams$gateway_extra"
    continue
  fi
  start_process "$service" "$service" "$(port_of "$service")" "$upstreams"
  upstreams="${upstreams:+$upstreams,}$service=$(url_of "$service")"
  if [[ "$service" == chat ]]; then
    for ((n = 2; n <= CHAT_INSTANCES; n++)); do
      port=$(($(port_of chat) + 10 * (n - 1)))
      start_process "chat-$n" chat "$port" "$upstreams"
      gateway_extra+=",chat=http://127.0.0.1:$port"
    done
  fi
done

cat <<SUMMARY

The platform runs in its distributed mode:
  gateway       $(url_of gateway)   <- the API: $(url_of gateway)/api/...
$(for s in "${SERVICES[@]}"; do [[ $s == gateway ]] || printf '  %-13s %s   database sloop_%s\n' "$s" "$(url_of "$s")" "$s"; done)
$(for ((n = 2; n <= CHAT_INSTANCES; n++)); do printf '  %-13s %s   database sloop_chat\n' "chat-$n" "http://127.0.0.1:$(($(port_of chat) + 10 * (n - 1)))"; done)
  postgres      postgres://postgres@127.0.0.1:$PG_PORT
  events        kafka://127.0.0.1:$KAFKA_PORT (Tansu)
  logs          $RUN_DIR/logs/<service>.log (chat-2.log for the second chat)

Stop it with: scripts/distributed-down.sh
SUMMARY
