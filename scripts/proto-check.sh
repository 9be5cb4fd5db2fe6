#!/usr/bin/env bash
# `just proto-check`: buf lint (STANDARD and COMMENTS rules) and buf breaking
# against the last released API, so an incompatible change fails. The
# released API is kept as a buf image (proto/released/, built from the git
# tag api-v0.1.0), so the check needs no tags in the clone.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$(dirname "$0")/node-tools.sh"
buf="$ORDO_STATE_DIR/node/node_modules/.bin/buf"
released="${ORDO_API_BASELINE:-proto/released/ordo-api-v0.1.0.binpb}"

cd "$ORDO_ROOT"
"$buf" lint proto
say "buf lint: clean"
"$buf" breaking proto --against "$released"
say "buf breaking: compatible with $released"
