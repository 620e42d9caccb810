#!/usr/bin/env bash
# Run the official Tencent Cloud Python SDK and tccli against a freshly started emulator.
#
#   bash tests/sdk/run.sh [pytest args...]
#
# Creates venvs under target/ (or $CLB_SDK_VENV_DIR; pinned versions from
# tests/sdk/requirements*.txt, PyPI access needed the first time), builds the clb-ingress binary
# (or uses $CLB_INGRESS_BIN), starts `clb-ingress emulator` on a free loopback port, runs
# pytest, stops the emulator. Exit code = pytest's. Needs python3 >= 3.10 with the venv module
# (Debian/Ubuntu: python3-venv) and the openssl command.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV_DIR="${CLB_SDK_VENV_DIR:-$ROOT/target}"
SDK_VENV="$VENV_DIR/sdk-venv"
TCCLI_VENV="$VENV_DIR/tccli-venv"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "tests/sdk/run.sh: needs $PYTHON >= 3.10 with the venv and ensurepip modules" \
       "(Debian/Ubuntu: apt-get install python3-venv)" >&2
  exit 1
fi

make_venv() { # dir requirements
  # A venv left half-made by an interrupted run (no pip) is made again.
  if [ ! -x "$1/bin/python" ] || [ ! -x "$1/bin/pip" ]; then
    rm -rf "$1"
    "$PYTHON" -m venv "$1"
  fi
  "$1/bin/pip" install --disable-pip-version-check -q -r "$2"
}
make_venv "$SDK_VENV" tests/sdk/requirements.txt
make_venv "$TCCLI_VENV" tests/sdk/requirements-tccli.txt

if [ -z "${CLB_INGRESS_BIN:-}" ]; then
  cargo build --quiet --bin clb-ingress
  CLB_INGRESS_BIN="$ROOT/target/debug/clb-ingress"
fi

PORT="$("$SDK_VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export EMULATOR_ENDPOINT="127.0.0.1:$PORT"
export EMULATOR_SECRET_ID="AKIDSDKTEST00000000000000000000000000"
export EMULATOR_SECRET_KEY="SDKTESTsecretKEY000000000000000000"
export EMULATOR_REGION="ap-guangzhou"
# Admin writes (/_emulator/*) need this token; conftest.py sends it.
EMULATOR_ADMIN_TOKEN="$("$SDK_VENV/bin/python" -c 'import secrets; print(secrets.token_hex(16))')"
export EMULATOR_ADMIN_TOKEN
export TCCLI="$TCCLI_VENV/bin/tccli"
# The official API description (api.json, examples.json) and the per-service error codes, for
# tests/sdk/test_contract.py: both come with the pinned tccli and its full SDK.
TCCLI_SERVICES_DIR="$("$TCCLI_VENV/bin/python" -c 'import os, tccli.services as s; print(os.path.dirname(s.__file__))')"
TENCENTCLOUD_DIR="$("$TCCLI_VENV/bin/python" -c 'import os, tencentcloud as t; print(os.path.dirname(t.__file__))')"
export TCCLI_SERVICES_DIR TENCENTCLOUD_DIR

LOG="$(mktemp)"
CLB_EMULATOR_ADMIN_TOKEN="$EMULATOR_ADMIN_TOKEN" "$CLB_INGRESS_BIN" emulator --listen "$EMULATOR_ENDPOINT" \
  --secret-id "$EMULATOR_SECRET_ID" --secret-key "$EMULATOR_SECRET_KEY" \
  --region "$EMULATOR_REGION" --task-delay-ms 100 --seed 1 --no-data-plane >"$LOG" 2>&1 &
EMU_PID=$!
cleanup() { kill "$EMU_PID" 2>/dev/null || true; wait "$EMU_PID" 2>/dev/null || true; rm -f "$LOG"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
  if "$SDK_VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://$EMULATOR_ENDPOINT/_emulator/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$EMU_PID" 2>/dev/null; then
    echo "emulator exited early:" >&2; cat "$LOG" >&2; exit 1
  fi
  sleep 0.1
done

"$SDK_VENV/bin/python" -m pytest -q -p no:cacheprovider tests/sdk "$@"
