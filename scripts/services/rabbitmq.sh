#!/usr/bin/env bash
# Runs a private RabbitMQ node for development and CI, bound to 127.0.0.1:5672.
#
# Usage: scripts/services/rabbitmq.sh {start|stop|restart|status}
#
# Data, logs and config live under .services/rabbitmq/ of the repository. The node name and
# data directory are fixed, so a restart keeps durable queues and their messages.
# Installs rabbitmq-server from Debian when it is missing; the system service that the package
# may start is stopped and disabled so it cannot hold the port or the node name.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE="$ROOT/.services/rabbitmq"
PORT="${OMNIBUS_RABBITMQ_PORT:-5672}"
TLS_PORT="${OMNIBUS_RABBITMQ_TLS_PORT:-5671}"
TLS_DIR="$BASE/tls"
NODE_NAME="omnibus@localhost"
START_TIMEOUT_S="${OMNIBUS_RABBITMQ_START_TIMEOUT:-90}"

export RABBITMQ_NODENAME="$NODE_NAME"
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT="$PORT"
export RABBITMQ_DIST_PORT="${OMNIBUS_RABBITMQ_DIST_PORT:-25672}"
export RABBITMQ_MNESIA_BASE="$BASE/mnesia"
export RABBITMQ_LOG_BASE="$BASE/log"
export RABBITMQ_CONFIG_FILE="$BASE/rabbitmq"
export RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins"
export RABBITMQ_PID_FILE="$BASE/rabbitmq.pid"
export RABBITMQ_CONF_ENV_FILE="$BASE/rabbitmq-env.conf"
export RABBITMQ_ADVANCED_CONFIG_FILE="$BASE/advanced.config"
export ERL_EPMD_ADDRESS=127.0.0.1
# Keep the Erlang distribution port (used by rabbitmqctl) on loopback too.
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
export ERL_EPMD_PORT="${OMNIBUS_RABBITMQ_EPMD_PORT:-4369}"
# rabbitmqctl and the server must share one Erlang cookie; HOME decides where it is read from.
export HOME="$BASE/home"

log() { printf '[rabbitmq.sh] %s\n' "$*" >&2; }
# Only apt_install is used from it: this script manages the node through rabbitmqctl.
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_installed() {
  if [ -x "$RMQ_BIN/rabbitmq-server" ]; then
    return
  fi
  log "installing rabbitmq-server from Debian"
  apt_install rabbitmq-server
  stop_system_service
}

# The Debian package may start its own node (as user rabbitmq, node rabbit@<host>) on 0.0.0.0:5672.
stop_system_service() {
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl stop rabbitmq-server >/dev/null 2>&1 || true
    systemctl disable rabbitmq-server >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/rabbitmq-server ]; then
    /etc/init.d/rabbitmq-server stop >/dev/null 2>&1 || true
    command -v update-rc.d >/dev/null 2>&1 && update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
  fi
}

# The /usr/sbin wrappers of the Debian package switch to the rabbitmq user and its own directories;
# the scripts under /usr/lib/rabbitmq/bin run as the caller and honour the variables above.
RMQ_BIN=/usr/lib/rabbitmq/bin

# A throw-away CA and a server certificate for 127.0.0.1/localhost, so amqps:// can be tested too.
# Without openssl (and no way to install it) the node still starts, without the TLS listener.
ensure_tls() {
  [ -f "$TLS_DIR/server.pem" ] && [ -f "$TLS_DIR/ca.pem" ] && return 0
  if ! command -v openssl >/dev/null 2>&1; then
    apt_install openssl || true
  fi
  if ! command -v openssl >/dev/null 2>&1; then
    log "openssl is not available: no TLS listener"
    return 1
  fi
  mkdir -p "$TLS_DIR"
  (
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=omnibus-test-ca" \
      -keyout ca.key -out ca.pem >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr >/dev/null 2>&1
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.pem >/dev/null 2>&1
    chmod 600 ca.key server.key
  ) || true
  [ -f "$TLS_DIR/server.pem" ] || { log "could not create a test certificate: no TLS listener"; return 1; }
}

