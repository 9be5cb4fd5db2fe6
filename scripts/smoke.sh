#!/usr/bin/env bash
# The services as a user meets them: the built binaries on free ports over
# a fresh database, driven with grpcurl and no proto files (reflection only),
# then stopped with SIGTERM. Ends with "smoke: N passed, M failed".
#
# ORDO_SMOKE_TLS=1 runs the same checks with every connection secured:
# the three gRPC servers on mutual TLS (grpcurl with -cacert/-cert/-key),
# PostgreSQL over TLS (sslmode=require), and a NATS of its own that
# requires TLS; plus checks that plaintext, an unknown CA and a client
# without a certificate are refused.
#
# ORDO_SMOKE_BIN_DIR runs the binaries found there instead of
# $CARGO_TARGET_DIR/debug; scripts/image-check.sh points it at wrappers that
# start each binary from the image's root filesystem (chroot, uid 65532);
# ORDO_SMOKE_FILES_OWNER (uid:gid) then owns the test certificates, as a
# Secret mounted for the pod's user would.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

grpc_flags=(-plaintext)
tls_env=()
db_params=""
tls_dir=""
nats_pid=""
if [ -n "${ORDO_SMOKE_TLS:-}" ]; then
  tls_dir=$(mktemp -d)
  make_test_pki "$tls_dir" || die "cannot make test certificates (openssl)"
  [ -z "${ORDO_SMOKE_FILES_OWNER:-}" ] || chown -R "$ORDO_SMOKE_FILES_OWNER" "$tls_dir"
  grpc_flags=(-cacert "$tls_dir/ca.crt" -cert "$tls_dir/client.crt" -key "$tls_dir/client.key")
  [ "$(psql "$PG_ADMIN_URL" -qtAc 'SHOW ssl')" = on ] || die "ORDO_SMOKE_TLS needs PostgreSQL with ssl=on"
  db_params="?sslmode=require"
  nats_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'tls {\n  cert_file: "%s"\n  key_file: "%s"\n}\n' "$tls_dir/server.crt" "$tls_dir/server.key" >"$tls_dir/nats.conf"
  nats-server -c "$tls_dir/nats.conf" -a 127.0.0.1 -p "$nats_port" -js -sd "$tls_dir/jetstream" >/dev/null 2>&1 &
  nats_pid=$!
  wait_port 127.0.0.1 "$nats_port" 20 || die "the TLS nats-server did not start"
  tls_env=(GRPC_TLS_CERT_FILE="$tls_dir/server.crt" GRPC_TLS_KEY_FILE="$tls_dir/server.key"
    GRPC_TLS_CLIENT_CA_FILE="$tls_dir/ca.crt"
    NATS_URL="tls://127.0.0.1:$nats_port" NATS_TLS_CA_FILE="$tls_dir/ca.crt")
  echo "smoke: every connection over TLS (certificates in $tls_dir)"
fi
stop_tls() { [ -n "$nats_pid" ] && kill "$nats_pid" 2>/dev/null; [ -n "$tls_dir" ] && rm -rf "$tls_dir"; }

bin="${ORDO_SMOKE_BIN_DIR:-$CARGO_TARGET_DIR/debug}"
passed=0 failed=0
check() { # check NAME COMMAND...: runs COMMAND, counts and reports the outcome
  local name=$1; shift
  if output=$("$@" 2>&1); then
    passed=$((passed + 1)); echo "  ok    $name"
  else
    failed=$((failed + 1)); echo "  FAIL  $name"; sed 's/^/        /' <<<"$output"
  fi
}
contains() { grep -q -- "$2" <<<"$1" || { echo "expected to find: $2"; echo "in: $1"; return 1; }; }

database="ordo_t_$(date +%s)_smoke$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr="127.0.0.1:$port"
log=$(mktemp)
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $database" >/dev/null || die "cannot create $database"
url="${PG_ADMIN_URL%/*}/$database$db_params"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
metrics="127.0.0.1:$(free_port)"
env "${tls_env[@]}" GRPC_LISTEN_ADDR=$addr DATABASE_URL=$url METRICS_LISTEN_ADDR=$metrics "$bin/order-service" >"$log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null
  psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1
  rm -f "$log"
  stop_tls
}
trap cleanup EXIT

serving() {
  for _ in $(seq 1 100); do
    grpcurl "${grpc_flags[@]}" -max-time 1 "$addr" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && return 0
    sleep 0.1
  done
  cat "$log"; return 1
}
call() { grpcurl "${grpc_flags[@]}" "$@"; }

