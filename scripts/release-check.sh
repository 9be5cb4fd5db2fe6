#!/usr/bin/env bash
# `just release-check`: scripts/release.sh on a throwaway copy of this tree
# (its own git repository, no remote, cargo offline): the dry run shows the
# changes and changes nothing; a dirty tree, a bad or old version and an
# existing tag are refused; a real release bumps every version, moves the
# changelog, commits and tags. Bounded: one offline `cargo update -w`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

sandbox=$(mktemp -d)
trap 'rm -rf "$sandbox"' EXIT
fail() { printf 'release-check: FAILED %s\n' "$*" >&2; exit 1; }

# The tree as it is (tracked and new files, not ignored ones), committed
# in a repository of its own; git reads no configuration but this.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=release-check GIT_AUTHOR_EMAIL=release-check@example.invalid
export GIT_COMMITTER_NAME=release-check GIT_COMMITTER_EMAIL=release-check@example.invalid
export ORDO_RELEASE_DATE=2031-02-03
# (Files deleted but not yet committed are left out: the inner sh's $f.)
# shellcheck disable=SC2016
(cd "$ORDO_ROOT" && git ls-files -z --cached --others --exclude-standard |
  xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
  tar --null -T - -cf -) | tar -xf - -C "$sandbox"
git -C "$sandbox" init -q -b main
git -C "$sandbox" add -A
git -C "$sandbox" commit -q -m "the tree under test"
state() { git -C "$sandbox" rev-parse HEAD; git -C "$sandbox" status --porcelain; git -C "$sandbox" tag -l; }
before=$(state)
current=$(awk '/^\[/ { s = $0 } s == "[workspace.package]" && /^version/ { gsub(/.*= *"|"/, ""); print; exit }' "$sandbox/Cargo.toml")
[ -n "$current" ] || fail "no workspace version in Cargo.toml"
next=$(echo "$current" | awk -F. '{ print $1 "." $2 + 1 ".0" }')
release() { "$sandbox/scripts/release.sh" "$@" >"$sandbox.out" 2>&1; }
trap 'rm -rf "$sandbox" "$sandbox.out"' EXIT

say "release-check: a dry run of $next (from $current)"
release --dry-run "$next" || { cat "$sandbox.out"; fail "the dry run of a clean tree refused"; }
for line in "+version = \"$next\"" "+version: $next" "+appVersion: \"$next\"" "+## [$next] - 2031-02-03" \
  "+[$next]: https://github.com/ordo/ordo/compare/v$current...v$next" \
  "docker build --build-arg ORDO_GIT_COMMIT=\$(git rev-parse --short HEAD) -t ghcr.io/ordo/ordo:$next ." \
  "helm package deploy/helm/ordo" "would run: git tag -a v$next"; do
  grep -qF -- "$line" "$sandbox.out" || { cat "$sandbox.out"; fail "the dry run does not show: $line"; }
done
[ "$(state)" = "$before" ] || fail "the dry run changed the tree"

say "release-check: refusals"
release "v$next" && fail "a version with a leading v was accepted"
release "$current" && fail "the current version was accepted"
release --dry-run "$current" && fail "the dry run of the current version passed"
echo scratch >"$sandbox/scratch.txt"
release "$next" && fail "a dirty tree was released"
grep -q "uncommitted changes" "$sandbox.out" || fail "the refusal does not name the dirty tree"
release --dry-run "$next" && fail "the dry run of a dirty tree passed"
rm "$sandbox/scratch.txt"
[ "$(state)" = "$before" ] || fail "a refused release changed the tree"

say "release-check: a release of $next"
release "$next" || { cat "$sandbox.out"; fail "the release failed"; }
! grep -q "trying with the network" "$sandbox.out" || fail "cargo update -w needed the network"
[ -z "$(git -C "$sandbox" status --porcelain)" ] || fail "the release left changes uncommitted"
[ "$(git -C "$sandbox" log -1 --format=%s)" = "Release $next" ] || fail "no release commit"
[ "$(git -C "$sandbox" rev-parse "v$next^{commit}")" = "$(git -C "$sandbox" rev-parse HEAD)" ] || fail "v$next does not tag the release commit"
grep -qx "version = \"$next\"" "$sandbox/Cargo.toml" || fail "Cargo.toml keeps its version"
grep -qx "version: $next" "$sandbox/deploy/helm/ordo/Chart.yaml" || fail "the chart keeps its version"
grep -qx "appVersion: \"$next\"" "$sandbox/deploy/helm/ordo/Chart.yaml" || fail "the chart keeps its appVersion"
grep -A1 -x 'name = "order-service"' "$sandbox/Cargo.lock" | grep -qx "version = \"$next\"" || fail "Cargo.lock keeps the old version"
awk -v v="$next" '$0 == "## [Unreleased]" { u = NR } $0 == "## [" v "] - 2031-02-03" { r = NR }
                  END { exit !(u && r == u + 2) }' "$sandbox/CHANGELOG.md" || fail "CHANGELOG.md: no empty Unreleased above [$next]"
[ "$(git -C "$sandbox" diff --name-only HEAD~1 | sort | tr '\n' ' ')" = "CHANGELOG.md Cargo.lock Cargo.toml deploy/helm/ordo/Chart.yaml " ] ||
  fail "the release commit changes other files: $(git -C "$sandbox" diff --name-only HEAD~1)"
release "$next" && fail "a release over an existing tag was accepted"
grep -q "tag v$next exists" "$sandbox.out" || fail "the refusal does not name the tag"
say "release-check: passed"
