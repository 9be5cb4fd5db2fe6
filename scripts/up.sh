#!/usr/bin/env bash
# `just up`: starts a local Jaeger (the trace viewer, unless one already
# listens on 127.0.0.1:4317), the payments simulator (127.0.0.1:50053), the
# order service (127.0.0.1:50051) and the processor (127.0.0.1:50052) over
# PostgreSQL (a database each, migrated) and NATS, and a Prometheus
# (127.0.0.1:9090, when installed) with the alert rules, in the background; places
# a demo order with grpcurl, waits until it is CONFIRMED and prints the link
# to its trace. `just down` stops what this started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export NATS_URL

bin="$CARGO_TARGET_DIR/debug"
orders=127.0.0.1:50051
processor=127.0.0.1:50052
payments=127.0.0.1:50053
mkdir -p "$ORDO_STATE_DIR"

"$(dirname "$0")/down.sh" order-service processor payments-sim trace-viewer
for port in 50051 50052 50053; do
  port_open 127.0.0.1 "$port" && die "something else listens on 127.0.0.1:$port; stop it first"
done

# The admin APIs' token (dead letters, parked events, the operator view of
# both services): PROCESSOR_ADMIN_TOKEN, else one made once and kept in
# .ordo/admin-token, where `ordo` finds it through ORDO_ADMIN_TOKEN_FILE.
token_file="$ORDO_STATE_DIR/admin-token"
if [ -n "${PROCESSOR_ADMIN_TOKEN:-}" ]; then
  admin_token=$PROCESSOR_ADMIN_TOKEN
else
  [ -s "$token_file" ] || python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$token_file"
  admin_token=$(cat "$token_file")
fi

# start NAME ADDR [VAR=VALUE ...]: runs a service in the background and
# waits until its health check says SERVING.
start() {
  local name=$1 addr=$2
  shift 2
  say "starting $name on $addr (log: .ordo/$name.log)"
  env GRPC_LISTEN_ADDR="$addr" "$@" nohup "$bin/$name" >"$ORDO_STATE_DIR/$name.log" 2>&1 &
  echo $! >"$ORDO_STATE_DIR/$name.pid"
  for _ in $(seq 1 100); do
    if grpcurl -plaintext -max-time 1 "$addr" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
      return 0
    fi
    kill -0 "$(cat "$ORDO_STATE_DIR/$name.pid")" 2>/dev/null \
      || { tail -n 20 "$ORDO_STATE_DIR/$name.log" >&2; die "$name exited"; }
    sleep 0.2
  done
  tail -n 20 "$ORDO_STATE_DIR/$name.log" >&2
  die "$name is not SERVING after 20 s"
}

# Traces go to a local Jaeger: a real one already on 127.0.0.1:4317, or the
# trace viewer built from tools/trace-viewer. Without either, traces are off.
otel=()
if "$(dirname "$0")/trace-viewer.sh" start; then
  otel=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317)
else
  say "no trace viewer: services run without exporting traces"
fi

start payments-sim "$payments" "${otel[@]}"
start order-service "$orders" DATABASE_URL="$DATABASE_URL" ORDER_SERVICE_ADMIN_TOKEN="$admin_token" "${otel[@]}"
start processor "$processor" DATABASE_URL="$PROCESSOR_DATABASE_URL" \
  PAYMENTS_URL="http://$payments" PROCESSOR_ADMIN_TOKEN="$admin_token" "${otel[@]}"

# A local Prometheus scraping the three services, the alert rules loaded.
prometheus_line="No local Prometheus (why: above)."
if "$(dirname "$0")/prometheus.sh" start 127.0.0.1:9090; then
  prometheus_line="Prometheus, scraping the three services with the alert rules: http://127.0.0.1:9090/ (alerts: http://127.0.0.1:9090/alerts)."
fi

say "placing a demo order"
correlation_id="demo-$(date +%s)"
order=$(grpcurl -plaintext -H "x-correlation-id: $correlation_id" -d '{
  "customer_id": "demo-customer",
  "currency": "EUR",
  "lines": [
    {"sku": "BOOK-DDIA", "quantity": 1, "unit_price_minor": 4599},
    {"sku": "PEN-BLUE", "quantity": 3, "unit_price_minor": 250}
  ]
}' "$orders" ordo.order.v1.OrderService/PlaceOrder)
echo "$order"
order_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["order"]["orderId"])' <<<"$order")
status=
for _ in $(seq 1 100); do
  status=$(grpcurl -plaintext -d "{\"order_id\": \"$order_id\"}" "$orders" ordo.order.v1.OrderService/GetOrder \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["order"]["status"])')
  [ "$status" = ORDER_STATUS_PENDING ] || break
  sleep 0.1
done

trace_line="Traces are off (no trace viewer)."
if [ ${#otel[@]} -gt 0 ]; then
  # Spans are exported in batches (every 5 s): wait for the order's trace.
  trace_id=
  for _ in $(seq 1 40); do
    trace_id=$(python3 - "$correlation_id" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
wanted = sys.argv[1]
traces = json.load(urllib.request.urlopen("http://127.0.0.1:16686/api/traces?service=order-service&limit=50", timeout=2))["data"]
for trace in traces:
    for span in trace["spans"]:
        if any(tag["key"] == "correlation_id" and tag["value"] == wanted for tag in span.get("tags", [])):
            print(trace["traceID"]); raise SystemExit
PY
)
    [ -n "$trace_id" ] && break
    sleep 0.5
  done
  if [ -n "$trace_id" ]; then
    trace_line="Its whole life is one trace in the local Jaeger: http://127.0.0.1:16686/trace/$trace_id"
  else
    trace_line="Traces: http://127.0.0.1:16686/ (search service order-service)"
  fi
fi

say "the demo order's life, by ordo order show"
ORDO_ADMIN_TOKEN="$admin_token" "$bin/ordo" order show "$order_id" || say "ordo could not show it (see above)"

cat <<TXT

Ordo is up: order-service on $orders, processor on $processor, payments-sim on $payments;
PostgreSQL at $(url_host "$DATABASE_URL"):$(url_port "$DATABASE_URL" 5432) (databases $(url_database "$DATABASE_URL") and $(url_database "$PROCESSOR_DATABASE_URL")), NATS at $NATS_URL.
The demo order $order_id is $status. $trace_line
$prometheus_line
Its whole life, from both services, with the \`ordo\` command (the admin token is in .ordo/admin-token):

  export ORDO_ADMIN_TOKEN_FILE=\$PWD/.ordo/admin-token PATH=$bin:\$PATH
  ordo order show $order_id --jaeger http://127.0.0.1:16686
  ordo lag                  # outbox backlog per partition, consumers, dead letters, breakers
  ordo dlq list --group     # dead letters by cause; ordo --help for the rest

Or with grpcurl:

  grpcurl -plaintext -d '{"order_id": "$order_id"}' $orders ordo.order.v1.OrderService/GetOrder
  grpcurl -plaintext -d '{"order_id": "$order_id"}' $processor ordo.processor.v1.ProcessorService/GetOrderProcessing

Make the simulator fail every call, then place an order and watch its attempts (README: "Failures, live"):

  grpcurl -plaintext -d '{"faults": {"outage": true, "decline_above_minor": 1000000}}' $payments ordo.payments.v1.PaymentService/SetFaults

List a server's services: grpcurl -plaintext $orders list      Stop: ./dev down
TXT
