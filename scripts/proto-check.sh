#!/usr/bin/env bash
# `just proto-check`: buf lint (STANDARD rules) and buf breaking against the
# last released API (the git tag api-v0.1.0), so an incompatible change fails.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$(dirname "$0")/node-tools.sh"
buf="$ORDO_STATE_DIR/node/node_modules/.bin/buf"
released="${ORDO_API_BASELINE:-api-v0.1.0}"

cd "$ORDO_ROOT"
"$buf" lint proto
say "buf lint: clean"
if git rev-parse -q --verify "refs/tags/$released" >/dev/null; then
  "$buf" breaking proto --against ".git#tag=$released,subdir=proto"
  say "buf breaking: compatible with $released"
else
  die "no git tag $released to check breaking changes against (git fetch --tags)"
fi
