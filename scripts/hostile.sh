#!/usr/bin/env bash
# Hostile clients and exhausted resources at the issue's full scale (issue 11), on both io
# drivers, release build: 4000 slowloris connections (a header byte per second each) while
# ordinary clients are served; tether at its fd limit; 10,000 pipelined requests with nothing
# read; the drain after several resumes. The same tests run scaled down in `cargo test`
# (tests/hostile.rs, tests/drain_resumes.rs); here they print their figures (refusals and CPU at
# the fd limit, ordinary-request latency under slowloris, RSS while pipelining).
#
#   scripts/hostile.sh [SLOWLORIS_CONNECTIONS]     (default 4000)
#
# Loopback only. Needs about 2 x SLOWLORIS_CONNECTIONS + 1000 file descriptors (the test process
# raises its soft limit up to the hard one; tether inherits it).
set -euo pipefail
cd "$(dirname "$0")/.."

export TETHER_HOSTILE_SLOWLORIS="${1:-4000}"
need=$((TETHER_HOSTILE_SLOWLORIS * 2 + 1000))
hard="$(ulimit -Hn)"
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  echo "the hard fd limit ($hard) is below the $need this scale needs" >&2
  exit 1
fi
ulimit -n "$hard" 2>/dev/null || true

echo "== build (release)"
cargo test --release --test hostile --test drain_resumes --no-run --quiet

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
for driver in uring epoll; do
  if [ "$driver" = epoll ]; then export MONOIO_FORCE_LEGACY_DRIVER=1; else unset MONOIO_FORCE_LEGACY_DRIVER; fi
  echo "== $driver: $TETHER_HOSTILE_SLOWLORIS slowloris connections, the fd limit, 10,000 pipelined requests, the drain after resumes"
  # One test at a time: each measures tether while it runs (CPU, RSS, latency).
  if ! cargo test --release --quiet --test hostile --test drain_resumes -- --nocapture --test-threads=1 >"$log" 2>&1; then
    status=1
    cat "$log"
  fi
  grep -oE '(slowloris|at the fd limit|pipelining): .*|test result: .*' "$log" || true
done
exit "$status"
