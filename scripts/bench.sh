#!/usr/bin/env bash
# End-to-end benchmark: tether against nginx and HAProxy (and the origin directly), side by side,
# in one run. One command builds the release binaries, installs the peers when missing, checks
# that every peer answers correctly (and streams SSE unbuffered) before measuring it, runs the
# scenarios and records the medians.
#
# Scenarios (--only takes the names or numbers; several with commas):
#   1a batch1   1000 SSE streams, ~100-byte events flat out, one upstream write per event, all
#               on one URL: events/s, proxy CPU-seconds per million events, proxy RSS at the
#               end of the window
#   1a-url batch1-url   the same, every stream its own URL (&s=<index>): in tether one replay
#               ring per stream instead of one shared ring (CPU per event and RSS both shapes)
#   1b batched  as 1a with batched upstream writes (16 KiB); 1b-url batched-url: own URLs
#               ("1" or "throughput" = all four; "url" or "distinct-urls" = the two -url ones)
#   2  latency  1000 streams at 10 events/s each (10k/s in all): added latency p50/p99 over direct,
#               and proxy CPU µs per event (not saturated: each event its own wake-up and
#               read, the steady per-event figure; the ratio to nginx beside it)
#   3  idle     ~9000 idle streams through each proxy: proxy RSS per stream
#   4  plain    keep-alive HTTP, 100-byte responses, wrk -c50: req/s and proxy CPU per request
#   5  drops    the origin closes every stream after K events: delivery gap at each drop
#               (p50/p99), lost and duplicated events (clients reconnect like EventSource)
#   6  ttfe     time to first event under load: while 1a's 1000 flat-out streams run, 50 new
#               SSE clients (--ttfe-clients) connect one after another, each to its own URL
#               whose first event the origin sends at once; each is timed from the start of
#               its TCP connect to its first complete event, then closed (RST) before the next
#               starts, so the load stays the same. p50/p99/max per peer (medians over reps)
#               and the ratio to nginx. Measured by sse-load --ttfe in a thread of its own
#               that sleeps in read(): a proxy that lets busy streams hold its worker shows
#               here, not in the load generator (perf/NOTES.md, "Time to first event").
#   7  fanout   one SSE URL, 1000 clients (--fanout-clients; same identity, no auth header),
#               each upstream connection paced at 100 events/s (--fanout-rate; why not 1000:
#               perf/NOTES.md, "Fan-out"), one write per event. tether runs with --coalesce
#               (when its binary has the flag: one upstream stream for all clients, late
#               clients start at the live head); nginx and HAProxy open one upstream
#               connection per client. Proxy CPU-seconds per million DELIVERED events
#               (summed over the clients), proxy RSS at the end of the window, events/s
#               delivered, upstream streams the origin served, and per client: lost and
#               duplicated events, counted from each client's first event (sse-load
#               --join-live). Goal: tether's CPU per delivered event at most 0.5x nginx's.
#
# Client TLS (issue 15), NOT in the default run (about 8 more minutes at 3 reps x 10 s for the
# first three, ~5 more for 1h and 3h; the default already takes ~50): ask with --only tls (all
# five) or their names or numbers. The
# proxies (tether, nginx, HAProxy; no direct row) serve HTTP/1.1 over TLS to the clients, plain
# HTTP to the origin, all with one certificate made for the run by openssl (ECDSA P-256,
# self-signed, for localhost; other TLS settings as each ships them). Clients connect to
# https://localhost:PORT (SNI localhost).
#   4t tls-plain  as 4 over TLS: wrk https:// (OpenSSL), -c50: req/s, proxy CPU per request
#   1t tls-1a     as 1a over TLS: sse-load --ca (rustls): events per proxy CPU-second, lost and
#                 duplicated events
#   3t tls-idle   as 3 over TLS: proxy RSS per idle TLS stream
#   1h h2-1a      as 1t over HTTP/2: the same 1000 streams, 100 per h2 connection (10
#                 connections; sse-load --h2-streams-per-conn 100): events per proxy
#                 CPU-second, lost and duplicated events
#   3h h2-idle    idle SSE streams over HTTP/2, 100 per connection: proxy RSS per stream
#                 (--h2-idle-streams, default 6000 on 60 connections: tether holds 3 fds per h2
#                 stream, its socketpair bridge and the upstream socket, under the 20000 limit)
# For 1h and 3h the proxies offer h2 in ALPN (nginx `listen ... ssl http2`, HAProxy `bind ...
# alpn h2,http/1.1`, tether always); each peer's choice of h2 is checked before measuring and
# every sse-load connection checks its own. --only h2 runs these two alone (--only tls: all five).
#
# Two origins (issue 17): 1a, 1a-url, 1b, 1b-url and 2 run once per origin and event size
# (--origin, --event-size), every other scenario with sse-upstream and ~100 B events.
#   sse-upstream  our monoio io_uring simulator: flat out with batch=1 it writes ONE event per
#                 stream and yields, so a proxy finds about one event per read
#   sse-tokio     tokio on epoll, written as real servers are: each stream writes every event
#                 that is due back to back, one write() per event with batch=1 (1a), all in one
#                 write otherwise (1b); flat out a turn is 16 KiB of events (perf/README.md)
# Rows are labelled "1a [tokio origin, 32 B]" and so on; the rows of sse-upstream at 100 B are
# the figures every earlier run reported (same keys in the JSON). Why the two give different
# ratios: perf/NOTES.md, "Two origins".
#
# Placement: the proxy under test alone on CPU 0 (one worker/thread, all threads pinned), origin
# and load generator on CPU 1; every measurement gets a fresh origin and proxy; each repetition
# runs every peer in turn. Details and reasons: perf/NOTES.md.
#
# Usage: scripts/bench.sh [--reps N] [--duration S] [--warmup S] [--quick] [--only LIST]
#                         [--no-record] [--no-build] [--peers direct,tether,nginx,haproxy]
#                         [--streams N] [--idle-streams N] [--h2-idle-streams N]
#                         [--connections N] [--ttfe-clients N]
#                         [--fanout-clients N] [--fanout-rate R]
#                         [--origin sse-upstream|sse-tokio|both] [--event-size B[,B...]]
#                         [--pace R] [--retries N] [--max-others F]
#   --origin     origin of 1a/1a-url/1b/1b-url/2: sse-upstream, sse-tokio (alias tokio) or both
#                (default both; each origin doubles the time of those five scenarios)
#   --event-size bytes per event on the wire for the same five, a comma list (default 100,
#                i.e. size=80 as before; e.g. 32,100). Events under ~57 B carry no send time
#                (ts=0: no latency figures); scenario 2 keeps it (its "32 B" events are ~55 B).
#                The table shows the measured bytes per event.
#   --pace       1a/1b paced at R events/s per stream instead of flat out, so that neither CPU is
#                saturated (for A/Bs that put another process on CPU 1, e.g. the replay store's
#                Redis: scripts/bench/store_cost.sh)
#   --retries    measure again (after waiting up to 90 s for quiet) when other processes took
#                more than --max-others (default 0.10) of a CPU during a measurement (default 2;
#                0 bounds the run's time on a shared box: such runs are kept and listed)
#   --quick      smoke run (1 rep, 2 s windows, 200 streams, 2000 idle, 200 fan-out clients;
#                flags given explicitly, e.g. --streams 1000, win): a few minutes for every
#                scenario
#   --no-record  print the table only; nothing under perf/ is written (outputs go to
#                /tmp/tether-bench-last/)
# Records (without --no-record): a dated section appended to perf/RESULTS.md,
# perf/results/latest.json and perf/results/comparison.svg.
# A full run (3 reps, 10 s) takes about 50 minutes on a quiet machine plus the build (33 with
# --origin sse-upstream, before the second origin; 17 before 1a-url, 1b-url, 6 and 7 were
# added; 7 alone about 3); when other processes take more than 10% of a CPU during a
# measurement it is repeated (twice at most). Binaries are taken from $CARGO_TARGET_DIR/release
# when CARGO_TARGET_DIR is set (else target/release).
#
# Needs: nginx-light, haproxy, wrk (installed with apt-get when missing and running as root),
# python3, taskset, curl. Every process it starts is stopped by PID when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORD=1
BUILD=1
ARGS=()
CMD="scripts/bench.sh${*:+ $*}"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-record) RECORD=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --quick) ARGS+=(--quick); shift ;;
    --reps|--duration|--warmup|--only|--streams|--idle-streams|--h2-idle-streams|--connections|--peers|\
    --drop-every|--drop-rate|--drop-streams|--probe-streams|--origin-driver|--tether-extra|\
    --ttfe-clients|--fanout-clients|--fanout-rate|--origin|--event-size|--pace|--retries|\
    --max-others)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
      ARGS+=("$1=$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# ---- peers and tools ----
need_install=()
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || need_install+=(nginx-light)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null 2>&1 || need_install+=(haproxy)
command -v wrk >/dev/null 2>&1 || need_install+=(wrk)
if [ ${#need_install[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing ${need_install[*]} (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_install[@]}" >/dev/null
  else
    echo "missing: ${need_install[*]}; install with: sudo apt-get install -y ${need_install[*]}" >&2
    exit 1
  fi
fi
for tool in python3 taskset curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs 2 CPUs (proxy on CPU 0, origin and load on CPU 1)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

if [ "$BUILD" = 1 ]; then
  echo "== building release binaries (cargo build --release --workspace)"
  cargo build --release --workspace --quiet
fi
BIN="${CARGO_TARGET_DIR:-target}/release"
for bin in tether sse-upstream sse-tokio; do
  [ -x "$BIN/$bin" ] || { echo "$BIN/$bin missing (build failed?)" >&2; exit 1; }
done
if [ ! -x "$BIN/sse-load" ]; then
  echo "NOTE: $BIN/sse-load is not built (perf/src/bin/sse-load.rs not merged yet):"
  echo "      scenarios 1-3 are skipped, scenario 5 runs with the gap probe only."
fi

WORK=$(mktemp -d /tmp/tether-bench.XXXXXX)
RUN_PID=
cleanup() {
  # run.py stops its own processes; this is the backstop when it was killed itself.
  if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then
    kill "$RUN_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$RUN_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  if [ -f "$WORK/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done <"$WORK/pids"
  fi
  if [ -n "${KEEP_WORK:-}" ]; then echo "(work directory kept: $WORK)"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== running (work directory $WORK)"
taskset -c 1 python3 scripts/bench/run.py --work "$WORK" --nginx "$NGINX" --haproxy "$HAPROXY" \
  --command "$CMD" "${ARGS[@]}" &
RUN_PID=$!
wait "$RUN_PID"
RUN_PID=

if [ "$RECORD" = 1 ]; then
  OUT=perf/results
else
  OUT=/tmp/tether-bench-last
fi
mkdir -p "$OUT"
cp "$WORK/report.json" "$OUT/latest.json"
python3 scripts/bench/chart.py "$OUT/latest.json" "$OUT/comparison.svg"
python3 -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' "$OUT/comparison.svg" \
  || { echo "comparison.svg is not well-formed XML" >&2; exit 1; }
TABLE=$(python3 scripts/bench/report.py "$OUT/latest.json")
echo
echo "$TABLE"
echo
if [ "$RECORD" = 1 ]; then
  printf '\n%s\n' "$TABLE" >>perf/RESULTS.md
  echo "(appended to perf/RESULTS.md; wrote $OUT/latest.json and $OUT/comparison.svg)"
else
  echo "(not recorded; JSON and SVG in $OUT/)"
fi
