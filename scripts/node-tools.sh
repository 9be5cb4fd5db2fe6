#!/usr/bin/env bash
# Installs the npm tools the API checks use (buf, protoc-gen-es, TypeScript)
# into .ordo/node, once; prints nothing. Sourced tools live in
# .ordo/node/node_modules/.bin.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

dir="$ORDO_STATE_DIR/node"
manifest="$ORDO_ROOT/scripts/node-tools.json"
if [ ! -x "$dir/node_modules/.bin/buf" ] || ! cmp -s "$manifest" "$dir/package.json"; then
  command -v npm >/dev/null || apt_install npm
  say "installing buf, protoc-gen-es and TypeScript into .ordo/node"
  mkdir -p "$dir"
  cp "$manifest" "$dir/package.json"
  (cd "$dir" && npm install --silent --no-audit --no-fund >/dev/null)
fi
