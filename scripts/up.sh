#!/usr/bin/env bash
# `just up`: starts the order service on 127.0.0.1:50051 over PostgreSQL
# (migrated) and NATS, in the background, then places a demo order with
# grpcurl and prints how to fetch it. `just down` stops what this started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export DATABASE_URL NATS_URL

bin="$CARGO_TARGET_DIR/debug"
addr=127.0.0.1:50051
mkdir -p "$ORDO_STATE_DIR"

"$(dirname "$0")/down.sh" order-service payments-sim
for port in 50051 50053; do
  port_open 127.0.0.1 "$port" && die "something else listens on 127.0.0.1:$port; stop it first"
done

say "starting payments-sim on 127.0.0.1:50053 (log: .ordo/payments-sim.log)"
GRPC_LISTEN_ADDR=127.0.0.1:50053 nohup "$bin/payments-sim" >"$ORDO_STATE_DIR/payments-sim.log" 2>&1 &
echo $! >"$ORDO_STATE_DIR/payments-sim.pid"

say "migrating $(url_database "$DATABASE_URL")"
"$bin/ordo-migrate" up >/dev/null

say "starting order-service on $addr (log: .ordo/order-service.log)"
GRPC_LISTEN_ADDR=$addr nohup "$bin/order-service" >"$ORDO_STATE_DIR/order-service.log" 2>&1 &
echo $! >"$ORDO_STATE_DIR/order-service.pid"
serving=
for _ in $(seq 1 100); do
  if grpcurl -plaintext -max-time 1 "$addr" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
    serving=yes
    break
  fi
  kill -0 "$(cat "$ORDO_STATE_DIR/order-service.pid")" 2>/dev/null \
    || { tail -n 20 "$ORDO_STATE_DIR/order-service.log" >&2; die "order-service exited"; }
  sleep 0.2
done
[ -n "$serving" ] || { tail -n 20 "$ORDO_STATE_DIR/order-service.log" >&2; die "order-service is not SERVING after 20 s"; }

say "placing a demo order"
order=$(grpcurl -plaintext -H "x-correlation-id: demo-$(date +%s)" -d '{
  "customer_id": "demo-customer",
  "currency": "EUR",
  "lines": [
    {"sku": "BOOK-DDIA", "quantity": 1, "unit_price_minor": 4599},
    {"sku": "PEN-BLUE", "quantity": 3, "unit_price_minor": 250}
  ]
}' "$addr" ordo.order.v1.OrderService/PlaceOrder)
echo "$order"
order_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["order"]["orderId"])' <<<"$order")
for _ in $(seq 1 50); do
  waiting=$(psql "$DATABASE_URL" -qtAc "SELECT count(*) FROM outbox WHERE aggregate_id = '$order_id'")
  [ "$waiting" = 0 ] && break
  sleep 0.1
done
if [ "$waiting" = 0 ]; then
  relayed="its OrderPlaced event is in the JetStream stream ORDERS (subject orders.placed)"
else
  relayed="its OrderPlaced event still waits in the outbox; see .ordo/order-service.log"
fi

cat <<TXT

Ordo is up: order-service on $addr, PostgreSQL at $(url_host "$DATABASE_URL"):$(url_port "$DATABASE_URL" 5432), NATS at $NATS_URL.
The demo order is PENDING and $relayed.
Fetch it:

  grpcurl -plaintext -d '{"order_id": "$order_id"}' $addr ordo.order.v1.OrderService/GetOrder

The payments simulator listens on 127.0.0.1:50053; make it fail a third of its calls:

  grpcurl -plaintext -d '{"faults": {"error_rate": 0.3, "decline_above_minor": 1000000}}' 127.0.0.1:50053 ordo.payments.v1.PaymentService/SetFaults

List the services: grpcurl -plaintext $addr list      Stop: ./dev down
TXT
