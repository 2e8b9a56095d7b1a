#!/usr/bin/env python3
"""Delivery gap across upstream drops, as an SSE client sees it, whatever hides the drop.

usage: gap_probe.py --url http://HOST:PORT/sse?...&close_after=K --drop-every K
                    [--streams 20] [--duration 10] [--warmup 1] [--json FILE]

Why it exists: sse-load measures a reconnection gap only when the client's own connection
drops. Through tether the client never sees the upstream drop (tether resumes it), so its
gap is invisible there. This probe measures the same thing for every peer:

    gap(drop j) = arrival(first event after the drop) - arrival(last event before it)

The origin (`close_after=K`) sends events K*j+1 .. K*(j+1) on a connection and closes right
after the last one, and a resumed connection sends its first event at once (its pacing
restarts), so `arrival(K*j+1) - arrival(K*j)` is the whole drop-to-recovery time: the proxy
noticing the FIN, reconnecting and re-requesting with Last-Event-ID (tether), or the client
reconnecting through the proxy like EventSource, at once and with Last-Event-ID (others).

Counts too: lost ids (gaps in the sequence), duplicated ids, client-side reconnections. Only
drops whose both events arrive inside the window [warmup, warmup + duration) count.
Standard library only (asyncio); meant for tens of streams, not thousands.
"""
import argparse
import asyncio
import json
import sys
import time
import urllib.parse


class Stream:
    """One logical stream: the ids seen and when, across reconnections."""

    def __init__(self):
        self.high = 0          # highest id seen
        self.last_at = None    # arrival (ns) of id `high`
        self.lost = 0
        self.dups = 0
        self.reconnects = 0
        self.events = 0


class Chunked:
    """Incremental chunked-body decoder (RFC 9112 section 7.1), no trailers expected."""

    def __init__(self):
        self.buf = b""
        self.left = None   # payload bytes left in the current chunk; None: at a size line
        self.crlf = False  # the CRLF after a chunk's payload is still to come
        self.done = False

    def feed(self, data):
        self.buf += data
        out = []
        while not self.done:
            if self.crlf:
                if len(self.buf) < 2:
                    break
                self.buf = self.buf[2:]
                self.crlf = False
            elif self.left is None:
                nl = self.buf.find(b"\r\n")
                if nl < 0:
                    break
                size = int(self.buf[:nl].split(b";")[0], 16)
                self.buf = self.buf[nl + 2:]
                if size == 0:
                    self.done = True
                else:
                    self.left = size
            else:
                take = self.buf[: self.left]
                if not take:
                    break
                out.append(take)
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                if self.left == 0:
                    self.left = None
                    self.crlf = True
        return b"".join(out)


async def one_connection(host, port, target, st, on_event, stop):
    """Runs one connection of a stream until it ends; returns False when the stream must stop."""
    try:
        r, w = await asyncio.open_connection(host, port)
    except OSError:
        await asyncio.sleep(0.001)
        return True
    try:
        head = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        if st.high:
            head += f"Last-Event-ID: {st.high}\r\n"
        w.write((head + "\r\n").encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            d = await r.read(65536)
            if not d:
                return True
            raw += d
        hd, body = raw.split(b"\r\n\r\n", 1)
        status = hd.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            print(f"gap_probe: status {hd.splitlines()[0]!r}", file=sys.stderr)
            return False
        chunked = b"chunked" in hd.lower()
        dec = Chunked() if chunked else None
        sse = b""
        while not stop.is_set():
            if body:
                sse += dec.feed(body) if dec else body
                while True:
                    end = sse.find(b"\n\n")
                    if end < 0:
                        break
                    block, sse = sse[:end], sse[end + 2:]
                    for line in block.split(b"\n"):
                        if line.startswith(b"id:"):
                            on_event(st, int(line[3:].strip()), time.monotonic_ns())
                            break
                if dec and dec.done:
                    return True
            body = await r.read(65536)
            if not body:
                return True
        return False
    except (OSError, ValueError, asyncio.IncompleteReadError):
        return True
    finally:
        w.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--drop-every", type=int, required=True, help="K of close_after=K")
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--json")
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    target = u.path + ("?" + u.query if u.query else "")
    k = a.drop_every

    t0 = time.monotonic_ns()
    win_from = t0 + int(a.warmup * 1e9)
    win_until = win_from + int(a.duration * 1e9)
    gaps_ns, steps_ns = [], []
    streams = [Stream() for _ in range(a.streams)]

    def on_event(st, eid, now):
        st.events += 1
        if eid <= st.high:
            st.dups += 1
            return
        if eid > st.high + 1:
            st.lost += eid - st.high - 1
        elif st.last_at is not None and win_from <= st.last_at and now < win_until:
            (gaps_ns if (eid - 1) % k == 0 else steps_ns).append(now - st.last_at)
        st.high, st.last_at = eid, now

    stop = asyncio.Event()

    async def run_stream(st):
        first = True
        while not stop.is_set():
            if not first:
                st.reconnects += 1
            first = False
            if not await one_connection(u.hostname, u.port, target, st, on_event, stop):
                return

    tasks = [asyncio.create_task(run_stream(st)) for st in streams]
    await asyncio.sleep(a.warmup + a.duration)
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    def q(v, p):
        if not v:
            return None
        v = sorted(v)
        return round(v[min(len(v) - 1, int(p * len(v)))] / 1e6, 3)

    out = {
        "url": a.url,
        "streams": a.streams,
        "drop_every": k,
        "drops": len(gaps_ns),
        "gap_ms": {"p50": q(gaps_ns, 0.5), "p99": q(gaps_ns, 0.99), "max": q(gaps_ns, 1.0)},
        "step_ms_p50": q(steps_ns, 0.5),
        "events": sum(s.events for s in streams),
        "lost": sum(s.lost for s in streams),
        "duplicates": sum(s.dups for s in streams),
        "client_reconnects": sum(s.reconnects for s in streams),
    }
    text = json.dumps(out)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
