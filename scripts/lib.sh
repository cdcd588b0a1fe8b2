# Shared shell helpers: install test dependencies, start and stop a throwaway PostgreSQL.
# Sourced by scripts/test.sh and the benchmark scripts.

# Debian packages the tests use, keyed by the command each provides.
declare -A SLOOP_PACKAGES=(
  [promtool]=prometheus
  [amtool]=prometheus-alertmanager
  [wrk]=wrk
  [nginx]=nginx
  [patch]=patch
  [curl]=curl
  [chromium]=chromium
)

postgres_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_packages() {
  local missing=()
  [[ -n "$(postgres_bin)" ]] || missing+=(postgresql)
  # The scripts use python3 for free ports, readiness checks and the OTLP sink.
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  local cmd
  for cmd in promtool amtool wrk nginx patch curl chromium; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${SLOOP_PACKAGES[$cmd]}")
  done
  if ((${#missing[@]} == 0)); then
    return
  fi
  echo "==> installing ${missing[*]} (Debian packages)"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# schemathesis (the OpenAPI fuzzer) in its own virtualenv under ~/.cache, pinned; sets
# SCHEMATHESIS to its executable.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  local venv="${XDG_CACHE_HOME:-$HOME/.cache}/sloop/schemathesis-$SCHEMATHESIS_VERSION"
  SCHEMATHESIS="$venv/bin/schemathesis"
  if [[ ! -x "$SCHEMATHESIS" ]]; then
    echo "==> installing schemathesis $SCHEMATHESIS_VERSION (PyPI) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  export SCHEMATHESIS
}

# The Tansu Kafka-protocol broker 0.6.0 from crates.io, built with fixes of ours
# (third_party/tansu/<crate>--<fix>.patch, each applied to the crate it names; see
# third_party/tansu/README.md) into ~/.cache/sloop when missing: about 15 minutes on two
# cores, once. Sets TANSU_BIN.
TANSU_VERSION=0.6.0
TANSU_BUILD="tansu-$TANSU_VERSION-sloop3"
ensure_tansu() {
  local root="$HOME/.cache/sloop/$TANSU_BUILD"
  if [[ ! -x "$root/bin/tansu" ]]; then
    echo "==> building the Tansu broker $TANSU_VERSION with third_party/tansu patches (once, about 15 minutes)"
    local src patch crate patched=()
    src="$(mktemp -d /tmp/sloop-tansu-src.XXXXXX)"
    curl -sSfL "https://static.crates.io/crates/tansu/tansu-$TANSU_VERSION.crate" | tar xz -C "$src"
    for patch in third_party/tansu/*--*.patch; do
      crate="$(basename "$patch")"
      crate="${crate%%--*}"
      if [[ ! -d "$src/$crate-$TANSU_VERSION" ]]; then
        curl -sSfL "https://static.crates.io/crates/$crate/$crate-$TANSU_VERSION.crate" | tar xz -C "$src"
        patched+=("$crate")
      fi
      patch -d "$src/$crate-$TANSU_VERSION" -p1 <"$patch"
    done
    # Build tansu against the patched crates, keeping every other version its lock file pins.
    printf '\n[patch.crates-io]\n' >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
    for crate in "${patched[@]}"; do
      printf '%s = { path = "../%s-%s" }\n' "$crate" "$crate" "$TANSU_VERSION" \
        >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
    done
    python3 - "$src/tansu-$TANSU_VERSION/Cargo.lock" "${patched[@]}" <<'PY'
import re, sys
path, crates = sys.argv[1], sys.argv[2:]
lock = open(path).read()
# The patched packages come from a path now: no registry source, no checksum.
for crate in crates:
    lock = re.sub(r'(name = "%s"\nversion = "[^"]+"\n)source = "[^"]+"\nchecksum = "[^"]+"\n' % re.escape(crate), r"\1", lock)
open(path, "w").write(lock)
PY
    cargo install --path "$src/tansu-$TANSU_VERSION" --locked --features libsql --root "$root"
    rm -rf "$src"
  fi
  TANSU_BIN="$root/bin/tansu"
  export TANSU_BIN
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# PostgreSQL refuses to run as root, so as root it runs as the `postgres` system user.
as_pg_user() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  local bin
  bin="$(postgres_bin)"
  if [[ -z "$bin" ]]; then
    echo "PostgreSQL is not installed: apt-get install postgresql" >&2
    return 1
  fi
  PG_DIR="$(mktemp -d /tmp/sloop-pg.XXXXXX)"
  [[ $(id -u) -ne 0 ]] || chown postgres:postgres "$PG_DIR"
  PG_PORT="$(free_port)"
  as_pg_user "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
  # Durability off: these databases are thrown away, and tests should not wait on fsync.
  as_pg_user "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -o \
    "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
  POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  export POSTGRES_URL PG_DIR PG_PORT
  echo "==> PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
}

stop_postgres() {
  if [[ -n "${PG_DIR:-}" && -d "$PG_DIR/data" ]]; then
    as_pg_user "$(postgres_bin)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}

# Waits until `url` answers 200, for at most `seconds` (default 30).
wait_for_http() {
  local url="$1" seconds="${2:-30}"
  python3 - "$url" "$seconds" <<'PY'
import sys, time, urllib.request
url, deadline = sys.argv[1], time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        if urllib.request.urlopen(url, timeout=1).status == 200:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(f"{url} did not answer 200 within {sys.argv[2]} s")
PY
}

# Starts scripts/otlp-sink.py; sets OTLP_ENDPOINT and SINK_PID. Counts go to $1 at stop.
start_otlp_sink() {
  local report="$1" port
  port="$(free_port)"
  python3 scripts/otlp-sink.py --port "$port" --report "$report" &
  SINK_PID=$!
  SLOOP_PIDS+=("$SINK_PID")
  OTLP_ENDPOINT="http://127.0.0.1:$port"
}

# Samples the resident memory of process $1 every second into file $2 (one KiB value per
# line) until the process exits. Runs in the background; sets SAMPLER_PID.
sample_rss() {
  local pid="$1" out="$2"
  (
    while [[ -r /proc/$pid/status ]]; do
      awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" >>"$out" 2>/dev/null || true
      sleep 1
    done
  ) &
  SAMPLER_PID=$!
}

# Background servers started by these helpers, oldest first, so one trap can stop them.
SLOOP_PIDS=()

# Stops a background process by pid and waits for it, ignoring one already gone.
stop_pid() {
  local pid="$1" kept=() p
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${SLOOP_PIDS[@]}"; do [[ "$p" == "$pid" ]] || kept+=("$p"); done
  SLOOP_PIDS=("${kept[@]}")
}

# Stops every server still running, newest first: a service flushes its spans to the
# sink before the sink goes.
stop_servers() {
  local i
  for ((i = ${#SLOOP_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${SLOOP_PIDS[i]}"; done
}

# Starts the release sloop-user on a free loopback port with database URL $1, telemetry
# $2 (`on`: spans to $OTLP_ENDPOINT, which must be set; `off`: OTEL_SDK_DISABLED=true),
# stdout/stderr to file $3 and any further arguments passed on (e.g. --chaos). Waits until
# ready; sets USER_PID and USER_URL. SLOOP_USER_BIN picks another binary (default the
# release build).
start_user_service() {
  local database_url="$1" telemetry="$2" log="$3" port
  shift 3
  local env=(OTEL_SERVICE_NAME=user LOG_FORMAT=json)
  case "$telemetry" in
    on) env+=(OTEL_EXPORTER_OTLP_ENDPOINT="$OTLP_ENDPOINT" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf) ;;
    off) env+=(OTEL_SDK_DISABLED=true) ;;
    *) echo "telemetry must be on or off, not $telemetry" >&2; return 2 ;;
  esac
  port="$(free_port)"
  env "${env[@]}" "${SLOOP_USER_BIN:-target/release/sloop-user}" --listen "127.0.0.1:$port" \
    --database-url "$database_url" "$@" >"$log" 2>&1 &
  USER_PID=$!
  SLOOP_PIDS+=("$USER_PID")
  USER_URL="http://127.0.0.1:$port"
  wait_for_http "$USER_URL/readyz"
}

# Prints the resident memory samples of file $1 (KiB, one per line, the first taken while
# idle): idle, median and peak in MiB.
rss_summary() {
  local idle label="${2:-sloop-user}"
  idle="$(head -n 1 "$1")"
  sort -n "$1" | awk -v idle="${idle:-0}" -v label="$label" '{v[NR] = $1} END {
    if (!NR) exit
    printf "==> %s RSS: idle %.1f MiB, median %.1f MiB, peak %.1f MiB (%d samples, 1/s)\n",
      label, idle / 1024, v[int((NR + 1) / 2)] / 1024, v[NR] / 1024, NR }'
}