echo "smoke test of order-service at $addr"
check "health is SERVING" serving
if [ -n "$tls_dir" ]; then
  refused() { ! grpcurl -max-time 5 "$@" "$addr" grpc.health.v1.Health/Check >/dev/null 2>&1; }
  check "TLS: plaintext is refused" refused -plaintext
  check "TLS: a client that does not know the CA is refused" refused -cert "$tls_dir/client.crt" -key "$tls_dir/client.key"
  check "TLS: a client without a certificate is refused (mutual TLS)" refused -cacert "$tls_dir/ca.crt"
  check "TLS: the database connection is encrypted" contains \
    "$(psql "$PG_ADMIN_URL" -qtAc "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = '$database'")" t
fi
listing=$(call "$addr" list)
check "reflection lists OrderService" contains "$listing" ordo.order.v1.OrderService
check "reflection lists Health" contains "$listing" grpc.health.v1.Health
check "reflection lists only what it serves" test -z "$(grep PaymentService <<<"$listing")"
check "describe without proto files" contains "$(call "$addr" describe ordo.order.v1.OrderService)" "rpc PlaceOrder"
check "OrderService health" contains "$(call -d '{"service":"ordo.order.v1.OrderService"}' "$addr" grpc.health.v1.Health/Check)" '"SERVING"'

placed=$(call -v -H 'x-correlation-id: smoke-1' -d '{"customer_id":"smoke","currency":"EUR","idempotency_key":"smoke-key",
  "lines":[{"sku":"SKU-1","quantity":2,"unit_price_minor":500}]}' "$addr" ordo.order.v1.OrderService/PlaceOrder)
check "PlaceOrder is PENDING" contains "$placed" ORDER_STATUS_PENDING
check "PlaceOrder echoes the correlation id" contains "$placed" "x-correlation-id: smoke-1"
check "PlaceOrder totals the lines" contains "$placed" '"totalMinor": "1000"'
order_id=$(grep -o '"orderId": "[^"]*"' <<<"$placed" | cut -d'"' -f4)

relayed() { # the relay publishes and deletes the order's outbox rows
  for _ in $(seq 1 100); do
    [ "$(psql "$url" -qtAc 'SELECT count(*) FROM outbox')" = 0 ] && return 0
    sleep 0.1
  done
  echo "outbox rows left: $(psql "$url" -qtAc 'SELECT count(*) FROM outbox')"; return 1
}
check "the outbox relay publishes the event" relayed
check "GetOrder finds it" contains "$(call -d "{\"order_id\":\"$order_id\"}" "$addr" ordo.order.v1.OrderService/GetOrder)" "$order_id"
scrape() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "http://$metrics/metrics"; }
check "/metrics counts PlaceOrder" contains "$(scrape)" 'ordo_grpc_server_handled_total{grpc_service="ordo.order.v1.OrderService",grpc_method="PlaceOrder",grpc_code="OK"}'
check "ListOrders pages it" contains "$(call -d '{"customer_id":"smoke","page_size":10}' "$addr" ordo.order.v1.OrderService/ListOrders)" "$order_id"
check "CancelOrder cancels" contains "$(call -d "{\"order_id\":\"$order_id\",\"reason\":\"smoke\"}" "$addr" ordo.order.v1.OrderService/CancelOrder)" ORDER_STATUS_CANCELLED
check "a second cancel is FailedPrecondition" contains "$(call -d "{\"order_id\":\"$order_id\"}" "$addr" ordo.order.v1.OrderService/CancelOrder 2>&1)" FailedPrecondition
check "bad input lists field violations" contains "$(call -d '{"customer_id":"","currency":"eur","lines":[]}' "$addr" ordo.order.v1.OrderService/PlaceOrder 2>&1)" '"field":"currency"'

kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then exit_code="still running 10 s after SIGTERM"; else wait "$pid"; exit_code=$?; fi
check "SIGTERM stops it cleanly (exit $exit_code)" test "$exit_code" = 0

bad_setting() {
  local out code
  out=$(OUTBOX_PARTITIONS=0 "$bin/order-service" 2>&1); code=$?
  [ "$code" = 2 ] && [ "$(wc -l <<<"$out")" = 1 ] && contains "$out" 'invalid OUTBOX_PARTITIONS="0"'
}
check "a bad setting stops start-up with one line" bad_setting

partitions_changed() {
  local out code
  out=$(env "${tls_env[@]}" GRPC_LISTEN_ADDR=127.0.0.1:0 DATABASE_URL=$url METRICS_LISTEN_ADDR=off OUTBOX_PARTITIONS=4 \
    timeout 30 "$bin/order-service" 2>&1); code=$?
  [ "$code" = 1 ] && contains "$out" 'OUTBOX_PARTITIONS is 4' && contains "$out" 'ordo-migrate repartition'
}
check "another partition count is refused at start-up (exit 1, naming OUTBOX_PARTITIONS)" partitions_changed

