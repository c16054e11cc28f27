#!/usr/bin/env bash
# Starts, stops and reports a private Redis instance for development and integration tests.
# It is not the system service: it binds 127.0.0.1 only, keeps its data, log and pid file under
# .services/redis/ of the repository, and is idempotent (start when running, stop when stopped).
#   scripts/services/redis.sh {start|stop|restart|status}
# Environment: OMNIBUS_REDIS_PORT (default 6379).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="$ROOT/.services/redis"
PORT="${OMNIBUS_REDIS_PORT:-6379}"
HOST=127.0.0.1
PIDFILE="$DIR/redis.pid"
LOG="$DIR/redis.log"
CONF="$DIR/redis.conf"

log() { echo "[redis] $*"; }
STOP_TIMEOUT_S=10
answers() { ping; }
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_installed() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return
  fi
  log "installing redis-server from the Debian archive"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  apt_install redis-server
  # The Debian package may start the system service on install; this instance does not use it,
  # and it would hold the port, so it is stopped when it was the package that started it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    $sudo systemctl stop redis-server || true
  fi
}

ping() {
  [ "$(redis-cli -h "$HOST" -p "$PORT" PING 2>/dev/null || true)" = "PONG" ]
}

write_conf() {
  mkdir -p "$DIR/data"
  cat >"$CONF" <<EOF
bind $HOST
port $PORT
protected-mode yes
daemonize yes
pidfile $PIDFILE
logfile $LOG
dir $DIR/data
appendonly yes
appendfsync everysec
save ""
EOF
}

start() {
  ensure_installed
  if pid >/dev/null; then
    log "already running (pid $(pid)) on $HOST:$PORT"
    return 0
  fi
  if ping; then
    log "another Redis already answers on $HOST:$PORT; not starting a second one" >&2
    return 1
  fi
  write_conf
  redis-server "$CONF"
  for _ in $(seq 1 100); do
    if ping; then
      log "running (pid $(pid || echo '?')) on $HOST:$PORT, data in .services/redis/data"
      return 0
    fi
    sleep 0.1
  done
  log "did not answer PING within 10 s; see $LOG" >&2
  tail -n 20 "$LOG" >&2 || true
  return 1
}

dispatch "$@"
