#!/usr/bin/env python3
"""Open N paced SSE streams against a running sse-upstream and report its RSS per stream.

usage: idle_streams.py HOST:PORT N SERVER_PID [QUERY]   (QUERY default: rate=1&events=0)
A stopgap until sse-load exists. Loopback only; ends by itself after ~15 s.
"""
import asyncio, os, sys, time

host, port = sys.argv[1].rsplit(":", 1)
N, pid = int(sys.argv[2]), int(sys.argv[3])
query = sys.argv[4] if len(sys.argv) > 4 else "rate=1&events=0"
events = 0


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])


async def stream():
    global events
    r, w = await asyncio.open_connection(host, int(port))
    w.write(f"GET /sse?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    await w.drain()
    while True:
        d = await r.read(65536)
        if not d:
            return
        events += d.count(b"\n\n")


async def main():
    before = rss_kb(pid)
    tasks = []
    for i in range(N):
        tasks.append(asyncio.create_task(stream()))
        if i % 500 == 499:
            await asyncio.sleep(0.05)
    await asyncio.sleep(5)
    e0, t0 = events, time.time()
    await asyncio.sleep(10)
    after = rss_kb(pid)
    rate = (events - e0) / (time.time() - t0)
    print(f"streams={N} rss_before={before}KB rss_after={after}KB "
          f"per_stream={(after - before) * 1024 / N:.0f}B events/s={rate:.0f}")
    os._exit(0)


asyncio.run(main())
