#!/usr/bin/env bash
# Makes sure a JetStream-enabled nats-server answers at NATS_URL; when
# nothing listens there, starts the 2.10+ server from the tool venv with its
# store under $ORDO_STATE_DIR/nats.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

host=$(url_host "$NATS_URL")
port=$(url_port "$NATS_URL" 4222)
if port_open "$host" "$port"; then
  # The server greets every connection with INFO {...}: check it has JetStream.
  info=$(timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port; head -n 1 <&3" 2>/dev/null || true)
  version=$(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' <<<"$info")
  grep -q '"jetstream":true' <<<"$info" \
    || die "the NATS server at $host:$port ($version) has no JetStream; restart it with -js"
  case "$version" in
    2.[0-9].*) say "note: nats-server $version at $host:$port predates 2.10; Ordo works with it, 2.10+ is preferred" ;;
  esac
  exit 0
fi
case "$host" in 127.0.0.1|localhost) ;; *) die "NATS at $host:$port does not answer" ;; esac

command -v nats-server >/dev/null || "$(dirname "$0")/tools.sh"
mkdir -p "$ORDO_STATE_DIR/nats"
say "starting nats-server $(nats-server --version | awk '{print $NF}') with JetStream on $host:$port"
nohup nats-server -a "$host" -p "$port" -js -sd "$ORDO_STATE_DIR/nats" \
  >"$ORDO_STATE_DIR/nats.log" 2>&1 &
echo $! >"$ORDO_STATE_DIR/nats.pid"
wait_port "$host" "$port" 15 || die "nats-server did not start; see $ORDO_STATE_DIR/nats.log"
