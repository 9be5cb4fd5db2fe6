#!/usr/bin/env bash
# `just helm-check`: lints, renders and validates the Helm chart with the
# real Helm engine and the Kubernetes schemas (no cluster, no helm binary).
# The tools live in a project-local virtual environment made here.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

venv="$ORDO_STATE_DIR/helm-venv"
requirements="$ORDO_ROOT/deploy/helm/checks/requirements.txt"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$requirements" "$venv/requirements.txt"; then
  say "installing the Helm check tools into .ordo/helm-venv"
  python3 -m venv "$venv" || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
"$venv/bin/python" "$ORDO_ROOT/deploy/helm/checks/check.py"
