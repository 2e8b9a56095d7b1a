#!/usr/bin/env python3
"""HTTP/2 clients vs HTTP/1.1-over-TLS clients, measured on tether's own process (README,
"HTTP/2"). The clients are curl processes (curl multiplexes `--parallel` transfers over one
HTTP/2 connection, up to tether's 100 concurrent streams; over HTTP/1.1 each transfer has its
own TLS connection), so both modes use the same client and only tether's side differs.

Starts the upstream simulator and tether (release builds), then for each mode:
  idle:  N SSE streams that get no event after the first (rate=0.001, --sse-heartbeat 0) opened
         to warm up, then N more; tether's RSS before and after the second N, per stream.
  load:  N streams at R events/s each for D seconds; tether's utime+stime over the run divided
         by the events it relayed (tether_sse_events_total), in microseconds per event.
Usage: client_h2_probe.py TETHER_BIN SSE_UPSTREAM_BIN [--streams N] [--rate R] [--seconds D]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client_tls_probe import cpu_s, metric, rss_kb, start  # noqa: E402

BATCH = 100  # streams per curl process (tether's --h2-max-concurrent-streams default)


def curls(mode, port, cert, paths):
    """One curl per BATCH paths, all transfers at once; their output discarded."""
    procs = []
    for i in range(0, len(paths), BATCH):
        batch = paths[i:i + BATCH]
        # Over HTTP/1.1 each transfer needs a connection of its own, opened at once
        # (--parallel-immediate); over HTTP/2 curl waits for the first connection and
        # multiplexes the batch on it (with --parallel-immediate it would open one connection
        # per transfer: ~60 KB per stream of connection state, h2's and rustls's).
        cmd = ["curl", "-s", "-Z", "--parallel-max", str(BATCH)]
        if mode == "h2":
            cmd += ["--http2"]
        else:
            cmd += ["--http1.1", "--parallel-immediate"]
        cmd += ["--cacert", cert, "--resolve", f"localhost:{port}:127.0.0.1"]
        for p in batch:
            cmd += ["-o", "/dev/null", f"https://localhost:{port}{p}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def wait_streams(admin, n, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        if metric(admin, "tether_sse_streams_active") >= n:
            return True
        time.sleep(0.2)
    return False


def run(mode, args, pid, port, admin, cert):
    out = {}
    n = args.streams
    warm = curls(mode, port, cert, [f"/sse?events=0&size=100&rate=0.001&ts=0&warm={mode}{i}" for i in range(n)])
    assert wait_streams(admin, n), "warm-up streams did not open"
    time.sleep(2)
    before = rss_kb(pid)
    idle = curls(mode, port, cert, [f"/sse?events=0&size=100&rate=0.001&ts=0&idle={mode}{i}" for i in range(n)])
    assert wait_streams(admin, 2 * n), "idle streams did not open"
    time.sleep(2)
    out["idle_kb_per_stream"] = (rss_kb(pid) - before) / n
    out["connections"] = metric(admin, "tether_client_tls_connections_open")
    stop(warm + idle)
    time.sleep(2)
    load = curls(mode, port, cert, [f"/sse?events=0&rate={args.rate}&ts=0&size=100&load={mode}{i}" for i in range(n)])
    assert wait_streams(admin, n), "load streams did not open"
    time.sleep(1)
    e0, c0 = metric(admin, "tether_sse_events_total"), cpu_s(pid)
    time.sleep(args.seconds)
    e1, c1 = metric(admin, "tether_sse_events_total"), cpu_s(pid)
    stop(load)
    out["events_per_s"] = (e1 - e0) / args.seconds
    out["us_per_event"] = (c1 - c0) / max(e1 - e0, 1) * 1e6
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tether")
    ap.add_argument("upstream")
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--rate", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp()
    cert, key = f"{tmp}/c.pem", f"{tmp}/k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    up, (up_addr,) = start([args.upstream, "--bind", "127.0.0.1:0"], [r"(127\.0\.0\.1:\d+)"])
    results = {}
    for mode in ["h1-tls", "h2"]:
        cmd = [args.tether, "reverse", "--bind", "127.0.0.1:0", "--upstream", f"http://{up_addr}",
               "--workers", "1", "--sse-heartbeat", "0", "--admin", "127.0.0.1:0",
               "--tls-cert", cert, "--tls-key", key]
        t, (port, admin) = start(cmd, [r"listening on 127\.0\.0\.1:(\d+)",
                                       r"admin endpoint on http://(127\.0\.0\.1:\d+)"])
        results[mode] = run(mode, args, t.pid, int(port), admin, cert)
        t.terminate()
        t.wait()
    up.terminate()
    print(f"streams={args.streams} rate={args.rate}/s each seconds={args.seconds} "
          f"driver={os.environ.get('MONOIO_FORCE_LEGACY_DRIVER') and 'epoll' or 'auto'}")
    for mode, r in results.items():
        print(f"{mode:6} idle {r['idle_kb_per_stream']:.2f} KB/stream ({r['connections']:.0f} TLS connections for {2 * args.streams} streams)  load {r['events_per_s']:.0f} "
              f"events/s  {r['us_per_event']:.2f} us CPU/event")


if __name__ == "__main__":
    main()
