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

ensure_installed() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return
  fi
  log "installing redis-server from the Debian archive"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends redis-server >/dev/null; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends redis-server >/dev/null
  fi
  # The Debian package may start the system service on install; this instance does not use it,
  # and it would hold the port, so it is stopped when it was the package that started it.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
    $sudo systemctl stop redis-server || true
  fi
}

pid() {
  if [ -f "$PIDFILE" ]; then
    local p
    p="$(cat "$PIDFILE" 2>/dev/null || true)"
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  fi
  return 1
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

stop() {
  local p
  if ! p="$(pid)"; then
    log "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 100); do
    if ! kill -0 "$p" 2>/dev/null; then
      rm -f "$PIDFILE"
      log "stopped"
      return 0
    fi
    sleep 0.1
  done
  log "pid $p did not stop within 10 s; killing it" >&2
  kill -9 "$p" 2>/dev/null || true
  rm -f "$PIDFILE"
}

status() {
  if pid >/dev/null && ping; then
    log "running (pid $(pid)) on $HOST:$PORT"
    return 0
  fi
  log "not running"
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart)
    stop
    start
    ;;
  status) status ;;
  *)
    echo "usage: $0 {start|stop|restart|status}" >&2
    exit 2
    ;;
esac
