#!/usr/bin/env bash
# Make (once) the Python virtualenv that tests/helm_chart.rs renders and validates the chart with,
# and print its python's path.
#
#   bash tests/helm/venv.sh            -> /…/target/helm-venv/bin/python
#
# The venv lives in target/helm-venv (or $CLB_HELM_VENV) and holds the pinned packages of
# tests/helm/requirements.txt from PyPI (network needed the first time only): helm-python-sdk
# (Helm's Go engine as a shared library: no helm binary) and kubernetes-validate (the Kubernetes
# OpenAPI schemas as JSON Schema). It is remade when requirements.txt changes. Needs python3 >= 3.10
# with the venv module (Debian/Ubuntu: python3-venv). Concurrent callers wait on a lock.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${CLB_HELM_VENV:-$ROOT/target/helm-venv}"
REQ="$ROOT/tests/helm/requirements.txt"
PYTHON="${PYTHON:-python3}"

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements-sha256" 2>/dev/null)" != "$want" ]; then
  if ! "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "tests/helm/venv.sh: needs $PYTHON >= 3.10 with the venv and ensurepip modules" \
         "(Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 1
  fi
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" >&2
  "$VENV/bin/pip" install --disable-pip-version-check -q --only-binary=:all: -r "$REQ" >&2
  echo "$want" >"$VENV/.requirements-sha256"
fi
echo "$VENV/bin/python"
