#!/usr/bin/env bash
# The complete suite against real brokers, without Docker (`pnpm test:all`):
#   bash scripts/test-all.sh [command …]     # default command: pnpm test
# Starts Redis, RabbitMQ, Kafka, ElasticMQ and the OpenTelemetry Collector (built once, then cached)
# with scripts/services, points the tests at them with every one required (a missing one fails the
# run instead of skipping), runs the command, stops the services this run started and exits with
# the command's exit code. Services that were already running are used and left running, so the
# machine is left as it was found.
# OMNIBUS_SERVICES_DIR replaces scripts/services (the script's own test uses stand-ins).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
services="${OMNIBUS_SERVICES_DIR:-$root/scripts/services}"
# all.sh writes the exports two levels above itself, in .services/env.sh.
exports="$(cd "$services/../.." && pwd)/.services/env.sh"
cd "$root"

names=(redis rabbitmq kafka sqs otelcol)
[ $# -gt 0 ] || set -- pnpm test

started=()
for name in "${names[@]}"; do
  if bash "$services/$name.sh" status >/dev/null 2>&1; then
    echo "[test:all] $name is already running: using it and leaving it running"
  else
    started+=("$name")
  fi
done

stop_started() {
  if [ ${#started[@]} -gt 0 ]; then
    echo "[test:all] stopping ${started[*]}"
    bash "$services/all.sh" stop "${started[@]}" || echo "[test:all] could not stop ${started[*]}" >&2
  fi
}
trap stop_started EXIT
# An interrupted run still stops what it started: exiting from the handler runs the EXIT trap.
trap 'exit 130' INT
trap 'exit 143' TERM

# Starting a running service does nothing but write its exports, so all of them are named here.
bash "$services/all.sh" start "${names[@]}"
# shellcheck disable=SC1091
. "$exports"
OMNIBUS_IT_REQUIRE="$(
  IFS=,
  echo "${names[*]}"
)"
export OMNIBUS_IT_REQUIRE

status=0
"$@" || status=$?
echo "[test:all] $* exited with $status"
exit "$status"
