#!/usr/bin/env bash
# The local Jaeger for `just up`: `build` compiles tools/trace-viewer (its
# own workspace, with a vendored protoc, so nothing else needs one);
# `start` builds it if needed and runs it in the background unless
# something already listens on the OTLP port (a real Jaeger is used as is).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

tools_target="$CARGO_TARGET_DIR/tools"
viewer="$tools_target/debug/ordo-trace-viewer"

build() {
  say "building the trace viewer (first time: a few minutes)"
  local env
  env=$(CARGO_TARGET_DIR="$tools_target" cargo run -q --manifest-path "$ORDO_ROOT/tools/protoc-path/Cargo.toml")
  env $env CARGO_TARGET_DIR="$tools_target" cargo build -q --manifest-path "$ORDO_ROOT/tools/trace-viewer/Cargo.toml"
}

case "${1:-start}" in
  build) build ;;
  start)
    if port_open 127.0.0.1 4317; then
      say "an OTLP receiver already listens on 127.0.0.1:4317; sending traces there"
      exit 0
    fi
    [ -x "$viewer" ] || build
    mkdir -p "$ORDO_STATE_DIR"
    say "starting the trace viewer: Jaeger UI on http://127.0.0.1:16686/ (log: .ordo/trace-viewer.log)"
    nohup "$viewer" >"$ORDO_STATE_DIR/trace-viewer.log" 2>&1 &
    echo $! >"$ORDO_STATE_DIR/trace-viewer.pid"
    wait_port 127.0.0.1 4317 30 || die "the trace viewer did not start; see .ordo/trace-viewer.log"
    ;;
  *) die "usage: $0 [build|start]" ;;
esac
