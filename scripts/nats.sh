#!/usr/bin/env bash
# Makes sure a JetStream-enabled nats-server answers at NATS_URL; when
# nothing listens there, starts the 2.10+ server from the tool venv with its
# store under $ORDO_STATE_DIR/nats.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

host=$(url_host "$NATS_URL")
port=$(url_port "$NATS_URL" 4222)
port_open "$host" "$port" && exit 0
case "$host" in 127.0.0.1|localhost) ;; *) die "NATS at $host:$port does not answer" ;; esac

command -v nats-server >/dev/null || "$(dirname "$0")/tools.sh"
mkdir -p "$ORDO_STATE_DIR/nats"
say "starting nats-server $(nats-server --version | awk '{print $NF}') with JetStream on $host:$port"
nohup nats-server -a "$host" -p "$port" -js -sd "$ORDO_STATE_DIR/nats" \
  >"$ORDO_STATE_DIR/nats.log" 2>&1 &
echo $! >"$ORDO_STATE_DIR/nats.pid"
wait_port "$host" "$port" 15 || die "nats-server did not start; see $ORDO_STATE_DIR/nats.log"
