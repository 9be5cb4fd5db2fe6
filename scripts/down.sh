#!/usr/bin/env bash
# `just down`: stops what `just up` started (the order service, the processor, the payments
# simulator, the trace viewer, the local Prometheus, and nats-server if Ordo started it). PostgreSQL is left running.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

for name in "${@:-order-service processor payments-sim trace-viewer prometheus nats}"; do
  for one in $name; do
    pidfile="$ORDO_STATE_DIR/$one.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      say "stopping $one ($pid)"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
  done
done
