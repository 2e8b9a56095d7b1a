#!/usr/bin/env bash
# Fault soak (issue 11): 1000 SSE streams through tether (release build, 2 workers, loopback
# only) while two upstream replicas inject faults of every kind: FIN, RST, stalls past tether's
# --upstream-idle-timeout, half an event then FIN (per connection, ~10,000 over the default
# 5 minutes), refused connects (a replica's listener pauses), kills of one of the two replicas
# (it dies and comes back on its port), and clients that leave and come back with
# Last-Event-ID. tether sends heartbeats every second; every client counts them and its longest
# silence (a worker whose timers stall shows there).
#
# Pass (checked and printed; exit 1 otherwise):
#   1. every client saw every event once, in order (0 lost, 0 duplicated, no error, none stuck)
#   2. tether's RSS flat after warm-up: end within 5 % of the level right after warm-up
#   3. tether's open fds back to the baseline once the clients are gone
#
# Usage: scripts/soak.sh [--duration S] [--streams N] [--no-build] [--record] [--work DIR]
#                        [further options of scripts/soak/run.py, e.g. --kill-every 25]
#   --duration S   seconds of load, warm-up (a fifth, 10-60 s) included (default 300)
#   --record       append the summary to perf/RESULTS.md
#   --work DIR     logs and figures (default /tmp/tether-soak-<time>)
# Binaries come from $CARGO_TARGET_DIR/release (else target/release). Every process it starts is
# stopped by PID when it ends. Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=1
RECORD=0
WORK="/tmp/tether-soak-$(date +%Y%m%d-%H%M%S)"
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0; shift ;;
    --record) RECORD=1; shift ;;
    --work) WORK="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done

BIN="${CARGO_TARGET_DIR:-target}/release"
if [ "$BUILD" = 1 ]; then
  echo "== build (release)"
  cargo build --release --quiet -p tether -p tether-perf
fi
for b in tether sse-upstream sse-load; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build first)" >&2; exit 2; }
done
# 1000 clients, as many upstream connections, and tether's two fds per stream.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$WORK"
echo "== soak (logs and figures in $WORK)"
set +e
python3 scripts/soak/run.py --bin "$BIN" --work "$WORK" --summary "$WORK/summary.md" "${ARGS[@]}"
STATUS=$?
set -e
if [ "$RECORD" = 1 ] && [ -s "$WORK/summary.md" ]; then
  {
    echo
    echo "tether at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ' (with local changes)'), \`scripts/soak.sh ${ARGS[*]:-}\`"
    echo
    cat "$WORK/summary.md"
  } >> perf/RESULTS.md
  echo "== appended to perf/RESULTS.md"
fi
exit $STATUS
