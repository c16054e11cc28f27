# Shared by the broker scripts that run one process with a pid file (redis.sh, kafka.sh, sqs.sh).
# Source it after defining: log (prints a prefixed line), PIDFILE, HOST, PORT, STOP_TIMEOUT_S,
# start (starts the broker and waits until it answers) and answers (true once it answers).
# Then end the script with: dispatch "$@"

# Prints the broker's pid when its pid file names a live process.
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

# Asks the broker to stop (SIGTERM), waits up to STOP_TIMEOUT_S, then kills it.
stop() {
  local p
  if ! p="$(pid)"; then
    log "not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill "$p" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT_S))
  while kill -0 "$p" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "pid $p did not stop within ${STOP_TIMEOUT_S} s; killing it" >&2
      kill -9 "$p" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  rm -f "$PIDFILE"
  log "stopped"
}

# Exit code 0 when running and answering, 3 (LSB "not running") otherwise.
status() {
  if pid >/dev/null && answers; then
    log "running (pid $(pid)) on $HOST:$PORT"
    return 0
  fi
  log "not running"
  return 3
}

dispatch() {
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
}
