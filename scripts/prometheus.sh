#!/usr/bin/env bash
# A local Prometheus (Debian's `prometheus` package, installed by
# scripts/tools.sh when it can be) with Ordo's alert rules loaded.
#
#   scripts/prometheus.sh config DIR RULES INTERVAL JOB=HOST:PORT...
#       writes DIR/prometheus.yml: every JOB scraped at INTERVAL, RULES
#       evaluated at INTERVAL
#   scripts/prometheus.sh start [ADDR]
#       `./dev up`: scrapes the three services at their default metrics
#       ports (9101-9103) with deploy/prometheus/rules.yml, listening on
#       ADDR (default 127.0.0.1:9090); data in .ordo/prometheus. Exits 1
#       (saying why) when there is no prometheus binary or ADDR is taken.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

config() {
  local dir=$1 rules=$2 interval=$3
  shift 3
  mkdir -p "$dir"
  {
    printf 'global:\n  scrape_interval: %s\n  evaluation_interval: %s\n' "$interval" "$interval"
    printf 'rule_files:\n  - %s\n' "$rules"
    printf 'scrape_configs:\n'
    local target
    for target in "$@"; do
      printf '  - job_name: %s\n    static_configs:\n      - targets: ["%s"]\n' "${target%%=*}" "${target#*=}"
    done
  } >"$dir/prometheus.yml"
}

start() {
  local addr=${1:-127.0.0.1:9090}
  command -v prometheus >/dev/null || { say "no prometheus binary (apt-get install prometheus): no local Prometheus"; return 1; }
  local dir="$ORDO_STATE_DIR/prometheus"
  "$(dirname "$0")/down.sh" prometheus
  if port_open "${addr%:*}" "${addr##*:}"; then
    say "something else listens on $addr: no local Prometheus"
    return 1
  fi
  config "$dir" "$ORDO_ROOT/deploy/prometheus/rules.yml" 5s \
    order-service=127.0.0.1:9101 processor=127.0.0.1:9102 payments-sim=127.0.0.1:9103
  say "starting Prometheus on $addr (log: .ordo/prometheus.log)"
  nohup prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --storage.tsdb.retention.time=2d --web.listen-address="$addr" \
    >"$ORDO_STATE_DIR/prometheus.log" 2>&1 &
  echo $! >"$ORDO_STATE_DIR/prometheus.pid"
  wait_port "${addr%:*}" "${addr##*:}" 20 || { tail -n 20 "$ORDO_STATE_DIR/prometheus.log" >&2; return 1; }
}

case "${1:-}" in
  config) shift; config "$@" ;;
  start) shift; start "$@" ;;
  *) die "usage: $0 config DIR RULES INTERVAL JOB=HOST:PORT... | start [ADDR]" ;;
esac
