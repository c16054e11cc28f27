#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser tests (test-integration/serve/), which
# drive it with playwright-core: playwright never downloads a browser of its own here.
#   scripts/services/chromium.sh {install|status}
# install does nothing when the browser is already there; status exits 3 when it is missing.
# Environment: OMNIBUS_CHROMIUM, a Chromium or Chrome binary to use instead of /usr/bin/chromium
# (install then only checks that it runs).
set -euo pipefail

BIN="${OMNIBUS_CHROMIUM:-/usr/bin/chromium}"

log() { echo "[chromium] $*"; }
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The version line proves the binary starts (shared libraries present), not only that it exists.
version() {
  "$BIN" --version 2>/dev/null | grep -m1 -i -E 'chrom(e|ium)'
}

case "${1:-install}" in
  install)
    if [ ! -x "$BIN" ]; then
      if [ -n "${OMNIBUS_CHROMIUM:-}" ]; then
        log "OMNIBUS_CHROMIUM=$BIN is not an executable file" >&2
        exit 1
      fi
      log "installing chromium from the Debian archive"
      apt_install chromium
    fi
    if ! v="$(version)"; then
      log "$BIN does not start: run $BIN --version to see why" >&2
      exit 1
    fi
    log "$v at $BIN"
    ;;
  status)
    if [ -x "$BIN" ] && v="$(version)"; then
      log "$v at $BIN"
    else
      log "not installed at $BIN"
      exit 3
    fi
    ;;
  *)
    echo "usage: $0 {install|status}" >&2
    exit 2
    ;;
esac