payments_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
payments="127.0.0.1:$payments_port"
env "${tls_env[@]}" GRPC_LISTEN_ADDR=$payments METRICS_LISTEN_ADDR=off "$bin/payments-sim" >/dev/null 2>&1 &
payments_pid=$!
trap 'cleanup; kill "$payments_pid" 2>/dev/null' EXIT
wait_payments() {
  for _ in $(seq 1 50); do
    grpcurl "${grpc_flags[@]}" -max-time 1 "$payments" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && return 0
    sleep 0.1
  done
  return 1
}
echo "smoke test of payments-sim at $payments"
check "payments-sim is SERVING" wait_payments
check "reflection lists PaymentService" contains "$(call "$payments" list)" ordo.payments.v1.PaymentService
authorized=$(call -d '{"order_id":"smoke-1","amount_minor":500,"currency":"EUR","idempotency_key":"pay-smoke-1"}' "$payments" ordo.payments.v1.PaymentService/Authorize)
check "Authorize approves" contains "$authorized" '"approved": true'
call -d '{"order_id":"smoke-1","amount_minor":500,"currency":"EUR","idempotency_key":"pay-smoke-1"}' "$payments" ordo.payments.v1.PaymentService/Authorize >/dev/null
check "a replay charges once" contains "$(call -d '{"order_id":"smoke-1"}' "$payments" ordo.payments.v1.PaymentService/GetPaymentCounts)" '"authorizations": 1'
call -d '{"faults":{"outage":true}}' "$payments" ordo.payments.v1.PaymentService/SetFaults >/dev/null
check "an outage is Unavailable" contains "$(call -d '{"order_id":"smoke-2","amount_minor":1,"currency":"EUR","idempotency_key":"k2"}' "$payments" ordo.payments.v1.PaymentService/Authorize 2>&1)" Unavailable

processor_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
processor="127.0.0.1:$processor_port"
processor_db="${database}_processor"
psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $processor_db" >/dev/null || die "cannot create $processor_db"
# Consumer and relay off: the smoke test must not take messages from a
# stream a running `just up` works on. Its dead-letter stream is its own.
env "${tls_env[@]}" GRPC_LISTEN_ADDR=$processor DATABASE_URL="${PG_ADMIN_URL%/*}/$processor_db$db_params" PROCESSOR_CONSUMER=false OUTBOX_RELAY=false METRICS_LISTEN_ADDR=off \
  PROCESSOR_ADMIN_TOKEN=smoke-admin-token-0123 "$bin/processor" >/dev/null 2>&1 &
processor_pid=$!
trap 'cleanup; kill "$payments_pid" "$processor_pid" 2>/dev/null; psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $processor_db WITH (FORCE)" >/dev/null 2>&1' EXIT
wait_processor() {
  for _ in $(seq 1 100); do
    grpcurl "${grpc_flags[@]}" -max-time 1 "$processor" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"' && return 0
    sleep 0.1
  done
  return 1
}
echo "smoke test of processor at $processor"
check "processor is SERVING" wait_processor
check "reflection lists ProcessorService" contains "$(call "$processor" list)" ordo.processor.v1.ProcessorService
check "health per dependency: payments" contains "$(call -d '{"service":"ordo.deps.payments"}' "$processor" grpc.health.v1.Health/Check)" '"SERVING"'
check "health per dependency: database" contains "$(call -d '{"service":"ordo.deps.database"}' "$processor" grpc.health.v1.Health/Check)" '"SERVING"'
check "liveness (the probe the chart uses)" contains "$(call -d '{"service":"ordo.liveness"}' "$processor" grpc.health.v1.Health/Check)" '"SERVING"'
check "an unknown order is NotFound" contains "$(call -d '{"order_id":"01a20b38-c6a5-7401-aca9-0fec73eb5295"}' "$processor" ordo.processor.v1.ProcessorService/GetOrderProcessing 2>&1)" NotFound
check "dead letters need the token" contains "$(call "$processor" ordo.processor.v1.ProcessorService/ListDeadLetters 2>&1)" Unauthenticated
check "a wrong token is refused" contains "$(call -H 'authorization: Bearer wrong' "$processor" ordo.processor.v1.ProcessorService/ListDeadLetters 2>&1)" Unauthenticated
check "the right token lists them" call -H 'authorization: Bearer smoke-admin-token-0123' "$processor" ordo.processor.v1.ProcessorService/ListDeadLetters
processor_bad_setting() {
  local out code
  out=$(PROCESSOR_MAX_ATTEMPTS=0 "$bin/processor" 2>&1); code=$?
  [ "$code" = 2 ] && [ "$(wc -l <<<"$out")" = 1 ] && contains "$out" 'invalid PROCESSOR_MAX_ATTEMPTS="0"'
}
check "a bad processor setting stops start-up with one line" processor_bad_setting

echo "smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
