#!/usr/bin/env bash
# Starts, stops and reports a private single-node Apache Kafka broker (KRaft mode, no ZooKeeper)
# for development and integration tests, without Docker.
#   scripts/services/kafka.sh {start|stop|restart|status}
# The broker jars come from Maven Central through the machine's `mvn` (scripts/services/kafka/pom.xml)
# and are cached under ~/.cache/omnibus/kafka-<version>/; the broker runs on the machine's Java 17+,
# binds 127.0.0.1 only, and keeps its config, data, log and pid file under .services/kafka/ of the
# repository. Idempotent: start when running and stop when stopped do nothing. Restart keeps data.
# A second listener on OMNIBUS_KAFKA_SASL_PORT speaks SASL/PLAIN with the test-only account
# omnibus / omnibus-test-secret, so the SASL options are exercised against a real broker.
# Environment: OMNIBUS_KAFKA_PORT (default 9092), OMNIBUS_KAFKA_CONTROLLER_PORT (default 9093),
# OMNIBUS_KAFKA_SASL_PORT (default 9094), OMNIBUS_KAFKA_HEAP (default 512m),
# OMNIBUS_KAFKA_CACHE (default ~/.cache/omnibus).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DIR="$ROOT/.services/kafka"
POM="$HERE/kafka/pom.xml"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")"
CACHE="${OMNIBUS_KAFKA_CACHE:-$HOME/.cache/omnibus}/kafka-$VERSION"
PORT="${OMNIBUS_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${OMNIBUS_KAFKA_CONTROLLER_PORT:-9093}"
SASL_PORT="${OMNIBUS_KAFKA_SASL_PORT:-9094}"
HEAP="${OMNIBUS_KAFKA_HEAP:-512m}"
HOST=127.0.0.1
PIDFILE="$DIR/kafka.pid"
LOG="$DIR/kafka.log"
CONF="$DIR/server.properties"
DATA="$DIR/data"
START_TIMEOUT_S=90
STOP_TIMEOUT_S=30

log() { echo "[kafka] $*"; }
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

ensure_tools() {
  if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
    log "installing a Java 17 runtime from the Debian archive"
    apt_install openjdk-17-jre-headless
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    log "installing Maven from the Debian archive"
    apt_install maven
  fi
}

ensure_jars() {
  if [ -f "$CACHE/.complete" ]; then return 0; fi
  ensure_tools
  log "resolving Apache Kafka $VERSION from Maven Central into $CACHE"
  mkdir -p "$CACHE"
  mvn -q -B -f "$POM" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$CACHE/libs" >"$CACHE/mvn.log" 2>&1 || {
    log "mvn failed; see $CACHE/mvn.log" >&2
    tail -n 20 "$CACHE/mvn.log" >&2
    return 1
  }
  touch "$CACHE/.complete"
}

port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# The broker answers once it has registered with its own controller and logs that it started;
# the log line is the reliable signal (an open port alone can still refuse metadata requests).
answers() {
  port_open "$PORT" && grep -q "\[KafkaRaftServer nodeId=1\] Kafka Server started" "$LOG" 2>/dev/null
}

write_conf() {
  mkdir -p "$DATA"
  cat >"$CONF" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,SASL_PLAINTEXT://$HOST:$SASL_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_omnibus="omnibus-test-secret";
log.dirs=$DATA
num.partitions=1
# Topics are created by the clients with the partition count they ask for (the Omnibus backend does
# this itself), so a typo in a consumer never creates a stray topic.
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.retention.hours=24
log.segment.bytes=16777216
log.cleaner.dedupe.buffer.size=8388608
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
CONF
}

cluster_id() {
  if [ ! -f "$DIR/cluster.id" ]; then
    java -cp "$CACHE/libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1 >"$DIR/cluster.id"
  fi
  cat "$DIR/cluster.id"
}

format_storage() {
  if [ -f "$DATA/meta.properties" ]; then return 0; fi
  log "formatting storage in $DATA"
  java -cp "$CACHE/libs/*" kafka.tools.StorageTool format -t "$(cluster_id)" -c "$CONF" >>"$LOG" 2>&1
}

start() {
  if pid >/dev/null; then
    log "already running (pid $(pid)) on $HOST:$PORT"
    return 0
  fi
  if port_open "$PORT"; then
    log "another process already listens on $HOST:$PORT; not starting a second broker" >&2
    return 1
  fi
  ensure_jars
  ensure_tools
  mkdir -p "$DIR"
  write_conf
  format_storage
  cat >"$DIR/log4j.properties" <<L4J
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$LOG
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.controller=WARN
L4J
  : >"$LOG"
  # setsid detaches the broker from the calling shell so a test runner's exit does not kill it.
  setsid java "-Xmx$HEAP" "-Xms128m" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    "-Dlog4j.configuration=file:$DIR/log4j.properties" \
    -cp "$CACHE/libs/*" kafka.Kafka "$CONF" >>"$DIR/stdout.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until answers; do
    if ! pid >/dev/null; then
      log "the broker exited during startup; last lines of $LOG:" >&2
      tail -n 30 "$LOG" "$DIR/stdout.log" >&2 || true
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "the broker did not answer on $HOST:$PORT within ${START_TIMEOUT_S}s; see $LOG" >&2
      return 1
    fi
    sleep 0.5
  done
  log "running (pid $(pid)) on $HOST:$PORT"
}

dispatch "$@"
