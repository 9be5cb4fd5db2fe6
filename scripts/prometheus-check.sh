#!/usr/bin/env bash
# Ordo's alerts and dashboard against a real Prometheus (Debian's package:
# prometheus and promtool), run by `./dev test`:
#
# 1. `promtool check rules` and `promtool test rules`: every alert of
#    deploy/prometheus/rules.yml fires in one case of rules.test.yml and
#    stays silent in another; and each has its runbook section in
#    docs/operations.md.
# 2. Live: its own nats-server, two fresh databases and the three built
#    binaries on free loopback ports, and a Prometheus (loopback, a free port
#    below 32768) scraping them every second with the rules loaded (their
#    `for:` cut to 5s, nothing else changed). Orders are placed, then the
#    payment simulator goes down (SetFaults outage) and more orders come
#    (no alert may be active before it):
#    OrdoBreakerOpen must fire for the payments breaker. Each service must
#    expose its own families (consumer lag, dead letters, gRPC labels, build
#    and process metrics). Then every query of
#    deploy/grafana/ordo.json must return series, and every alert expression
#    must evaluate with each series selector in it returning series.
#
# --rules-only: step 1 alone. Every wait is bounded. Ends with
# "prometheus-check: passed" or the failures.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

rules="$ORDO_ROOT/deploy/prometheus/rules.yml"
dashboard="$ORDO_ROOT/deploy/grafana/ordo.json"
command -v promtool >/dev/null || die "no promtool: apt-get install prometheus (./dev installs it)"
promtool check rules "$rules" || die "promtool check rules failed"
(cd "$ORDO_ROOT/deploy/prometheus" && promtool test rules rules.test.yml) || die "promtool test rules failed"
# Every alert has its runbook: a section of docs/operations.md named after
# it, which its runbook_url points at.
for alert in $(sed -n 's/^ *- alert: *//p' "$rules"); do
  grep -qx "### $alert" "$ORDO_ROOT/docs/operations.md" || die "docs/operations.md has no runbook section ### $alert"
  grep -q "operations.md#${alert,,}\$" "$rules" || die "$alert's runbook_url does not point at docs/operations.md#${alert,,}"
done
echo "every alert has its runbook in docs/operations.md"
[ "${1:-}" = --rules-only ] && { echo "prometheus-check: rules passed"; exit 0; }
command -v prometheus >/dev/null || die "no prometheus binary: apt-get install prometheus"

bin="$CARGO_TARGET_DIR/debug"
for binary in order-service processor payments-sim; do
  [ -x "$bin/$binary" ] || die "no $bin/$binary: cargo build --workspace --bins first"
done

# A free loopback port below 32768 (outside the kernel's ephemeral range).
free_port() {
  python3 -c '
import random, socket
for _ in range(200):
    port = random.randint(20000, 32767)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
else:
    raise SystemExit("no free port")'
}

work=$(mktemp -d)
pids=()
stamp="ordo_t_$(date +%s)_prom$$"
databases=("${stamp}_orders" "${stamp}_processor")
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  for db in "${databases[@]}"; do
    psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  done
  rm -rf "$work"
}
trap cleanup EXIT

for db in "${databases[@]}"; do
  psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null || die "cannot create database $db"
