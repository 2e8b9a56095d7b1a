#!/usr/bin/env python3
"""Client TLS vs plain, measured on tether's own process (perf/NOTES.md, "Client TLS").

Starts the upstream simulator and tether (release builds), then for plain and TLS clients:
  idle:  N SSE streams that get no event (rate=0.001: one event at the start, as bench scenario 3; --sse-heartbeat 0) opened to warm up, then N
         more; tether's RSS before and after the second N, per stream.
  load:  N streams at R events/s each for D seconds; tether's utime+stime over the run divided
         by the events it relayed (tether_sse_events_total), in microseconds per event.
Clients are Python asyncio (with ssl for TLS, certificate made by openssl); one process.
Usage: client_tls_probe.py TETHER_BIN SSE_UPSTREAM_BIN [--streams N] [--rate R] [--seconds D]
"""
import argparse
import asyncio
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def metric(admin, name):
    import urllib.request
    text = urllib.request.urlopen(f"http://{admin}/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def start(cmd, needles):
    """Starts `cmd`; returns it and the first group of each regex in `needles`, found in its
    output. The output is drained by a thread for the process's life (a full pipe would stop
    it)."""
    import threading
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found = {}
    lines = []
    def reader():
        for line in p.stdout:
            lines.append(line)
            for n in needles:
                m = re.search(n, line)
                if m and n not in found:
                    found[n] = m.group(1)
    threading.Thread(target=reader, daemon=True).start()
    deadline = time.time() + 10
    while time.time() < deadline and len(found) < len(needles):
        time.sleep(0.05)
    if len(found) < len(needles):
        p.kill()
        raise SystemExit("did not start: " + "".join(lines))
    return p, [found[n] for n in needles]


async def open_stream(port, path, ctx):
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                         server_hostname="localhost" if ctx else None)
    w.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n".encode())
    await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return r, w


async def drain(r, stop):
    while not stop.is_set():
        try:
            if not await r.read(65536):
                return
        except Exception:
            return


async def run(mode, args, tether_pid, port, admin, ctx):
    out = {}
    # idle streams
    # A first batch warms the allocator and the worker's tables up; the second is measured.
    conns = []
    for i in range(args.streams):
        conns.append(await open_stream(port, f"/sse?events=0&size=100&rate=0.001&ts=0&warm={mode}{i}", ctx))
    await asyncio.sleep(2)
    before = rss_kb(tether_pid)
    for i in range(args.streams):
        conns.append(await open_stream(port, f"/sse?events=0&size=100&rate=0.001&ts=0&idle={mode}{i}", ctx))
    await asyncio.sleep(2)
    after = rss_kb(tether_pid)
    out["idle_kb_per_stream"] = (after - before) / args.streams
    for _, w in conns:
        w.close()
    await asyncio.sleep(1)
    # load
    conns = []
    for i in range(args.streams):
        conns.append(await open_stream(
            port, f"/sse?events=0&rate={args.rate}&ts=0&size=100&load={mode}{i}", ctx))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(drain(r, stop)) for r, _ in conns]
    await asyncio.sleep(1)
    e0, c0 = metric(admin, "tether_sse_events_total"), cpu_s(tether_pid)
    await asyncio.sleep(args.seconds)
    e1, c1 = metric(admin, "tether_sse_events_total"), cpu_s(tether_pid)
    stop.set()
    for _, w in conns:
        w.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    out["events_per_s"] = (e1 - e0) / args.seconds
    out["us_per_event"] = (c1 - c0) / max(e1 - e0, 1) * 1e6
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tether")
    ap.add_argument("upstream")
    ap.add_argument("--streams", type=int, default=1000)
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
    for mode in ["plain", "tls"]:
        cmd = [args.tether, "reverse", "--bind", "127.0.0.1:0", "--upstream", f"http://{up_addr}",
               "--workers", "1", "--sse-heartbeat", "0", "--admin", "127.0.0.1:0"]
        if mode == "tls":
            cmd += ["--tls-cert", cert, "--tls-key", key]
        t, (port, admin) = start(cmd, [r"listening on 127\.0\.0\.1:(\d+)",
                                       r"admin endpoint on http://(127\.0\.0\.1:\d+)"])
        port = int(port)
        ctx = None
        if mode == "tls":
            ctx = ssl.create_default_context(cafile=cert)
        results[mode] = asyncio.run(run(mode, args, t.pid, port, admin, ctx))
        t.terminate()
        t.wait()
    up.terminate()
    print(f"streams={args.streams} rate={args.rate}/s each seconds={args.seconds} "
          f"driver={os.environ.get('MONOIO_FORCE_LEGACY_DRIVER') and 'epoll' or 'auto'}")
    for mode, r in results.items():
        print(f"{mode:5} idle {r['idle_kb_per_stream']:.2f} KB/stream  load {r['events_per_s']:.0f} "
              f"events/s  {r['us_per_event']:.2f} us CPU/event")


if __name__ == "__main__":
    main()
