#!/usr/bin/env bash
# The replay store's cost per event (issue 16): scenario 1a with `--replay-store` off and on,
# interleaved rounds (order alternating), a real redis-server on CPU 1 (beside the origin and the
# load generator: this machine has two cores), and the store's own figures (events written,
# dropped, pipeline latency, lag behind the workers) scraped from /metrics during each "on" run.
#
# usage: scripts/bench/store_cost.sh ROUNDS [bench.sh flags...]
#   e.g. scripts/bench/store_cost.sh 6 --pace 50     (1000 streams at 50 events/s each: 50k/s)
#        scripts/bench/store_cost.sh 6               (flat out, as the full bench's 1a)
# Run it under `flock /tmp/bench.flock`. Needs a release build (target/release or
# $CARGO_TARGET_DIR) and redis-server (scripts/redis.sh installs it). Prints one line per run and
# a summary; the raw reports stay in $WORK (default /tmp/tether-store-cost).
set -euo pipefail
rounds=${1:?rounds}
shift
bench_args=("$@")
cd "$(dirname "$0")/../.."
WORK=${WORK:-/tmp/tether-store-cost}
PORT=${STORE_COST_REDIS_PORT:-16399}
ADMIN=127.0.0.1:19099
rm -rf "$WORK"
mkdir -p "$WORK"
command -v redis-server >/dev/null || scripts/redis.sh

taskset -c 1 redis-server --port "$PORT" --save '' --appendonly no --daemonize yes \
    --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
trap 'kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

cpu_busy() { # per CPU: "busy total" ticks (user nice system irq softirq steal)
    awk '/^cpu[0-9]/ {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat
}

one_run() { # mode label
    local mode=$1 label=$2 out="$WORK/$2" extra=() scraper=""
    if [ "$mode" = on ]; then
        redis-cli -p "$PORT" flushall >/dev/null
        redis-cli -p "$PORT" config resetstat >/dev/null
        extra=(--tether-extra "--replay-store redis://127.0.0.1:$PORT --admin $ADMIN")
        # The last scrape that carried the store's figures is the run's (the proxy is gone
        # when bench.sh returns).
        ( while sleep 0.5; do
            if taskset -c 1 curl -s -m 1 "http://$ADMIN/metrics" >"$out.tmp" 2>/dev/null \
                && grep -q '^tether_replay_store_written_total' "$out.tmp"; then
                mv "$out.tmp" "$out.metrics"
                awk '/^tether_replay_store_(write_latency|lag)_microseconds / {printf "%s ", $2}
                     END {print ""}' "$out.metrics" >>"$out.series"
            fi
          done ) &
        scraper=$!
    fi
    local rpid r0 r1 c0 c1
    rpid=$(cat "$WORK/redis.pid")
    r0=$(awk '{print $14+$15}' "/proc/$rpid/stat")
    c0=$(cpu_busy)
    scripts/bench.sh --no-record --no-build --only 1a --origin sse-upstream --reps 1 --peers tether "${bench_args[@]}" \
        "${extra[@]}" >"$out.log" 2>&1 || { echo "$label: bench failed"; tail "$out.log"; }
    c1=$(cpu_busy)
    r1=$(awk '{print $14+$15}' "/proc/$rpid/stat")
    [ -n "$scraper" ] && kill "$scraper" && wait "$scraper" 2>/dev/null || true
    cp /tmp/tether-bench-last/latest.json "$out.json"
    echo "$(( r1 - r0 ))" >"$out.redis_ticks"
    paste <(echo "$c0") <(echo "$c1") | awk '{printf "%.2f ", ($3-$1)/($4-$2)}' >"$out.cpu"
    python3 - "$out" "$mode" <<'PY'
import json, sys
out, mode = sys.argv[1:]
m = json.load(open(out + ".json"))["medians"]["batch1"]["tether"]
line = (f"{out.rsplit('/', 1)[1]:8} {mode:3} cpu-s/M {m['proxy_cpu_s_per_m_events']:6.2f}"
        f"  events/s {m['events_per_s']:9.0f}  proxy share {m['proxy_cpu_share']:.2f}"
        f"  lost {m['gaps']} dup {m['duplicates']}  CPU busy {open(out + '.cpu').read()}"
        + ("  CONTENDED" if m.get("contended") else ""))
if mode == "on":
    try:
        s = {l.split()[0]: float(l.split()[1]) for l in open(out + ".metrics")
             if l.startswith("tether_replay_store_") and " " in l and "{" not in l.split()[0]}
        line += (f" written {s.get('tether_replay_store_written_total', 0):.0f}"
                 f" dropped {s.get('tether_replay_store_dropped_total', 0):.0f}"
                 f" errors {s.get('tether_replay_store_errors_total', 0):.0f}")
        # Last pipeline's round trip and lag, sampled every 0.5 s: median and max over the run.
        samples = [list(map(float, l.split())) for l in open(out + ".series") if len(l.split()) == 2]
        lat = sorted(x[0] / 1000 for x in samples)
        lag = sorted(x[1] / 1000 for x in samples)
        if samples:
            line += (f" pipeline ms p50 {lat[len(lat) // 2]:.1f} max {lat[-1]:.1f}"
                     f" lag ms p50 {lag[len(lag) // 2]:.1f} max {lag[-1]:.1f}")
    except FileNotFoundError:
        line += " (no /metrics scrape)"
print(line, flush=True)
PY
}

for r in $(seq "$rounds"); do
    if (( r % 2 )); then order="off on"; else order="on off"; fi
    for mode in $order; do one_run "$mode" "$mode$r"; done
done

python3 - "$WORK" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def fig(label):
    """CPU-s per million events, or None for a run other processes contended (bench.sh's
    check, after its retries): starved of its core, a proxy reads huge batches and its CPU per
    event means nothing."""
    m = json.load(open(f"{work}/{label}.json"))["medians"]["batch1"]["tether"]
    return None if m.get("contended") else m["proxy_cpu_s_per_m_events"]
off = [fig(f"off{r}") for r in range(1, rounds + 1)]
on = [fig(f"on{r}") for r in range(1, rounds + 1)]
left_out = [f"{k}{r + 1}" for k, xs in (("off", off), ("on", on)) for r, x in enumerate(xs) if x is None]
pairs = [b / a for a, b in zip(off, on) if a and b]
offs, ons = [x for x in off if x], [x for x in on if x]
print(f"medians: off {statistics.median(offs):.2f}, on {statistics.median(ons):.2f} proxy CPU-s per "
      f"million events: {statistics.median(ons) / statistics.median(offs):.3f}x "
      f"(paired median {statistics.median(pairs):.3f}, range {min(pairs):.3f}-{max(pairs):.3f})"
      + (f"; left out, contended: {', '.join(left_out)}" if left_out else ""))
PY
