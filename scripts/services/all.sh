#!/usr/bin/env bash
# Starts (or stops) every broker the integration tests use, and the OpenTelemetry Collector,
# without Docker, on 127.0.0.1:
#   bash scripts/services/all.sh start [names…]   # default: redis rabbitmq kafka sqs otelcol
#   bash scripts/services/all.sh stop  [names…]
#   bash scripts/services/all.sh status [names…]  # one line each; exit 3 when any is not running
#   bash scripts/services/all.sh env   [names…]   # prints the OMNIBUS_IT_* exports
# `start` starts them in parallel, waits for each to answer, and writes the exports to
# .services/env.sh; source that file to point the integration tests at them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="$root/.services"
action="${1:-start}"
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(redis rabbitmq kafka sqs otelcol)

exports_for() {
  case "$1" in
    redis)
      echo "export OMNIBUS_IT_REDIS_URL=redis://127.0.0.1:6379"
      echo "export OMNIBUS_IT_REDIS_RESTART='bash $here/redis.sh restart'" ;;
    rabbitmq)
      echo "export OMNIBUS_IT_AMQP_URL=amqp://guest:guest@127.0.0.1:5672"
      echo "export OMNIBUS_IT_RABBITMQ_RESTART='bash $here/rabbitmq.sh restart'" ;;
    kafka)
      echo "export OMNIBUS_IT_KAFKA_BROKERS=127.0.0.1:9092"
      echo "export OMNIBUS_IT_KAFKA_SASL_BROKERS=127.0.0.1:9094"
      echo "export OMNIBUS_IT_KAFKA_RESTART='bash $here/kafka.sh restart'" ;;
    sqs)
      echo "export OMNIBUS_IT_SQS_ENDPOINT=http://127.0.0.1:9324"
      echo "export OMNIBUS_IT_SQS_RESTART='bash $here/sqs.sh restart'" ;;
    otelcol)
      # The binary: the end-to-end tests start their own collectors from it.
      echo "export OMNIBUS_IT_OTELCOL=$(bash "$here/otelcol.sh" path || true)" ;;
    *) echo "unknown service '$1' (use redis, rabbitmq, kafka, sqs, otelcol)" >&2; return 2 ;;
  esac
}

# Removes from .services/env.sh the exports of the named services.
drop_exports() {
  local file="$state/env.sh" n
  mkdir -p "$state"
  [ -f "$file" ] || : >"$file"
  for n in "$@"; do
    exports_for "$n" | sed 's/=.*/=/' >"$file.drop"
    grep -v -F -f "$file.drop" "$file" >"$file.tmp" || true
    mv "$file.tmp" "$file"
  done
  rm -f "$file.drop"
}

case "$action" in
  start)
    mkdir -p "$state"
    pids=()
    for n in "${names[@]}"; do
      [ -f "$here/$n.sh" ] || { echo "no script for service '$n' ($here/$n.sh)" >&2; exit 2; }
      ( bash "$here/$n.sh" start >"$state/$n.start.log" 2>&1 ) &
      pids+=($!)
    done
    failed=0
    for i in "${!names[@]}"; do
      if wait "${pids[$i]}"; then
        echo "[services] ${names[$i]} is up"
      else
        echo "[services] ${names[$i]} failed to start; its log:" >&2
        tail -n 60 "$state/${names[$i]}.start.log" >&2 || true
        failed=1
      fi
    done
    # Keep the exports of services started earlier (`start sqs` after `start redis` keeps both).
    drop_exports "${names[@]}"
    for n in "${names[@]}"; do exports_for "$n" >>"$state/env.sh"; done
    [ "$failed" -eq 0 ] || exit 1
    echo "[services] exports written to $state/env.sh"
    ;;
  stop)
    for n in "${names[@]}"; do
      [ -f "$here/$n.sh" ] && bash "$here/$n.sh" stop || true
    done
    drop_exports "${names[@]}"
    ;;
  status)
    down=0
    for n in "${names[@]}"; do
      [ -f "$here/$n.sh" ] || { echo "no script for service '$n' ($here/$n.sh)" >&2; exit 2; }
      bash "$here/$n.sh" status 2>&1 || down=3
    done
    exit "$down"
    ;;
  env)
    for n in "${names[@]}"; do exports_for "$n"; done
    ;;
  *)
    echo "usage: $0 {start|stop|status|env} [redis rabbitmq kafka sqs otelcol]" >&2
    exit 2
    ;;
esac
