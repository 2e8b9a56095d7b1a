#!/usr/bin/env bash
# End-to-end comparison of tether with nginx (and direct to the origin), side by side in one run.
#
# Scenario "plain": keep-alive HTTP/1.1 GETs of a 100-byte response, wrk -c50, one proxy worker.
# The proxy under test runs alone on CPU 0; the origin (perf's sse-upstream) and wrk share CPU 1.
# Each repetition runs every peer in turn (interleaved), the table reports medians.
#
# Usage: scripts/bench.sh [--reps N] [--duration SECONDS] [--connections N] [--no-record]
# Installs nginx-light and wrk from Debian packages when missing (needs root), else says what to install.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=3
DURATION=10
CONNS=50
RECORD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNS="$2"; shift 2 ;;
    --no-record) RECORD=0; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

need_install=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_install+=(nginx-light)
command -v wrk >/dev/null 2>&1 || need_install+=(wrk)
if [ ${#need_install[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${need_install[*]} ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_install[@]}" >/dev/null
  else
    echo "missing: ${need_install[*]}; install with: sudo apt-get install ${need_install[*]}" >&2
    exit 1
  fi
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building release binaries"
cargo build --release --workspace --quiet
TETHER=target/release/tether
UPSTREAM_BIN=target/release/sse-upstream

WORK=$(mktemp -d /tmp/tether-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.2
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# ---- origin on CPU 1 ----
taskset -c 1 "$UPSTREAM_BIN" --bind 127.0.0.1:0 --threads 1 >"$WORK/upstream.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "listening on" "$WORK/upstream.out" 2>/dev/null && break; sleep 0.05; done
UP_ADDR=$(grep -o 'listening on [0-9.:]*' "$WORK/upstream.out" | awk '{print $3}')
[ -n "$UP_ADDR" ] || { echo "origin did not start"; cat "$WORK/upstream.out"; exit 1; }

# ---- tether on CPU 0, one worker ----
T_PORT=$(free_port)
"$TETHER" reverse --bind "127.0.0.1:$T_PORT" --upstream "http://$UP_ADDR" --workers 1 --cpus 0 \
  --log-level warn 2>"$WORK/tether.log" &
TETHER_PID=$!
PIDS+=($TETHER_PID)

# ---- nginx on CPU 0, one worker, configured the way SSE users configure it ----
N_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 01;
worker_rlimit_nofile 20000;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 10000; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  proxy_temp_path $WORK/nginx;
  upstream origin { server $UP_ADDR; keepalive 64; }
  server {
    listen 127.0.0.1:$N_PORT reuseport;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 3600s;
    }
  }
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -g 'daemon off; master_process off;' &
NGINX_PID=$!
PIDS+=($NGINX_PID)

for port in "$T_PORT" "$N_PORT"; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/small" >/dev/null 2>&1 && break
    sleep 0.05
  done
done

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
CLK=$(getconf CLK_TCK)

# run_wrk URL PID -> prints "req_per_s cpu_us_per_req"
run_wrk() {
  local url=$1 pid=$2 before after out rps
  before=$([ "$pid" = 0 ] && echo 0 || cpu_ticks "$pid")
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" 2>&1)
  after=$([ "$pid" = 0 ] && echo 0 || cpu_ticks "$pid")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  local reqs
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  python3 -c "import sys; t=($after-$before)/$CLK; print(f'{float(\"$rps\"):.0f} {(t*1e6/max(1,$reqs)):.2f}')"
}

declare -A RPS CPU
for rep in $(seq "$REPS"); do
  for peer in direct tether nginx; do
    case $peer in
      direct) r=$(run_wrk "http://$UP_ADDR/small" 0) ;;
      tether) r=$(run_wrk "http://127.0.0.1:$T_PORT/small" "$TETHER_PID") ;;
      nginx) r=$(run_wrk "http://127.0.0.1:$N_PORT/small" "$NGINX_PID") ;;
    esac
    RPS[$peer]+="${r%% *} "
    CPU[$peer]+="${r##* } "
    echo "rep $rep $peer: ${r%% *} req/s, ${r##* } us proxy CPU per request"
  done
done

median() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'{statistics.median(v):.2f}')" $1; }
T_RPS=$(median "${RPS[tether]}"); N_RPS=$(median "${RPS[nginx]}"); D_RPS=$(median "${RPS[direct]}")
T_CPU=$(median "${CPU[tether]}"); N_CPU=$(median "${CPU[nginx]}")
RATIO=$(python3 -c "print(f'{$T_RPS/$N_RPS:.2f}')")
CPU_RATIO=$(python3 -c "print(f'{$N_CPU/$T_CPU:.2f}' if $T_CPU>0 else 'n/a')")

TABLE=$(cat <<MD
### $(date -u +%Y-%m-%d) plain keep-alive HTTP, $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
Command: \`scripts/bench.sh --reps $REPS --duration $DURATION --connections $CONNS\` (wrk -t1 -c$CONNS, 100-byte responses; proxy alone on CPU 0 with 1 worker, origin and wrk on CPU 1; medians of $REPS interleaved runs)

| peer | req/s | proxy CPU µs/request | req/s vs nginx |
|---|---:|---:|---:|
| direct (no proxy) | $D_RPS | - | - |
| tether | $T_RPS | $T_CPU | ${RATIO}x |
| nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') | $N_RPS | $N_CPU | 1.00x |

tether uses ${CPU_RATIO}x less CPU per request than nginx.
MD
)
echo
echo "$TABLE"
if [ "$RECORD" = 1 ]; then
  printf '\n%s\n' "$TABLE" >> perf/RESULTS.md
  echo "(appended to perf/RESULTS.md)"
fi