write_config() {
  mkdir -p "$BASE/mnesia" "$BASE/log" "$HOME"
  cat >"$BASE/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$PORT
loopback_users.guest = true
default_user = guest
default_pass = guest
default_vhost = /
management.tcp.ip = 127.0.0.1
log.file.level = warning
log.console = false
disk_free_limit.absolute = 50MB
EOF
  if ensure_tls; then
    cat >>"$BASE/rabbitmq.conf" <<EOF
listeners.ssl.1 = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
  fi
  printf '[].\n' >"$BASE/enabled_plugins"
  : >"$BASE/rabbitmq-env.conf"
  printf '[].\n' >"$BASE/advanced.config"
  if [ ! -f "$HOME/.erlang.cookie" ]; then
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$HOME/.erlang.cookie"
    chmod 400 "$HOME/.erlang.cookie"
  fi
}

ctl() { "$RMQ_BIN/rabbitmqctl" -n "$NODE_NAME" "$@"; }

node_pid() {
  [ -f "$RABBITMQ_PID_FILE" ] || return 1
  local pid
  pid="$(cat "$RABBITMQ_PID_FILE" 2>/dev/null)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

amqp_answers() {
  # An AMQP server answers a bad protocol header with its own header; we only need the port open.
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

is_running() {
  node_pid >/dev/null && ctl status >/dev/null 2>&1
}

do_start() {
  ensure_installed
  write_config
  if is_running && amqp_answers; then
    log "already running on 127.0.0.1:$PORT"
    return 0
  fi
  if amqp_answers && ! node_pid >/dev/null; then
    log "port $PORT is held by another process; stop it first (maybe the system service)"
    stop_system_service
    sleep 1
    if amqp_answers; then
      log "port $PORT still busy, giving up"
      return 1
    fi
  fi
  log "starting node $NODE_NAME on 127.0.0.1:$PORT (data in $BASE)"
  nohup "$RMQ_BIN/rabbitmq-server" >"$BASE/log/stdout.log" 2>&1 &
  echo $! >"$RABBITMQ_PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until ctl await_startup --timeout 5 >/dev/null 2>&1 && amqp_answers; do
    if ! node_pid >/dev/null; then
      log "node exited during startup; last log lines:"
      tail -n 30 "$BASE/log/stdout.log" >&2 || true
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "node did not answer within ${START_TIMEOUT_S}s"
      tail -n 30 "$BASE/log/stdout.log" >&2 || true
      return 1
    fi
    sleep 1
  done
  # A second virtual host, so tests can check that the vhost of a URL is honoured. It lives in
  # the data directory: created once, not on every restart (each rabbitmqctl call costs seconds).
  if [ ! -f "$BASE/mnesia/.omnibus-test-vhost" ]; then
    ctl add_vhost omnibus-test >/dev/null 2>&1 || true
    ctl set_permissions -p omnibus-test guest '.*' '.*' '.*' >/dev/null 2>&1 && : >"$BASE/mnesia/.omnibus-test-vhost"
  fi
  if grep -q '^listeners.ssl' "$BASE/rabbitmq.conf"; then
    log "ready: amqp://guest:guest@127.0.0.1:$PORT (TLS: amqps://127.0.0.1:$TLS_PORT, CA $TLS_DIR/ca.pem)"
  else
    log "ready: amqp://guest:guest@127.0.0.1:$PORT"
  fi
}

do_stop() {
  if ! node_pid >/dev/null; then
    log "not running"
    rm -f "$RABBITMQ_PID_FILE"
    return 0
  fi
  local pid
  pid="$(node_pid)"
  ctl stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "node did not stop in 30s, killing it"
      kill -9 "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$RABBITMQ_PID_FILE"
  log "stopped"
}

do_status() {
  if is_running && amqp_answers; then
    log "running on 127.0.0.1:$PORT (node $NODE_NAME)"
    return 0
  fi
  log "not running"
  return 1
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  restart)
    do_stop
    do_start
    ;;
  status) do_status ;;
  *)
    echo "usage: $0 {start|stop|restart|status}" >&2
    exit 2
    ;;
esac
