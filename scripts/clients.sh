#!/usr/bin/env bash
# `just clients`: generates the Python and TypeScript stubs, type-checks the
# TypeScript example, and runs the Rust and Python examples against the three
# services started here on free ports over fresh databases. Each example
# must see its order reach CONFIRMED.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bin="$CARGO_TARGET_DIR/debug"
gen="$ORDO_STATE_DIR/gen"
cd "$ORDO_ROOT"

# Python: grpcio-tools stubs in a project-local venv.
venv="$ORDO_STATE_DIR/py-venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import grpc_tools' 2>/dev/null; then
  say "installing grpcio-tools into .ordo/py-venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check grpcio==1.68.1 grpcio-tools==1.68.1
fi
rm -rf "$gen/python" && mkdir -p "$gen/python"
well_known=$("$venv/bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
"$venv/bin/python" -m grpc_tools.protoc -I proto -I "$well_known" \
  --python_out="$gen/python" --grpc_python_out="$gen/python" $(cd proto && find ordo -name '*.proto')
say "python stubs in .ordo/gen/python"

# TypeScript: protobuf-es stubs from buf, then a type-check of the example.
"$(dirname "$0")/node-tools.sh"
rm -rf "$gen/ts"
(cd proto && PATH="$ORDO_STATE_DIR/node/node_modules/.bin:$PATH" buf generate)
"$ORDO_STATE_DIR/node/node_modules/.bin/tsc" -p examples/typescript
say "typescript stubs in .ordo/gen/ts; examples/typescript type-checks"

# The services, on free ports, over databases of their own.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
suffix="$(date +%s)_clients$$"
orders_db="ordo_t_${suffix}"; processor_db="ordo_t_${suffix}_p"
for db in "$orders_db" "$processor_db"; do psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $db" >/dev/null; done
pids=()
pki=$(mktemp -d)
make_test_pki "$pki" || die "cannot make test certificates (openssl)"
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$pki"
  for db in "$orders_db" "$processor_db"; do psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
# start_services [tls]: a NATS of their own (so nothing else consumes their
# stream) and the three services on fresh ports; with `tls`, every
# connection secured: mutual TLS on gRPC (the processor calls payments over
# it too), NATS requiring TLS, PostgreSQL over TLS.
start_services() {
  local mode=${1:-plain} tls_env=() db_params="" nats_args=() scheme=nats payments_scheme=http
  orders_addr="127.0.0.1:$(free_port)"; processor_addr="127.0.0.1:$(free_port)"; payments_addr="127.0.0.1:$(free_port)"
  nats_port=$(free_port); nats_store=$(mktemp -d)
  if [ "$mode" = tls ]; then
    printf 'tls {\n  cert_file: "%s"\n  key_file: "%s"\n}\n' "$pki/server.crt" "$pki/server.key" >"$nats_store/nats.conf"
    nats_args=(-c "$nats_store/nats.conf"); scheme=tls; payments_scheme=https
    db_params="?sslmode=require"
    tls_env=(GRPC_TLS_CERT_FILE="$pki/server.crt" GRPC_TLS_KEY_FILE="$pki/server.key" GRPC_TLS_CLIENT_CA_FILE="$pki/ca.crt"
      NATS_TLS_CA_FILE="$pki/ca.crt" PAYMENTS_TLS_CA_FILE="$pki/ca.crt"
      PAYMENTS_TLS_CERT_FILE="$pki/client.crt" PAYMENTS_TLS_KEY_FILE="$pki/client.key")
  fi
  nats-server "${nats_args[@]}" -a 127.0.0.1 -p "$nats_port" -js -sd "$nats_store" >/dev/null 2>&1 & pids+=($!)
  wait_port 127.0.0.1 "$nats_port" 20
  local common=(NATS_URL="$scheme://127.0.0.1:$nats_port" METRICS_LISTEN_ADDR=off RUST_LOG=warn "${tls_env[@]}")
  env GRPC_LISTEN_ADDR="$payments_addr" "${common[@]}" "$bin/payments-sim" & pids+=($!)
  env GRPC_LISTEN_ADDR="$orders_addr" DATABASE_URL="${PG_ADMIN_URL%/*}/$orders_db$db_params" "${common[@]}" "$bin/order-service" & pids+=($!)
  env GRPC_LISTEN_ADDR="$processor_addr" DATABASE_URL="${PG_ADMIN_URL%/*}/$processor_db$db_params" \
    PAYMENTS_URL="$payments_scheme://$payments_addr" PROCESSOR_ADMIN_TOKEN="$token" \
    "${common[@]}" "$bin/processor" & pids+=($!)
  local grpc_flags=(-plaintext)
  [ "$mode" = tls ] && grpc_flags=(-cacert "$pki/ca.crt" -cert "$pki/client.crt" -key "$pki/client.key")
  for addr in "$orders_addr" "$processor_addr" "$payments_addr"; do
    for _ in $(seq 1 100); do
      grpcurl "${grpc_flags[@]}" -max-time 1 -d '{"service":"ordo.liveness"}' "$addr" grpc.health.v1.Health/Check 2>/dev/null | grep -q SERVING && break
      sleep 0.2
    done
  done
}
stop_services() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; pids=(); }
token="clients-admin-token-0123456789"
start_services

