#!/usr/bin/env bash
# Builds, starts, stops and reports an OpenTelemetry Collector for development and the end-to-end
# OpenTelemetry tests (test-integration/otel/), without Docker.
#   scripts/services/otelcol.sh {build|path|start|stop|restart|status}
# build compiles a collector with the OpenTelemetry Collector Builder from the Go module proxy, with
# core components only (OTLP receiver, batch processor, debug and OTLP/HTTP exporters), and caches
# the binary under ~/.cache/omnibus/otelcol-<version>/: the first build takes a few minutes, every
# later call returns at once. path prints where the binary is (exit 3 when it is not built yet).
# start runs one collector for development: OTLP/gRPC on 127.0.0.1:4317 and OTLP/HTTP on
# 127.0.0.1:4318 (the OTLP defaults, so an application with no endpoint configured sends there),
# writing what it receives through the debug exporter to .services/otelcol/otelcol.log.
# The end-to-end tests do not use that one: each test file starts its own collector from the binary
# (OMNIBUS_IT_OTELCOL) on free ports and points it at a receiver the test runs.
# Needs Go >= 1.26 (the machine's /usr/local/go is used when `go` is not on PATH).
# Environment: OMNIBUS_OTELCOL_GRPC_PORT (default 4317), OMNIBUS_OTELCOL_HTTP_PORT (default 4318),
# OMNIBUS_OTELCOL_CACHE (default ~/.cache/omnibus).
set -euo pipefail

# Collector modules are released in pairs: the v0.x modules (components) and the v1.x modules
# (stable APIs such as pdata and the config providers) of one release go together.
VERSION=0.165.0
STABLE_VERSION=1.71.0
GO_MIN_MINOR=26

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DIR="$ROOT/.services/otelcol"
CACHE="${OMNIBUS_OTELCOL_CACHE:-$HOME/.cache/omnibus}/otelcol-$VERSION-$STABLE_VERSION"
BIN="$CACHE/omnibus-otelcol"
GRPC_PORT="${OMNIBUS_OTELCOL_GRPC_PORT:-4317}"
PORT="${OMNIBUS_OTELCOL_HTTP_PORT:-4318}"
HOST=127.0.0.1
PIDFILE="$DIR/otelcol.pid"
LOG="$DIR/otelcol.log"
CONF="$DIR/config.yaml"
START_TIMEOUT_S=30
STOP_TIMEOUT_S=15

log() { echo "[otelcol] $*"; }
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

go_cmd() {
  if command -v go >/dev/null 2>&1; then
    command -v go
  elif [ -x /usr/local/go/bin/go ]; then
    echo /usr/local/go/bin/go
  else
    return 1
  fi
}

ensure_go() {
  local go minor
  if ! go="$(go_cmd)"; then
    log "needs Go 1.$GO_MIN_MINOR or newer on PATH to build the collector" >&2
    return 1
  fi
  minor="$(GOTOOLCHAIN=local "$go" env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
  if [ -z "$minor" ] || [ "$minor" -lt "$GO_MIN_MINOR" ]; then
    log "$go is $(GOTOOLCHAIN=local "$go" env GOVERSION); the collector needs Go 1.$GO_MIN_MINOR or newer" >&2
    return 1
  fi
  echo "$go"
}

manifest() {
  cat <<YAML
dist:
  name: omnibus-otelcol
  description: OpenTelemetry Collector (core components) for Omnibus development and tests
  version: $VERSION
  output_path: $CACHE/build
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver v$VERSION
processors:
  - gomod: go.opentelemetry.io/collector/processor/batchprocessor v$VERSION
exporters:
  - gomod: go.opentelemetry.io/collector/exporter/debugexporter v$VERSION
  - gomod: go.opentelemetry.io/collector/exporter/otlphttpexporter v$VERSION
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider v$STABLE_VERSION
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider v$STABLE_VERSION
  - gomod: go.opentelemetry.io/collector/confmap/provider/yamlprovider v$STABLE_VERSION
YAML
}

