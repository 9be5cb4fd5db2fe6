#!/usr/bin/env bash
# `just release VERSION [--dry-run]`: cuts release VERSION from a clean tree.
#
# One version for everything: the workspace's (Cargo.toml [workspace.package],
# inherited by every crate, and Cargo.lock), the chart's version and
# appVersion (the image tag the chart defaults to), and the changelog. This
# bumps them, turns CHANGELOG.md's Unreleased section into
# `## [VERSION] - date`, runs `cargo update -w`, commits, tags vVERSION and
# prints the commands that build the image and package the chart; it builds,
# pushes and publishes nothing.
#
# --dry-run checks the same things, shows each change as a diff and the
# commands a release would run, and changes nothing; it exits 1 when a real
# release would stop.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() {
  echo "usage: scripts/release.sh [--dry-run] VERSION   (VERSION like 0.2.0 or 1.0.0-rc.1)" >&2
  exit 2
}

dry_run="" version=""
for arg in "$@"; do
  case $arg in
    --dry-run | -n) dry_run=1 ;;
    -h | --help) usage ;;
    -*) echo "error: unknown flag $arg" >&2; usage ;;
    *) [ -z "$version" ] || usage; version=$arg ;;
  esac
done
[ -n "$version" ] || usage
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  die "VERSION is a semantic version without a leading v, e.g. 0.2.0; not $version"

cd "$ORDO_ROOT"
cargo_toml=Cargo.toml
chart=deploy/helm/ordo/Chart.yaml
values=deploy/helm/ordo/values.yaml
changelog=CHANGELOG.md
tag="v$version"
date=${ORDO_RELEASE_DATE:-$(date -u +%F)}

# The version in Cargo.toml's [workspace.package].
workspace_version() {
  awk '/^\[/ { section = $0 }
       section == "[workspace.package]" && /^version *= *"/ { sub(/^version *= *"/, ""); sub(/".*/, ""); print; exit }' "$1"
}
chart_field() { sed -n "s/^$2: *\"\{0,1\}\([^\"]*\)\"\{0,1\} *\$/\1/p" "$1" | head -1; }
image_repository() {
  awk '/^image:/ { inside = 1; next } /^[^ #]/ { inside = 0 }
       inside && /^  repository:/ { print $2; exit }' "$values"
}

current=$(workspace_version "$cargo_toml")
[ -n "$current" ] || die "$cargo_toml has no version in [workspace.package]"
repository=$(image_repository)
[ -n "$repository" ] || die "$values has no image.repository"

# What would stop a release; a dry run lists them all and goes on.
problems=()
problem() { problems+=("$1"); }
git rev-parse --git-dir >/dev/null 2>&1 || die "$ORDO_ROOT is not a git checkout"
if [ -n "$(git status --porcelain)" ]; then
  problem "the tree has uncommitted changes (git status): release from a clean checkout"
fi
if git rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
  problem "tag $tag exists already"
fi
if [ "$version" = "$current" ] ||
  [ "$(printf '%s\n%s\n' "$current" "$version" | sort -V | tail -1)" != "$version" ]; then
  problem "$version is not newer than the workspace's $current"
fi
app_version=$(chart_field "$chart" appVersion)
if [ "$app_version" != "$current" ]; then
  problem "$chart appVersion $app_version differs from the workspace's $current: bring them in step first"
fi
if ! grep -qx '## \[Unreleased\]' "$changelog"; then
  problem "$changelog has no '## [Unreleased]' section"
elif ! awk '$0 == "## [Unreleased]" { inside = 1; next } inside && /^## / { exit } inside && /^[-*] / { found = 1 } END { exit !found }' "$changelog"; then
  problem "$changelog: Unreleased lists no change to release"
fi
if grep -q "^## \[$version\]" "$changelog"; then
  problem "$changelog has a section for $version already"
fi

# The new contents, made beside the tree.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/$(dirname "$chart")"
awk -v version="$version" '
  /^\[/ { section = $0 }
  section == "[workspace.package]" && !done && /^version *= *"/ { print "version = \"" version "\""; done = 1; next }
  { print }' "$cargo_toml" >"$work/$cargo_toml"
sed -e "s/^version: .*/version: $version/" -e "s/^appVersion: .*/appVersion: \"$version\"/" "$chart" >"$work/$chart"
# Unreleased keeps its heading and becomes empty; its entries fall under the
# new section. The compare links at the bottom follow.
awk -v version="$version" -v date="$date" -v tag="$tag" '
  $0 == "## [Unreleased]" { print; print ""; print "## [" version "] - " date; next }
  /^\[Unreleased\]: .*\/compare\/.*\.\.\.HEAD$/ {
    base = $0; sub(/^\[Unreleased\]: /, "", base); sub(/\/compare\/.*/, "", base)
    previous = $0; sub(/.*\/compare\//, "", previous); sub(/\.\.\.HEAD$/, "", previous)
    print "[Unreleased]: " base "/compare/" tag "...HEAD"
    print "[" version "]: " base "/compare/" previous "..." tag
    next
  }
  { print }' "$changelog" >"$work/$changelog"

say "release $version (from $current), dated $date${dry_run:+ — dry run, nothing changes}"
for file in "$cargo_toml" "$chart" "$changelog"; do
  if [ -n "$dry_run" ]; then
    diff -u --label "a/$file" --label "b/$file" "$file" "$work/$file" || true
  fi
  if cmp -s "$file" "$work/$file"; then problem "$file: found nothing to change"; fi
done

build_command="docker build --build-arg ORDO_GIT_COMMIT=\$(git rev-parse --short HEAD) -t $repository:$version ."
package_command="helm package deploy/helm/ordo   # ordo-$version.tgz"

if [ -n "$dry_run" ]; then
  echo "would run: cargo update -w --offline   (Cargo.lock: the workspace's crates to $version)"
  echo "would run: git commit -m 'Release $version' $cargo_toml Cargo.lock $chart $changelog"
  echo "would run: git tag -a $tag -m 'Ordo $version'"
  echo "then build and package with:"
  echo "  $build_command"
  echo "  $package_command"
  if [ ${#problems[@]} -gt 0 ]; then
    printf 'a release would stop here: %s\n' "${problems[@]}" >&2
    exit 1
  fi
  say "dry run: a release of $version would go through"
  exit 0
fi

if [ ${#problems[@]} -gt 0 ]; then
  printf 'error: %s\n' "${problems[@]}" >&2
  exit 1
fi
for file in "$cargo_toml" "$chart" "$changelog"; do
  cp "$work/$file" "$file"
done
# The lockfile carries the workspace's versions; nothing else moves.
if ! cargo update -w --offline 2>"$work/cargo.err"; then
  cat "$work/cargo.err" >&2
  say "cargo update -w --offline failed; trying with the network"
  cargo update -w
fi
git add "$cargo_toml" Cargo.lock "$chart" "$changelog"
git commit -q -m "Release $version"
git tag -a "$tag" -m "Ordo $version"
say "committed and tagged $tag ($(git rev-parse --short HEAD)); nothing is pushed"
echo "next:"
echo "  docker build --build-arg ORDO_GIT_COMMIT=$(git rev-parse --short HEAD) -t $repository:$version ."
echo "  docker push $repository:$version"
echo "  $package_command"
echo "  git push origin HEAD $tag"
