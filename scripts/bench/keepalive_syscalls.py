#!/usr/bin/env python3
"""Counts, per keep-alive request, a proxy's syscalls and io_uring operations under scenario 4
of scripts/bench.sh (wrk -t1 -c50 on /small, 100-byte responses; proxy alone on CPU 0 with one
worker, origin and wrk on CPU 1), for tether on either driver and for nginx/HAProxy.

usage: scripts/bench/keepalive_syscalls.py [--peers tether,tether-epoll,nginx] [--seconds 5]
                                           [--connections 50] [--json FILE]

While wrk runs (from 2 s after its start), `perf stat` counts the proxy's syscalls by name and
its io_uring submissions by opcode for --seconds (the tracepoints of syscalls.py: counted in the
kernel, the proxy is never stopped). Requests in that span: half the writes
perf counted (one to the upstream, one to the client per request); the rate from the bytes the
proxy received from its clients (`ss`) and wrk's own rate are kept beside it. Proxy CPU per request from /proc over the span (with perf's own overhead:
the bench's figure is the one to compare). Builds nothing (CARGO_TARGET_DIR honoured).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402
import syscalls as sc  # noqa: E402

# Seconds between wrk's start and perf's: connections open, the proxy's pool is warm.
SETTLE_S = 2


def request_bytes(port):
    """What wrk sends per request (its default request for this URL)."""
    return len(f"GET /small HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")


def measure(b, a, peer_name, events):
    epoll = peer_name == "tether-epoll"
    name = "tether" if epoll else peer_name
    peer = bench.Peer(b, name, {}, origin="sse-upstream")
    start = b.procs.start
    if epoll:
        # Procs drops MONOIO_FORCE_LEGACY_DRIVER from every child; the proxy alone gets it back
        # (the origin stays on io_uring, as in the bench).
        def start_legacy(pname, argv, cpus, env=None, stdout=None):
            if pname.startswith("tether-"):
                env = dict(env or {}, MONOIO_FORCE_LEGACY_DRIVER="1")
            return start(pname, argv, cpus, env=env, stdout=stdout)
        b.procs.start = start_legacy
    try:
        peer.start()
    finally:
        b.procs.start = start
    try:
        wrk_s = int(SETTLE_S + a.seconds + 3)
        wname = f"wrk-{peer_name}-{b.seq}"
        b.seq += 1
        wp = b.procs.start(wname, ["wrk", "-t1", f"-c{a.connections}", f"-d{wrk_s}s",
                                   peer.url("/small")], bench.LOAD_CPU)
        time.sleep(SETTLE_S)
        filt = f"( sport = :{peer.port} )"
        before, t0 = sc.ss_timed(filt)
        cpu0 = bench.cpu_ticks(peer.pid)
        j0 = sc.cpu0_jiffies()
        p0 = time.monotonic()
        counts = sc.perf_stat(peer.pid, a.seconds, events)
        elapsed = time.monotonic() - p0
        own = bench.cpu_ticks(peer.pid) - cpu0
        j1 = sc.cpu0_jiffies()
        after, t1 = sc.ss_timed(filt)
        b.procs.wait(wp, wrk_s + 30)
        with open(os.path.join(b.work, wname + ".out")) as fh:
            out = fh.read()
        if "Non-2xx" in out or "Socket errors" in out:
            raise bench.Failure(f"wrk: {out}")
        rps_wrk = next((float(line.split()[1]) for line in out.splitlines()
                        if "Requests/sec" in line), None)
        if rps_wrk is None:
            raise bench.Failure(f"wrk output not understood: {out} "
                                f"{bench.tail(os.path.join(b.work, wname + '.err'))}")
        received = sc.seg_diff(before, after, "bytes_received")
        ss_rate = received / request_bytes(peer.port) / (t1 - t0)
        # The bytes count misses connections that closed between the two snapshots (nginx
        # closes a client connection after keepalive_requests): then wrk's own rate (over its
        # whole run, perf's span inside it) is the better one.
        rate = ss_rate if ss_rate > 0.9 * rps_wrk else rps_wrk
        # Every proxied request is two writes (the request upstream, the response to the
        # client; the 100-byte answer comes in one read): counted by perf over exactly its span,
        # they give the requests of that span better than the rates, which miss connections
        # that closed (and perf's start-up).
        writes = sum(counts.get(k, 0) for k in sc.WRITES) + sum(
            counts.get(f"uring_{k}", 0) for k in sc.URING_WRITES)
        reqs = writes / 2 if writes else rate * a.seconds
        cpu = own / bench.CLK_TCK
        span = max(1, j1[2] - j0[2])
        f = {"peer": peer_name, "seconds": a.seconds, "req_per_s": rate, "ss_req_per_s": ss_rate,
             "wrk_req_per_s": rps_wrk, "proxy_cpu_share": cpu / elapsed,
             "others_cpu0": max(0.0, (j1[0] - j0[0] - own) / span), "counts": counts}
        per = {k: v / reqs for k, v in counts.items()}
        per["reads"] = sum(per.get(k, 0) for k in sc.READS) + sum(
            per.get(f"uring_{k}", 0) for k in sc.URING_READS)
        per["writes"] = sum(per.get(k, 0) for k in sc.WRITES) + sum(
            per.get(f"uring_{k}", 0) for k in sc.URING_WRITES)
        per["epoll_waits"] = per.get("epoll_wait", 0) + per.get("epoll_pwait", 0)
        per["cpu_us"] = cpu / reqs * a.seconds / elapsed * 1e6
        f["per_request"] = per
        return f
    finally:
        peer.stop()


def table(rows):
    cols = ["syscalls", "reads", "writes", "recvfrom", "sendto", "readv", "writev", "read",
            "write", "epoll_waits", "epoll_ctl", "io_uring_enter", "uring_ops", "uring_recv",
            "uring_read", "uring_send", "uring_writev", "uring_poll_add", "uring_timeout",
            "uring_async_cancel", "clock_gettime", "futex"]
    out = ["| proxy | req/s | CPU share | CPU µs/req | " + " | ".join(cols) + " |",
           "|---|---:|---:|---:|" + "---:|" * len(cols)]
    for f in rows:
        if "failed" in f:
            out.append(f"| {f['peer']} | failed: {f['failed']} |")
            continue
        p = f["per_request"]
        out.append(f"| {f['peer']} | {f['req_per_s']:,.0f} | {f['proxy_cpu_share']:.0%} | "
                   f"{p['cpu_us']:.2f} | "
                   + " | ".join(f"{p.get(c, 0):.3f}" for c in cols) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", default="tether,tether-epoll,nginx")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--json")
    a = ap.parse_args()
    sc.ensure_tools()
    events = sc.perf_events()
    b, work = bench.tool_bench("tether-ka-syscalls.", a.seconds)
    rows = []
    try:
        for peer in a.peers.split(","):
            try:
                f = measure(b, a, peer, events)
                p = f["per_request"]
                print(f"{peer}: {f['req_per_s']:,.0f} req/s, {p['cpu_us']:.2f} µs CPU, "
                      f"{p['syscalls']:.3f} syscalls, {p.get('uring_ops', 0):.3f} io_uring ops "
                      f"per request (others on CPU 0: {f['others_cpu0']:.0%})", flush=True)
            except bench.Failure as e:
                f = {"peer": peer, "failed": str(e)}
                print(f"{peer}: FAILED {e}", flush=True)
            rows.append(f)
    finally:
        b.procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    print("\n" + table(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"seconds": a.seconds, "connections": a.connections, "rows": rows}, f,
                      indent=1)


if __name__ == "__main__":
    main()
