#!/usr/bin/env bash
# Rewrites the README's configuration tables from each binary's
# `--settings-markdown` (the tests fail while a table differs from it).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

binaries=(order-service processor payments-sim)
cargo build -q -p order-service -p processor -p payments-sim --bins
readme="$ORDO_ROOT/README.md"
for binary in "${binaries[@]}"; do
  grep -qx "<!-- settings:$binary:begin -->" "$readme" || die "README.md has no <!-- settings:$binary:begin --> marker"
  TABLE="$("$CARGO_TARGET_DIR/debug/$binary" --settings-markdown)" \
  BEGIN="<!-- settings:$binary:begin -->" END="<!-- settings:$binary:end -->" \
    awk '$0 == ENVIRON["BEGIN"] { print; print ENVIRON["TABLE"]; skip = 1; next }
         $0 == ENVIRON["END"] { skip = 0 }
         !skip { print }' "$readme" > "$readme.tmp"
  mv "$readme.tmp" "$readme"
done
say "README.md: the settings tables of ${binaries[*]} are regenerated"
