#!/usr/bin/env bash
# The Python MCP SDK (PyPI `mcp`, versions pinned in tests/python/requirements.txt) in
# tests/python/.venv, for tests/mcp_sdk.rs. Idempotent: it does nothing when the venv already
# holds exactly these requirements (a stamp file keeps a copy of the list it was built from).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=tests/python/.venv
req=tests/python/requirements.txt
stamp="$venv/.requirements.txt"
python="${PYTHON:-python3}"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  exit 0
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "Python 3.10 or newer (with the venv module) is needed for tests/mcp_sdk.rs" >&2
  exit 1
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
cp "$req" "$stamp"
