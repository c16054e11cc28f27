# Shared by the broker scripts. apt_install is for all of them; the rest is for those that run one
# process with a pid file (redis.sh, kafka.sh, sqs.sh). Source it after defining: log (prints a
# prefixed line), PIDFILE, HOST, PORT, STOP_TIMEOUT_S, start (starts the broker and waits until it
# answers) and answers (true once it answers). Then end the script with: dispatch "$@"

# True when apt's package lists know every named package (so an install needs no `apt-get update`).
apt_knows() {
  local p
  for p in "$@"; do
    apt-cache show "$p" >/dev/null 2>&1 || return 1
  done
}

# Installs Debian packages. all.sh starts the brokers in parallel and several of them may install
# at once, so the scripts take turns through one lock file, and apt itself waits for the dpkg lock
# (held by anything else that runs apt). The package lists are refreshed only when they do not know
# a package yet (a fresh machine) or an install fails on lists that have gone stale.
apt_install() {
  local as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  local apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y
    -o DPkg::Lock::Timeout=600 --no-install-recommends)
  local lock="${TMPDIR:-/tmp}/omnibus-services-apt.lock"
  (
    if command -v flock >/dev/null 2>&1; then
      exec 9>>"$lock"
      flock -w 900 9 || {
        echo "apt_install: another service script held $lock for 15 minutes" >&2
        exit 1
      }
    fi
    update() {
      local tries=0
      until "${apt[@]}" update >/dev/null; do
        tries=$((tries + 1))
        [ "$tries" -lt 3 ] || return 1
        sleep 5
      done
    }
    # Another script may have refreshed the lists while this one waited for the lock.
    apt_knows "$@" || update
    "${apt[@]}" install "$@" >/dev/null || { update && "${apt[@]}" install "$@" >/dev/null; }
  )
}

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
