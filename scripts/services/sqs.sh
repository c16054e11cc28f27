#!/usr/bin/env bash
# Starts, stops and reports a private ElasticMQ (an SQS-compatible server) for development and
# integration tests. The server jars come from Maven Central through the machine's `mvn` and are
# cached under ~/.cache/omnibus/elasticmq-<version>/ (reused when present). It runs with Java 17,
# binds 127.0.0.1 only, and keeps config, data, log and pid file under .services/sqs/.
#   scripts/services/sqs.sh {start|stop|restart|status}
#
# Queues and messages are persisted (H2 file under .services/sqs/data), so `restart` behaves like
# a broker that comes back with its state: queues, their tags and unacknowledged messages survive.
# `OMNIBUS_SQS_PERSIST=0` runs it in memory instead (a restart then loses everything).
#
# Environment: OMNIBUS_SQS_PORT (default 9324), OMNIBUS_ELASTICMQ_VERSION (default 1.6.14),
# OMNIBUS_SQS_HEAP (default 384m), OMNIBUS_SQS_PERSIST (default 1).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DIR="$ROOT/.services/sqs"
PORT="${OMNIBUS_SQS_PORT:-9324}"
HOST=127.0.0.1
VERSION="${OMNIBUS_ELASTICMQ_VERSION:-1.6.14}"
HEAP="${OMNIBUS_SQS_HEAP:-384m}"
PERSIST="${OMNIBUS_SQS_PERSIST:-1}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/omnibus/elasticmq-$VERSION"
PIDFILE="$DIR/elasticmq.pid"
LOG="$DIR/elasticmq.log"
CONF="$DIR/elasticmq.conf"

log() { echo "[sqs] $*"; }
STOP_TIMEOUT_S=30
answers() { ping; }
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

java_bin() {
  local j
  for j in /usr/lib/jvm/java-17-openjdk-*/bin/java; do
    if [ -x "$j" ]; then
      echo "$j"
      return 0
    fi
  done
  command -v java
}

ensure_tools() {
  if [ ! -x "$(java_bin 2>/dev/null || true)" ]; then
    log "installing Java 17 from the Debian archive"
    apt_install openjdk-17-jre-headless
  fi
  if [ ! -f "$CACHE/.complete" ] && ! command -v mvn >/dev/null 2>&1; then
    log "installing Maven from the Debian archive"
    apt_install maven
  fi
  if ! command -v curl >/dev/null 2>&1; then
    apt_install curl
  fi
}

# Resolves elasticmq-server and its runtime dependencies from Maven Central into the cache.
ensure_jars() {
  if [ -f "$CACHE/.complete" ]; then
    return
  fi
  log "resolving org.elasticmq:elasticmq-server_2.13:$VERSION from Maven Central"
  local work
  work="$(mktemp -d)"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>omnibus.services</groupId>
  <artifactId>elasticmq-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.elasticmq</groupId>
      <artifactId>elasticmq-server_2.13</artifactId>
      <version>$VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  rm -rf "$CACHE.tmp"
  mkdir -p "$CACHE.tmp"
  if ! (cd "$work" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$CACHE.tmp/lib"); then
    rm -rf "$work" "$CACHE.tmp"
    log "mvn could not resolve ElasticMQ $VERSION from Maven Central" >&2
    return 1
  fi
  rm -rf "$work" "$CACHE"
  touch "$CACHE.tmp/.complete"
  mv "$CACHE.tmp" "$CACHE"
}

ping() {
  curl -fsS --max-time 2 "http://$HOST:$PORT/?Action=ListQueues" >/dev/null 2>&1
}

queue_count() {
  curl -fsS --max-time 5 "http://$HOST:$PORT/?Action=ListQueues" 2>/dev/null | grep -c "<QueueUrl>" || true
}

# ElasticMQ answers before it has restored the persisted queues: wait until the queue count has
# held still for a second, so clients never see a persisted queue as missing.
wait_restored() {
  local last=-1 now stable=0
  for _ in $(seq 1 120); do
    now="$(queue_count)"
    if [ "$now" = "$last" ]; then
      stable=$((stable + 1))
      if [ "$stable" -ge 4 ]; then
        return 0
      fi
    else
      stable=0
    fi
    last="$now"
    sleep 0.25
  done
}

write_conf() {
  mkdir -p "$DIR/data"
  local storage="false"
  if [ "$PERSIST" = "1" ]; then storage="true"; fi
  cat >"$CONF" <<EOF
include classpath("application.conf")

node-address {
  protocol = "http"
  host = "$HOST"
  port = $PORT
  context-path = ""
}

rest-sqs {
  enabled = true
  bind-port = $PORT
  bind-hostname = "$HOST"
  sqs-limits = strict
}

rest-stats {
  enabled = false
}

messages-storage {
  enabled = $storage
  driver-class = "org.h2.Driver"
  uri = "jdbc:h2:$DIR/data/elasticmq-h2;DB_CLOSE_ON_EXIT=FALSE;WRITE_DELAY=0"
  username = ""
  password = ""
  prune-data-on-init = false
}
EOF
  cat >"$DIR/logback.xml" <<EOF
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$LOG</file>
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{24} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="FILE"/></root>
  <logger name="org.elasticmq" level="INFO"/>
</configuration>
EOF
}

start() {
  ensure_tools
  ensure_jars
  if pid >/dev/null; then
    log "already running (pid $(pid)) on $HOST:$PORT"
    return 0
  fi
  if ping; then
    log "another SQS-compatible server already answers on $HOST:$PORT; not starting a second one" >&2
    return 1
  fi
  write_conf
  local java
  java="$(java_bin)"
  nohup "$java" -Xms64m -Xmx"$HEAP" -XX:+UseSerialGC \
    -Dconfig.file="$CONF" -Dlogback.configurationFile="$DIR/logback.xml" \
    -cp "$CACHE/lib/*" org.elasticmq.server.Main >>"$DIR/stdout.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 600); do
    if ping; then
      if [ "$PERSIST" = "1" ]; then wait_restored; fi
      log "ElasticMQ $VERSION running (pid $(pid || echo '?')) on http://$HOST:$PORT, persistence=$PERSIST, $(queue_count) queue(s)"
      return 0
    fi
    if ! pid >/dev/null; then
      log "ElasticMQ exited during start-up; see $LOG and $DIR/stdout.log" >&2
      tail -n 30 "$DIR/stdout.log" "$LOG" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
  log "did not answer within 60 s; see $LOG" >&2
  tail -n 30 "$DIR/stdout.log" "$LOG" >&2 2>/dev/null || true
  return 1
}

dispatch "$@"
