#!/usr/bin/env bash
# redis-server for the replay store's tests (src/store/, tests that start their own server on a
# free loopback port). Idempotent: does nothing when redis-server is on PATH already. Debian's
# package (Redis 7.0 on bookworm): the store needs XADD's MAXLEN ~ and XREVRANGE's exclusive
# bounds, both in Redis >= 6.2. The package's own service is not used (the tests start theirs),
# so it is stopped if the install started it.
set -euo pipefail

if command -v redis-server >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "redis-server is needed for the replay store tests; install Redis 6.2 or newer" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a new machine: an install without them fails.
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package starts a system-wide server on 6379 where there is an init system: the tests
# never use it, so it should not keep a port and memory.
if command -v service >/dev/null; then
  $sudo service redis-server stop >/dev/null 2>&1 || true
fi
command -v redis-server >/dev/null