say "rust example"
rust_out=$(ORDO_ORDER_URL="http://$orders_addr" cargo run -q -p ordo-proto --example place_order)
echo "$rust_out"
grep -q "is Confirmed" <<<"$rust_out" || die "the Rust example did not see its order CONFIRMED"

say "python example"
python_out=$(PYTHONPATH="$gen/python" "$venv/bin/python" examples/python/place_order.py "$orders_addr")
echo "$python_out"
grep -q "is ORDER_STATUS_CONFIRMED" <<<"$python_out" || die "the Python example did not see its order CONFIRMED"
say "the README's grpcurl cookbook"
cookbook=$(sed -n '/<!-- cookbook:begin -->/,/<!-- cookbook:end -->/p' README.md | sed '1,2d;$d' | sed '$d')
[ -n "$cookbook" ] || die "no cookbook block in the README"
cookbook=$(sed -e "1s|.*|ORDERS=$orders_addr PROCESSOR=$processor_addr PAYMENTS=$payments_addr|" -e "2s|.*|TOKEN=$token|" <<<"$cookbook")
if ! out=$(timeout 120 bash -eu -c "$cookbook" 2>&1); then
  echo "$out" | tail -20
  die "a cookbook command failed"
fi
grep -q '"refunds": 1' <<<"$out" || { echo "$out" | tail -20; die "the cookbook's cancelled order was not refunded once"; }
say "the examples again, every connection over TLS (mutual TLS to the services)"
stop_services
start_services tls
tls_client=(ORDO_TLS_CA_FILE="$pki/ca.crt" ORDO_TLS_CERT_FILE="$pki/client.crt" ORDO_TLS_KEY_FILE="$pki/client.key")
rust_out=$(env "${tls_client[@]}" ORDO_ORDER_URL="https://$orders_addr" cargo run -q -p ordo-proto --example place_order)
echo "$rust_out"
grep -q "is Confirmed" <<<"$rust_out" || die "the Rust example over TLS did not see its order CONFIRMED"
python_out=$(env "${tls_client[@]}" PYTHONPATH="$gen/python" "$venv/bin/python" examples/python/place_order.py "$orders_addr")
echo "$python_out"
grep -q "is ORDER_STATUS_CONFIRMED" <<<"$python_out" || die "the Python example over TLS did not see its order CONFIRMED"
if env ORDO_ORDER_URL="https://$orders_addr" ORDO_TLS_CA_FILE="$pki/ca.crt" \
  cargo run -q -p ordo-proto --example place_order >/dev/null 2>&1; then
  die "a client without a certificate got through mutual TLS"
fi
say "clients: the Rust and Python examples reached CONFIRMED, in plaintext and over mutual TLS; the TypeScript example type-checks; every cookbook command ran"