done
base_url=${PG_ADMIN_URL%/*}

nats_port=$(free_port)
nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/jetstream" >"$work/nats.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$nats_port" 20 || die "nats-server did not start"
nats="nats://127.0.0.1:$nats_port"

declare -A grpc metrics
# run NAME VAR=VALUE...: the binary on free ports, waiting until it is SERVING
run() {
  local name=$1
  shift
  grpc[$name]="127.0.0.1:$(free_port)"
  metrics[$name]="127.0.0.1:$(free_port)"
  env GRPC_LISTEN_ADDR="${grpc[$name]}" METRICS_LISTEN_ADDR="${metrics[$name]}" "$@" \
    "$bin/$name" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 150); do
    grpcurl -plaintext -max-time 1 "${grpc[$name]}" grpc.health.v1.Health/Check 2>/dev/null \
      | grep -q '"SERVING"' && return 0
    sleep 0.2
  done
  tail -n 30 "$work/$name.log" >&2
  die "$name is not SERVING after 30 s"
}
run payments-sim
run order-service DATABASE_URL="$base_url/${databases[0]}" NATS_URL="$nats"
# A small breaker minimum, so a handful of orders opens it.
run processor DATABASE_URL="$base_url/${databases[1]}" NATS_URL="$nats" \
  PAYMENTS_URL="http://${grpc[payments-sim]}" PAYMENTS_BREAKER_MIN_CALLS=5

# The rules as shipped, with every `for:` cut to 5s so a test run sees them fire.
sed -E 's/^( *for: ).*/\15s/' "$rules" >"$work/rules.yml"
"$(dirname "$0")/prometheus.sh" config "$work" "$work/rules.yml" 1s \
  order-service="${metrics[order-service]}" processor="${metrics[processor]}" \
  payments-sim="${metrics[payments-sim]}"
prometheus_addr="127.0.0.1:$(free_port)"
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="$prometheus_addr" >"$work/prometheus.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "${prometheus_addr#*:}" 30 || { tail -n 20 "$work/prometheus.log" >&2; die "prometheus did not start"; }
url="http://$prometheus_addr"
echo "prometheus-check: Prometheus at $url, services at ${grpc[order-service]} ${grpc[processor]} ${grpc[payments-sim]}"
ask() { python3 "$ORDO_ROOT/scripts/prometheus-queries.py" "$url" "$@"; }

failed=0
place() { # place N orders
  local i
  for i in $(seq 1 "$1"); do
    grpcurl -plaintext -d "{\"customer_id\": \"prom-$i\", \"currency\": \"EUR\",
      \"lines\": [{\"sku\": \"SKU-$i\", \"quantity\": 1, \"unit_price_minor\": 1200}]}" \
      "${grpc[order-service]}" ordo.order.v1.OrderService/PlaceOrder >/dev/null || return 1
  done
}
verdict() { if "$@"; then echo "  ok    $name"; else echo "  FAIL  $name"; failed=$((failed + 1)); fi; }

name="20 orders placed and confirmed, seen by Prometheus"
verdict eval 'place 20 && ask wait "sum(ordo_payment_calls_total{call=\"authorize\",outcome=\"approved\"}) >= 20" 60'
name="no alert is pending or firing while all is well"
verdict eval 'sleep 8 && ask quiet'
grpcurl -plaintext -d '{"faults": {"outage": true, "decline_above_minor": 1000000}}' \
  "${grpc[payments-sim]}" ordo.payments.v1.PaymentService/SetFaults >/dev/null || die "SetFaults failed"
name="a payments outage: 20 more orders, the payments breaker opens"
verdict eval 'place 20 && ask wait "max(ordo_breaker_state{dependency=\"payments\"}) >= 1" 60'
name="the outage alert OrdoBreakerOpen fires for payments"
verdict ask alert OrdoBreakerOpen dependency=payments 180
# The families each service must expose (beyond what the queries below
# sum over): every job's own, not just one service's.
for expr in \
  'ordo_consumer_pending_messages{job="order-service",consumer="order-service-confirmed"}' \
  'ordo_consumer_ack_pending_messages{job="processor",consumer="processor-placed"}' \
  'ordo_dead_letters{job="processor"}' \
  'ordo_grpc_server_handled_total{job="payments-sim",grpc_service="ordo.payments.v1.PaymentService",grpc_method="Authorize"}' \
  'count by (job) (ordo_build_info) == 1' 'count(count by (job) (process_resident_memory_bytes)) == 3' \
  'count(count by (job) (process_start_time_seconds)) == 3' 'count(count by (job) (process_open_fds)) == 3'; do
  name="series: $expr"
  verdict ask wait "$expr" 30
done
echo "every dashboard query and every alert expression through the HTTP API:"
name="dashboard and alert queries"
verdict ask all "$dashboard" 60

if [ "$failed" -gt 0 ]; then
  for log in processor order-service prometheus; do
    echo "--- $log (last lines)"; tail -n 15 "$work/$log.log"
  done
  echo "prometheus-check: $failed failed"
  exit 1
fi
echo "prometheus-check: passed"
