#!/usr/bin/env bash
# The whole test suite, on both io drivers: io_uring and epoll differ in cancellation semantics,
# so a pass on one proves nothing about the other. This is the README's test command and exactly
# what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

# Integration tests start many loopback connections; make sure the soft fd limit allows them.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== test dependencies"
# A real EventSource client for the resume tests (tests/node_eventsource.rs); with this variable
# set that test fails instead of skipping when the package is missing.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "node and npm are needed for tests/node_eventsource.rs: apt-get install nodejs npm" >&2
  exit 1
fi
npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
export TETHER_REQUIRE_NODE=1
# The official Python MCP SDK as a real MCP server and client (tests/mcp_sdk.rs), pinned in
# tests/python/requirements.txt; with this variable set those tests fail instead of skipping.
bash scripts/mcp-venv.sh
export TETHER_REQUIRE_PYTHON_MCP=1
# A real redis-server for the replay store (src/store/); its tests start their own on a free
# loopback port and fail, never skip, when the binary is missing.
bash scripts/redis.sh

# curl and openssl as independent TLS clients of tether (tests/client_tls.rs; curl --http2 in
# tests/client_h2.rs); those tests fail, never skip, when a tool is missing.
if ! command -v curl >/dev/null || ! command -v openssl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq curl openssl
fi

echo "== build"
cargo build --workspace --all-targets --quiet

echo "== tests on io_uring (falls back to epoll where the kernel refuses io_uring)"
cargo test --workspace --quiet

echo "== tests on epoll (MONOIO_FORCE_LEGACY_DRIVER=1)"
MONOIO_FORCE_LEGACY_DRIVER=1 cargo test --workspace --quiet