# The stamp holds the manifest it was built from, so a change of components rebuilds.
built() {
  [ -x "$BIN" ] && [ -f "$CACHE/.complete" ] && [ "$(cat "$CACHE/.complete")" = "$(manifest)" ]
}

build() {
  if built; then return 0; fi
  mkdir -p "$CACHE"
  # CI starts a build early in the background and the service start asks for one too: the second
  # waits for the first through the lock, then finds the binary built.
  (
    if command -v flock >/dev/null 2>&1; then
      exec 9>>"$CACHE.lock"
      flock -w 900 9 || {
        log "another build held $CACHE.lock for 15 minutes" >&2
        exit 1
      }
    fi
    built || build_locked
  )
}

build_locked() {
  local go began
  go="$(ensure_go)"
  began=$SECONDS
  # The machine's own Go builds it: GOTOOLCHAIN=local keeps the go command from fetching another.
  export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
  if [ ! -x "$CACHE/bin/builder" ]; then
    log "installing the collector builder v$VERSION from the Go module proxy"
    GOBIN="$CACHE/bin" "$go" install "go.opentelemetry.io/collector/cmd/builder@v$VERSION" \
      >"$CACHE/build.log" 2>&1 || {
      log "go install of the builder failed; see $CACHE/build.log" >&2
      tail -n 20 "$CACHE/build.log" >&2
      return 1
    }
  fi
  log "building the collector v$VERSION into $CACHE (a few minutes the first time)"
  manifest >"$CACHE/manifest.yaml"
  PATH="$(dirname "$go"):$PATH" "$CACHE/bin/builder" --config "$CACHE/manifest.yaml" \
    >>"$CACHE/build.log" 2>&1 || {
    log "the collector build failed; see $CACHE/build.log" >&2
    tail -n 20 "$CACHE/build.log" >&2
    return 1
  }
  mv -f "$CACHE/build/omnibus-otelcol" "$BIN"
  manifest >"$CACHE/.complete"
  log "built $BIN in $((SECONDS - began)) s"
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

answers() {
  port_open "$PORT" && grep -q "Everything is ready" "$LOG" 2>/dev/null
}

write_conf() {
  cat >"$CONF" <<CONF
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: $HOST:$GRPC_PORT
      http:
        endpoint: $HOST:$PORT
processors:
  batch:
    timeout: 200ms
exporters:
  debug:
    verbosity: detailed
service:
  telemetry:
    # Its own metrics would listen on a fixed port (8888); nothing here reads them.
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
CONF
}

start() {
  if pid >/dev/null; then
    log "already running (pid $(pid)) on $HOST:$PORT"
    return 0
  fi
  local p
  for p in "$PORT" "$GRPC_PORT"; do
    if port_open "$p"; then
      log "another process already listens on $HOST:$p; not starting a second collector" >&2
      return 1
    fi
  done
  build
  mkdir -p "$DIR"
  write_conf
  : >"$LOG"
  # setsid detaches the collector from the calling shell so a test runner's exit does not kill it.
  setsid "$BIN" --config "$CONF" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until answers; do
    if ! pid >/dev/null; then
      log "the collector exited during startup; last lines of $LOG:" >&2
      tail -n 30 "$LOG" >&2 || true
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "the collector did not answer on $HOST:$PORT within ${START_TIMEOUT_S}s; see $LOG" >&2
      return 1
    fi
    sleep 0.2
  done
  log "running (pid $(pid)) on $HOST:$PORT (OTLP/HTTP) and $HOST:$GRPC_PORT (OTLP/gRPC); binary $BIN"
}

case "${1:-}" in
  build)
    build
    log "$BIN"
    ;;
  path)
    # Where the binary is (or will be once built): exit 3 when it is not built yet.
    echo "$BIN"
    built || exit 3
    ;;
  *) dispatch "$@" ;;
esac
