#!/usr/bin/env python3
"""Read N flat-out SSE streams from a running sse-upstream; report events/s and the
server's CPU per event.

usage: flat_streams.py HOST:PORT N SERVER_PID QUERY SECONDS   (e.g. QUERY events=0)
A stopgap until sse-load exists: at high rates this Python reader, not the server, is the
limit (compare server_cpu). Loopback only; ends by itself.
"""
import os, selectors, socket, sys, time

host, port = sys.argv[1].rsplit(":", 1)
N, pid, query, secs = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


sel = selectors.DefaultSelector()
for _ in range(N):
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET /sse?{query} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
events = nbytes = 0


def pump(until):
    global events, nbytes
    while time.time() < until:
        for key, _ in sel.select(0.1):
            try:
                d = key.fileobj.recv(262144)
            except BlockingIOError:
                continue
            events += d.count(b"\n\n")
            nbytes += len(d)


pump(time.time() + 1)
e0, b0, c0, t0 = events, nbytes, cpu_s(pid), time.time()
pump(t0 + secs)
dt, de, dc = time.time() - t0, events - e0, cpu_s(pid) - c0
print(f"streams={N} query={query} events/s={de / dt:.0f} MB/s={(nbytes - b0) / dt / 1e6:.0f} "
      f"server_cpu={dc / dt * 100:.0f}% events_per_server_cpu_s={de / max(dc, 1e-9):.0f}")
