#!/usr/bin/env python3
"""The scenarios of scripts/bench.sh: tether against nginx and HAProxy (and direct), side by side.

Started by scripts/bench.sh once the binaries are built and the peers installed; it can also
be run by hand with the same flags (see --help). Standard library only.

Method (see perf/NOTES.md for why):
- Every measurement starts a fresh origin (sse-upstream, or sse-tokio for the scenarios that
  run with each origin: ORIGIN_SCENARIOS) and a fresh proxy on new ports, checks
  that the proxy answers correctly, measures, and stops both by PID. Nothing carries over from
  one measurement to the next (rings, pools, allocator caches, TIME_WAIT ports).
- The proxy under test runs alone on CPU 0 (taskset, all of its threads; one worker/thread);
  the origin and the load generator share CPU 1.
- Each repetition runs every peer in turn (order rotated per repetition); tables report the
  median over repetitions (for time to first event: the median of each repetition's p50, p99
  and max). Figures of the proxy itself (CPU seconds per event, RSS per stream)
  are the ones to compare: whole-box events/s depends on CPU 1 as much as on the proxy.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report as report_md  # noqa: E402  (the targets, shared with the markdown)
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
# Where cargo put the release binaries (scripts/bench.sh builds with the same CARGO_TARGET_DIR).
TARGET_DIR = os.path.join(ROOT, os.environ.get("CARGO_TARGET_DIR") or "target")

PROXY_CPU = "0"
LOAD_CPU = "1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Payload size (size=) that makes an event about 100 bytes on the wire:
# "id: NNNNN\n" (~10) + "data: " (6) + payload + "\n\n" (2).
EVENT_SIZE = 80
# The bytes of an event besides its payload (the line above): --event-size B asks for
# size=B-EVENT_OVERHEAD, so the default 100 B is the size=80 every earlier run used.
EVENT_OVERHEAD = 20
DEFAULT_EVENT_BYTES = EVENT_SIZE + EVENT_OVERHEAD
# Shortest payload that still carries the send time: {"seq":NNNN,"ts_us":<16 digits>} is 37
# bytes. Smaller events (--event-size 32) leave ts_us out (ts=0): exact size, no latency
# figures. Scenario 2 measures latency, so there the payload never goes below this (its "32 B"
# events are ~55 B; the table shows the measured bytes per event).
MIN_TIMED_PAYLOAD = 37

# The two origins (issue 17). sse-upstream: our monoio io_uring simulator; flat out with
# batch=1 it writes one event per stream and yields, so a proxy reads ~1 event per read.
# sse-tokio: tokio on epoll, writing every due event back to back (one write() each with
# batch=1, one write for all of them otherwise), as real servers do (perf/README.md).
ORIGINS = ["sse-upstream", "sse-tokio"]
ORIGIN_ALIASES = {"tokio": "sse-tokio", "upstream": "sse-upstream", "both": None}
ORIGIN_LABELS = {"sse-upstream": "sse-upstream origin", "sse-tokio": "tokio origin"}
# Scenarios measured with each origin and event size that --origin/--event-size ask for; the
# others always run sse-upstream with ~100 B events.
ORIGIN_SCENARIOS = ["batch1", "batch1-url", "batched", "batched-url", "latency"]


def variant_key(scenario, origin, event_bytes):
    """The key of one (scenario, origin, event size) in the report's runs and medians. The
    scenario's own name stays the figure it always was (sse-upstream, ~100 B events), so
    report.py's targets and chart.py's panels read the same figures as before."""
    if origin == "sse-upstream" and event_bytes == DEFAULT_EVENT_BYTES:
        return scenario
    return f"{scenario}[{origin},{event_bytes}B]"


def event_query(event_bytes, timed=False):
    """The size= (and ts=) of events of about `event_bytes` on the wire."""
    size = max(0, event_bytes - EVENT_OVERHEAD)
    if timed:
        return f"size={max(size, MIN_TIMED_PAYLOAD)}"
    if size < MIN_TIMED_PAYLOAD:
        return f"size={size}&ts=0"
    return f"size={size}"

PEERS_ALL = ["direct", "tether", "nginx", "haproxy"]
PEERS_PROXY = ["tether", "nginx", "haproxy"]

# Client-side TLS (issue 15): the scenarios whose clients speak HTTP/1.1 over TLS to the proxy
# (plain HTTP from the proxy to the origin). Every proxy serves the same certificate, made once
# per run with openssl: ECDSA P-256 (what most deployments serve; RSA-2048 signs ~10x slower,
# which would make handshake-heavy figures measure the signature), self-signed, for
# `localhost` and 127.0.0.1. Clients connect to https://localhost:PORT (SNI localhost).
TLS_SCENARIOS = ["tls-plain", "tls-1a", "tls-idle", "h2-1a", "h2-idle"]
TLS_HOST = "localhost"
# HTTP/2 (issue 15): the TLS scenarios whose clients speak h2 (sse-load --h2-streams-per-conn),
# many SSE streams per connection. The proxies offer h2 in ALPN for them only (nginx `listen
# ... ssl http2`, HAProxy `alpn h2,http/1.1`; tether always offers it), so 4t/1t/3t stay
# HTTP/1.1 as before; every peer's h2 is checked before measuring (check_h2) and every
# sse-load connection checks its ALPN outcome.
H2_SCENARIOS = ["h2-1a", "h2-idle"]
# Concurrent streams per HTTP/2 connection: within every peer's limit on one connection
# (HAProxy's tune.h2.max-concurrent-streams and tether's --h2-max-concurrent-streams are 100,
# nginx's http2_max_concurrent_streams 128), so 1000 streams take 10 connections.
H2_STREAMS_PER_CONN = 100


def log(msg):
    print(msg, flush=True)


class Failure(Exception):
    """A measurement (or a peer) that could not be done; the message says why."""


# ---------------------------------------------------------------------------------------------
# Processes: every one started here is recorded and stopped by PID.


class Procs:
    def __init__(self, work):
        self.work = work
        self.live = {}
        self.pidfile = os.path.join(work, "pids")

    def start(self, name, argv, cpus, env=None, stdout=None):
        """Starts argv pinned to `cpus`; stdout/stderr go to WORK/name.out|.err."""
        out = open(os.path.join(self.work, name + ".out"), "wb") if stdout is None else stdout
        err = open(os.path.join(self.work, name + ".err"), "wb")
        e = dict(os.environ)
        e.pop("MONOIO_FORCE_LEGACY_DRIVER", None)
        e.update(env or {})
        p = subprocess.Popen(["taskset", "-c", cpus] + argv, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL, env=e)
        p.bench_name = name
        self.live[p.pid] = p
        self._write_pidfile()
        return p

    def wait(self, p, timeout):
        """Waits for p to exit (reaping it with wait4) and returns the CPU seconds it used."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                self.live.pop(p.pid, None)
                self._write_pidfile()
                return ru.ru_utime + ru.ru_stime
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(p.args, timeout)
            time.sleep(0.05)

    def stop(self, p, timeout=5.0):
        if p is None or p.pid not in self.live:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        del self.live[p.pid]
        self._write_pidfile()

    def stop_all(self):
        for p in list(self.live.values()):
            try:
                self.stop(p, timeout=2.0)
            except Exception:  # keep stopping the others
                pass

    def _write_pidfile(self):
        with open(self.pidfile, "w") as f:
            f.write("".join(f"{pid}\n" for pid in self.live))


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            return b"".join(f.read().splitlines(True)[-n:]).decode(errors="replace")
    except OSError:
        return ""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        after = f.read().rsplit(")", 1)[1].split()
    return int(after[11]) + int(after[12])


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_jiffies():
    """Per CPU: (busy, total) in clock ticks; busy = user + nice + system + steal (interrupt
    and softirq time is left out: on loopback much of it is our own processes' TCP work)."""
    out = []
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = list(map(int, line.split()[1:]))
                out.append((v[0] + v[1] + v[2] + (v[7] if len(v) > 7 else 0), sum(v[:8])))
    return out


def threads_of(pid):
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


def affinity_of(pid):
    """CPUs each thread of pid may run on (to show that the pinning took)."""
    return sorted({",".join(map(str, sorted(os.sched_getaffinity(t)))) for t in threads_of(pid)})


# ---------------------------------------------------------------------------------------------
# Checks: a peer is measured only after it answered right.


def http_get(port, path, timeout=2.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def https_get(port, path, ca, timeout=2.0):
    """GET over TLS to localhost:port, the certificate checked against `ca` (SNI localhost);
    returns (status, body, TLS version, cipher suite)."""
    ctx = ssl.create_default_context(cafile=ca)
    c = http.client.HTTPSConnection(TLS_HOST, port, timeout=timeout, context=ctx)
    try:
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        return r.status, body, c.sock.version(), c.sock.cipher()[0]
    finally:
        c.close()


def h2_alpn(port, ca, timeout=2.0):
    """The protocol the server at localhost:port chooses when a client offers only h2 in ALPN
    (None: none chosen, i.e. it would speak HTTP/1.1)."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=TLS_HOST) as tls:
            return tls.selected_alpn_protocol()


def wait_answer(port, proc, what, expect_body, timeout=10.0, ca=None):
    """Polls GET /small until it answers 200 with the origin's body (over TLS with `ca`)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Failure(f"{what} exited with status {proc.returncode}")
        try:
            status, body = (https_get(port, "/small", ca)[:2] if ca else
                            http_get(port, "/small"))
            if status == 200 and (expect_body is None or body == expect_body):
                return body
            last = f"status {status}, {len(body)} bytes"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise Failure(f"{what} did not answer GET /small correctly within {timeout:.0f}s ({last})")


def check_resume(port, what):
    """GET /sse?events=3 with Last-Event-ID: 1 must give events 2 and 3 only."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"GET /sse?events=3&size=40&check=2 HTTP/1.1\r\nHost: x\r\n"
                  b"Last-Event-ID: 1\r\nConnection: close\r\n\r\n")
        buf = b""
        while b"id: 3\n" not in buf:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    finally:
        s.close()
    ids = [int(line[4:]) for line in buf.split(b"\n") if line.startswith(b"id: ")]
    if ids != [2, 3]:
        raise Failure(f"{what}: with Last-Event-ID: 1 the stream gave ids {ids}, not [2, 3]")
    return ids


def check_upstream_reuse(port, origin_log, what):
    """20 GETs on one client connection: how many upstream connections did the origin see?"""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        for _ in range(20):
            c.request("GET", "/small?reuse=1")
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise Failure(f"{what}: /small answered {r.status}")
    finally:
        c.close()
    time.sleep(0.1)
    conns = set()
    with open(origin_log) as f:
        for line in f:
            rec = json.loads(line)
            if rec["path"] == "/small?reuse=1":
                conns.add(rec["conn"])
    if len(conns) > 2:
        raise Failure(f"{what}: 20 keep-alive requests used {len(conns)} upstream connections "
                      f"(no upstream keep-alive)")
    return len(conns)


def check_sse(port, what):
    """GET /sse?events=3&rate=5: a 200 event-stream whose events 1, 2, 3 arrive one by one
    (the first well before the last: not buffered), with the origin's bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"GET /sse?events=3&rate=5&size=40&check=1 HTTP/1.1\r\nHost: x\r\n"
                  b"Accept: text/event-stream\r\n\r\n")
        buf, t0, arrivals = b"", time.monotonic(), []
        while len(arrivals) < 3:
            d = s.recv(65536)
            if not d:
                break
            buf += d
            n = buf.count(b"\ndata: ")
            while len(arrivals) < n:
                arrivals.append(time.monotonic() - t0)
    finally:
        s.close()
    head = buf.split(b"\r\n\r\n", 1)[0].lower()
    if not head.startswith(b"http/1.1 200") or b"text/event-stream" not in head:
        raise Failure(f"{what}: SSE check got {head[:200]!r}")
    for i in (1, 2, 3):
        if f"id: {i}\n".encode() not in buf:
            raise Failure(f"{what}: SSE check: event {i} missing")
    if len(arrivals) < 3 or arrivals[2] - arrivals[0] < 0.25:
        raise Failure(f"{what}: SSE events arrived together ({arrivals}): the proxy buffers")
    return arrivals


# ---------------------------------------------------------------------------------------------
# Peers.


class Peer:
    """A running origin plus (except for direct) a proxy in front of it."""

    def __init__(self, bench, name, upstream_env, origin_log=None, proxy_extra=(),
                 origin="sse-upstream", tls=False, h2=False):
        self.bench, self.name = bench, name
        # Clients speak TLS to the proxy (TLS_SCENARIOS): the run's certificate, https URLs.
        self.tls = tls
        # The proxy offers h2 in ALPN too (H2_SCENARIOS).
        self.h2 = h2
        # Which origin program runs behind the proxy (ORIGINS).
        self.origin_kind = origin
        self.origin = self.proxy = None
        self.port = None
        self.upstream_env = upstream_env
        self.origin_log = origin_log
        # More command-line flags for this proxy in this scenario (tether --coalesce in 7).
        self.proxy_extra = list(proxy_extra)

    def start(self):
        b = self.bench
        tag = f"{self.name}-{b.seq}"
        b.seq += 1
        what = self.origin_kind
        argv = [b.origin_bin(what), "--bind", "127.0.0.1:0", "--threads", "1"]
        if self.origin_log:
            if what != "sse-upstream":
                raise Failure(f"{what} keeps no request log (--log is sse-upstream's)")
            argv += ["--log", self.origin_log]
        self.origin = b.procs.start(f"origin-{tag}", argv, LOAD_CPU, env=self.upstream_env)
        out = os.path.join(b.work, f"origin-{tag}.out")
        deadline = time.monotonic() + 10
        addr = None
        while time.monotonic() < deadline and addr is None:
            if self.origin.poll() is not None:
                raise Failure(f"{what} exited: {tail(out[:-4] + '.err')}")
            with open(out) as f:
                for line in f:
                    if line.startswith("listening on "):
                        addr = line.split()[2]
            time.sleep(0.02)
        if addr is None:
            raise Failure(f"{what} did not print its address")
        self.origin_addr = addr
        origin_port = int(addr.rsplit(":", 1)[1])
        body = wait_answer(origin_port, self.origin, what, None)
        if len(body) != 100:
            raise Failure(f"{what} /small gave {len(body)} bytes")
        if self.name == "direct":
            self.port = origin_port
            return
        self.port = free_port()
        argv, conf = b.proxy_command(self.name, self.port, addr, tag, self.proxy_extra,
                                     tls=self.tls, h2=self.h2)
        self.proxy = b.procs.start(f"{self.name}-{tag}", argv, PROXY_CPU)
        self.proxy_log = os.path.join(b.work, f"{self.name}-{tag}.err")
        try:
            wait_answer(self.port, self.proxy, self.name, body,
                        ca=b.tls_files()["ca"] if self.tls else None)
        except Failure as e:
            raise Failure(f"{e}\n{tail(self.proxy_log)}")

    @property
    def pid(self):
        return self.proxy.pid if self.proxy else None

    def url(self, target):
        if self.tls:
            return f"https://{TLS_HOST}:{self.port}{target}"
        return f"http://127.0.0.1:{self.port}{target}"

    def stop(self):
        if self.proxy is not None and self.proxy.poll() is not None:
            log(f"  WARNING: {self.name} had exited ({self.proxy.returncode}): "
                f"{tail(self.proxy_log, 5)}")
        self.bench.procs.stop(self.proxy)
        self.bench.procs.stop(self.origin)


# ---------------------------------------------------------------------------------------------
# Scenarios. Each returns a dict of figures for one run of one peer.


# Flat-out streams start this long after their head (the origin's stall_after=0&stall_ms=...), so
# that every stream is open before any flows: tether stops serving new connections while
# hundreds of streams run flat out (perf/NOTES.md), and 1000 streams never all opened otherwise.
FLAT_OUT_HOLD_MS = 3000


# Appended to a throughput scenario's URL for its "-url" variant: sse-load replaces {i} by the
# stream's index, so every stream has its own URL (in tether: its own replay ring, as with
# per-user URLs or per-session streams) instead of 1000 streams sharing one.
PER_STREAM_URL = "&s={i}"

# Time to first event: each probe's URL. It is not held (the load's streams are, see
# FLAT_OUT_HOLD_MS): a paced stream's first event is due at once, and at rate=1 nothing else
# follows before the probe closes. {i} gives every probe its own URL, so that tether starts a
# fresh stream (and ring) for each instead of serving a later probe from an earlier one's.
TTFE_QUERY = f"/sse?events=0&size={EVENT_SIZE}&rate=1&probe={{i}}"
# Longest wait of one probe (sse-load --ttfe-timeout): 50 probes cannot hold a run longer
# than 50 x this even against a proxy that stops accepting.
TTFE_TIMEOUT_S = 5

# Fan-out (scenario 7): every client asks for this one URL (no {i}, no auth header: one
# identity), so a proxy that shares upstream streams (tether --coalesce) opens one upstream
# connection for all of them, while nginx and HAProxy open one per client. Each upstream
# connection is paced at --fanout-rate events/s, one write per event (batch=1: an origin that
# falls behind does not merge events into one write). Why 100/s and not 1000/s: perf/NOTES.md,
# "Fan-out".
def fanout_query(rate):
    return f"/sse?events=0&size={EVENT_SIZE}&rate={rate:g}&batch=1"


def event_bytes(r):
    """Mean SSE bytes per event in sse-load's window (the body without chunk framing)."""
    return r["bytes"] / r["events"] if r.get("events") else None


def tether_supports(tether_bin, flag):
    """Whether `tether reverse --help` lists `flag` (e.g. --coalesce, added concurrently)."""
    try:
        p = subprocess.run([tether_bin, "reverse", "--help"], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(w.strip(",") == flag for w in p.stdout.split())


def load_query(kind, event_bytes=DEFAULT_EVENT_BYTES):
    """The URL target of a load; `event_bytes` sets the event size of 1a/1b and 2 (the others
    keep ~100 B)."""
    hold = f"&stall_after=0&stall_ms={FLAT_OUT_HOLD_MS}"
    flat = event_query(event_bytes)
    q = {
        "batch1": f"/sse?events=0&{flat}&batch=1{hold}",
        "batched": f"/sse?events=0&{flat}{hold}",
        "latency": f"/sse?events=0&{event_query(event_bytes, timed=True)}&rate=10",
        # One event at once (a pace's first event is due at its start), then quiet for 1000 s:
        # every proxy has relayed an event on each stream, as on a real idle stream.
        "idle": f"/sse?events=0&size={EVENT_SIZE}&rate=0.001",
    }
    return q[kind]


def tool_bench(prefix, seconds):
    """A Bench for the measuring tools beside bench.sh (profile.py, syscalls.py,
    keepalive_syscalls.py): a fresh work directory named after `prefix`, the installed peers,
    `seconds` of measurement after 2 s of warm-up, the io_uring origin, no extra tether flags.
    Returns the Bench and its work directory."""
    work = tempfile.mkdtemp(prefix=prefix)
    ns = argparse.Namespace(work=work, nginx=shutil.which("nginx") or "/usr/sbin/nginx",
                            haproxy=shutil.which("haproxy") or "/usr/sbin/haproxy",
                            duration=seconds, warmup=2, origin_driver="uring",
                            tether_extra="")
    return Bench(ns), work


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = a.work
        self.procs = Procs(self.work)
        self.seq = 0
        self.checked = {}
        bindir = os.path.join(TARGET_DIR, "release")
        self.tether_bin = os.path.join(bindir, "tether")
        self.upstream_bin = os.path.join(bindir, "sse-upstream")
        self.tokio_bin = os.path.join(bindir, "sse-tokio")
        # The origin and event size of the scenario being measured (run_variant sets them).
        self.origin_kind = "sse-upstream"
        self.event_bytes = DEFAULT_EVENT_BYTES
        # Every origin some measurement of this run uses (main sets it; checked once each).
        self.origins_in_plan = {"sse-upstream"}
        self.load_bin = os.path.join(bindir, "sse-load")
        if not os.access(self.load_bin, os.X_OK):
            self.load_bin = None
        self.nginx_bin = a.nginx
        self.haproxy_bin = a.haproxy
        self.settings = {}
        # The certificate of the TLS scenarios (tls_files makes it on first use).
        self._tls_files = None
        # The TLS handshakes of the last sse-load run (TLS scenarios only).
        self.last_tls = {}
        # Check the peers over TLS too (main sets it when a TLS scenario is planned).
        self.tls_in_plan = False
        # Check the peers' h2 too (main sets it when an HTTP/2 scenario is planned).
        self.h2_in_plan = False
        # The last sse-load report of a throughput or idle measurement (the h2 figures).
        self.last_report = {}
        # tether --coalesce (scenario 7) is being added concurrently: until the binary has it,
        # the scenario runs tether without it and says so.
        self.coalesce = tether_supports(self.tether_bin, "--coalesce")
        if self.coalesce:
            self.settings["tether_fanout_flags"] = "--coalesce"

    def origin_bin(self, origin):
        """The binary of an origin (ORIGINS)."""
        return {"sse-upstream": self.upstream_bin, "sse-tokio": self.tokio_bin}[origin]

    # ---- proxy command lines and configurations -----------------------------------------

    def tls_files(self):
        """The run's certificate (made on first use with openssl, then served by every proxy):
        an ECDSA P-256 leaf for localhost and 127.0.0.1, signed by a P-256 CA made with it
        (clients trust the CA: a self-signed `req -x509` certificate is a CA, and webpki,
        rustls's verifier, refuses a CA certificate as a server's). Paths: cert (the leaf),
        key, both (leaf and key in one file: HAProxy's `crt`), ca."""
        if self._tls_files is None:
            d = os.path.join(self.work, "tls")
            os.makedirs(d, exist_ok=True)
            path = {n: os.path.join(d, n + ".pem")
                    for n in ("cert", "key", "both", "ca", "ca-key", "csr")}
            ext = os.path.join(d, "leaf.ext")
            with open(ext, "w") as f:
                f.write(f"subjectAltName=DNS:{TLS_HOST},IP:127.0.0.1\n"
                        "basicConstraints=critical,CA:FALSE\n"
                        "keyUsage=critical,digitalSignature\n"
                        "extendedKeyUsage=serverAuth\n")
            p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
            for argv in (
                    ["openssl", "req", "-x509"] + p256 + ["-keyout", path["ca-key"], "-out",
                     path["ca"], "-days", "7", "-subj", "/CN=tether bench CA"],
                    ["openssl", "req"] + p256 + ["-keyout", path["key"], "-out", path["csr"],
                     "-subj", f"/CN={TLS_HOST}"],
                    ["openssl", "x509", "-req", "-in", path["csr"], "-CA", path["ca"], "-CAkey",
                     path["ca-key"], "-CAcreateserial", "-out", path["cert"], "-days", "7",
                     "-extfile", ext]):
                p = subprocess.run(argv, capture_output=True, text=True)
                if p.returncode != 0:
                    raise Failure(f"openssl could not make the certificate: {p.stderr.strip()}")
            with open(path["both"], "w") as f, open(path["cert"]) as c, open(path["key"]) as k:
                f.write(c.read() + k.read())
            self._tls_files = path
        return self._tls_files

    def proxy_command(self, name, port, origin, tag, extra=(), tls=False, h2=False):
        d = os.path.join(self.work, tag)
        os.makedirs(d, exist_ok=True)
        t = self.tls_files() if tls else None

        def shown(text):
            return text.replace(os.path.dirname(t["cert"]), "TLS") if t else text
        # The settings printed and recorded: the plain ones, and the TLS ones apart.
        skey = name + ("_h2" if h2 else "_tls" if tls else "")
        if name == "tether":
            argv = [self.tether_bin, "reverse", "--bind", f"127.0.0.1:{port}",
                    "--upstream", f"http://{origin}", "--workers", "1", "--cpus", PROXY_CPU,
                    "--max-connections", "12000", "--sse-heartbeat", "0", "--log-level", "warn"] + self.a.tether_extra.split()
            if tls:
                argv += ["--tls-cert", t["cert"], "--tls-key", t["key"]]
            self.settings.setdefault(skey, " ".join(argv[1:]).replace(origin, "ORIGIN")
                                     .replace(str(port), "PORT")
                                     .replace(os.path.dirname(t["cert"]) if t else "\0", "TLS"))
            return argv + list(extra), None
        if name == "nginx":
            conf = os.path.join(d, "nginx.conf")
            text = NGINX_CONF.format(dir=d, port=port, origin=origin,
                                     listen=(NGINX_H2_LISTEN if h2 else NGINX_TLS_LISTEN)
                                     .format(**t) if tls else ";")
            with open(conf, "w") as f:
                f.write(text)
            self.settings.setdefault(skey, relevant(shown(text), NGINX_KEYS, d, port, origin))
            return [self.nginx_bin, "-p", d + "/", "-c", conf, "-e", os.path.join(d, "error.log"),
                    "-g", "daemon off; master_process off;"], conf
        if name == "haproxy":
            conf = os.path.join(d, "haproxy.cfg")
            text = HAPROXY_CONF.format(dir=d, port=port, origin=origin,
                                       bind=(HAPROXY_H2_BIND if h2 else HAPROXY_TLS_BIND)
                                       .format(**t) if tls else "")
            with open(conf, "w") as f:
                f.write(text)
            self.settings.setdefault(skey, relevant(shown(text), HAPROXY_KEYS, d, port, origin))
            return [self.haproxy_bin, "-f", conf, "-db"], conf
        raise ValueError(name)

    def origin_env(self, scenario):
        """sse-upstream's driver (sse-tokio is always epoll). io_uring by default: on epoll,
        sse-upstream stops accepting while streams run flat out (perf/NOTES.md), so 1000
        flat-out streams never all open."""
        legacy = self.a.origin_driver == "epoll" and scenario != "plain"
        return {"MONOIO_FORCE_LEGACY_DRIVER": "1"} if legacy else {}

    # ---- equivalence checks, once per peer before any measurement ----------------------

    def check_peers(self, peers):
        """For each proxy: answers /small with the origin's bytes, streams SSE event by event,
        passes Last-Event-ID, reuses its upstream connection (HTTP/1.1 keep-alive), and runs
        every thread on the proxy CPU. Prints the settings that matter. Raises on a failure."""
        log("== checking the peers (same answers, streaming, upstream keep-alive, pinning)")
        if "sse-tokio" in self.origins_in_plan:
            self.check_tokio_origin()
        for name in peers:
            if name == "direct":
                continue
            olog = os.path.join(self.work, f"check-origin-{name}.log")
            peer = Peer(self, name, self.origin_env("check"), origin_log=olog)
            try:
                peer.start()
                arrivals = check_sse(peer.port, name)
                resumed = check_resume(peer.port, name)
                conns = check_upstream_reuse(peer.port, olog, name)
                cpus = affinity_of(peer.pid)
                if cpus != [PROXY_CPU]:
                    raise Failure(f"{name}: threads may run on CPUs {cpus}, not only {PROXY_CPU}")
                self.checked[name] = {
                    "sse_event_arrivals_s": [round(x, 3) for x in arrivals],
                    "resume_with_last_event_id": resumed,
                    "upstream_connections_for_20_requests": conns,
                    "threads": len(threads_of(peer.pid)), "cpus": cpus,
                }
                log(f"  {name}: /small ok; SSE events at "
                    f"{', '.join(f'{x:.2f}' for x in arrivals)} s (streamed); Last-Event-ID: 1 "
                    f"-> ids {resumed}; 20 keep-alive requests used {conns} upstream "
                    f"connection(s); {len(threads_of(peer.pid))} thread(s), all on CPU "
                    f"{PROXY_CPU}")
                settings = self.settings.get(name)
                if isinstance(settings, list):
                    settings = "; ".join(settings)
                log(f"    settings: {settings}")
            finally:
                peer.stop()
            if self.tls_in_plan:
                self.check_tls(name)
            if self.h2_in_plan:
                self.check_h2(name)

    def check_tls(self, name):
        """The proxy serves the run's certificate (verified against it, SNI localhost) and
        relays /small over TLS; records the TLS version it negotiates with Python's OpenSSL."""
        peer = Peer(self, name, self.origin_env("check"), tls=True)
        try:
            peer.start()
            status, body, version, cipher = https_get(peer.port, "/small",
                                                      self.tls_files()["ca"])
            if status != 200 or len(body) != 100:
                raise Failure(f"{name} over TLS: /small gave {status}, {len(body)} bytes")
            self.checked.setdefault(name, {}).update(tls_version=version, tls_cipher=cipher)
            settings = self.settings.get(name + "_tls")
            if isinstance(settings, list):
                settings = "; ".join(settings)
            log(f"  {name} over TLS: /small ok, {version} {cipher}, certificate verified "
                f"(ECDSA P-256, SNI {TLS_HOST}); settings: {settings}")
        finally:
            peer.stop()

    def check_h2(self, name):
        """The proxy, set up as for the HTTP/2 scenarios, chooses h2 when a client offers only
        h2 in ALPN (else the h2 rows would measure something else; sse-load checks every
        connection again)."""
        peer = Peer(self, name, self.origin_env("check"), tls=True, h2=True)
        try:
            peer.start()
            chosen = h2_alpn(peer.port, self.tls_files()["ca"])
            if chosen != "h2":
                raise Failure(f"{name}: offered only h2 in ALPN, it chose {chosen!r}")
            self.checked.setdefault(name, {}).update(h2_alpn=chosen)
            settings = self.settings.get(name + "_h2")
            if isinstance(settings, list):
                settings = "; ".join(settings)
            log(f"  {name} over TLS with ALPN h2: chose {chosen}; settings: {settings}")
        finally:
            peer.stop()

    def check_tokio_origin(self):
        """sse-tokio on its own: streams event by event and resumes after Last-Event-ID, as
        check_sse and check_resume ask of every proxy (the proxies themselves are checked with
        sse-upstream behind them; every run counts lost and duplicated events)."""
        if not os.access(self.tokio_bin, os.X_OK):
            raise Failure(f"{self.tokio_bin} missing (cargo build --release --workspace)")
        peer = Peer(self, "direct", {}, origin="sse-tokio")
        try:
            peer.start()
            arrivals = check_sse(peer.port, "sse-tokio")
            resumed = check_resume(peer.port, "sse-tokio")
            self.checked["sse-tokio"] = {"sse_event_arrivals_s": [round(x, 3) for x in arrivals],
                                         "resume_with_last_event_id": resumed}
            log(f"  sse-tokio (origin, directly): SSE events at "
                f"{', '.join(f'{x:.2f}' for x in arrivals)} s (streamed); Last-Event-ID: 1 -> "
                f"ids {resumed}")
        finally:
            peer.stop()

    # ---- one measurement ----------------------------------------------------------------

    def run_one(self, scenario, peer_name):
        """One measurement, repeated (up to --retries times) while other processes took more
        than --max-others of a CPU during it (this machine is shared)."""
        for attempt in range(self.a.retries + 1):
            f = self.measure(scenario, peer_name)
            worst = max(f["others_cpu0"], f["others_cpu1"])
            if worst <= self.a.max_others:
                return f
            if attempt < self.a.retries:
                log(f"    (others used {f['others_cpu0']:.0%} of CPU 0 and "
                    f"{f['others_cpu1']:.0%} of CPU 1 during it; waiting for a quieter moment "
                    f"and measuring again)")
                wait_quiet(self.a.max_others, 90)
        f["contended"] = True
        return f

    def scenario_proxy_flags(self, scenario, peer_name):
        """Flags a proxy gets in one scenario only: tether --coalesce in fan-out."""
        if scenario == "fanout" and peer_name == "tether" and self.coalesce:
            return ["--coalesce"]
        return []

    def measure(self, scenario, peer_name):
        # Fan-out counts the upstream SSE connections the origin saw (its request log).
        olog = (os.path.join(self.work, f"origin-{scenario}-{peer_name}-{self.seq}.log")
                if scenario == "fanout" else None)
        peer = Peer(self, peer_name, self.origin_env(scenario), origin_log=olog,
                    proxy_extra=self.scenario_proxy_flags(scenario, peer_name),
                    origin=self.origin_kind, tls=scenario in TLS_SCENARIOS,
                    h2=scenario in H2_SCENARIOS)
        try:
            peer.start()
            self.child_cpu_s = 0.0
            own0 = cpu_ticks(peer.pid) if peer.pid else 0
            own1 = cpu_ticks(peer.origin.pid)
            j0 = cpu_jiffies()
            f = getattr(self, "m_" + scenario.replace("-", "_"))(peer)
            j1 = cpu_jiffies()
            own0 = (cpu_ticks(peer.pid) if peer.pid else 0) - own0
            own1 = cpu_ticks(peer.origin.pid) - own1 + self.child_cpu_s * CLK_TCK
            p0, l1 = int(PROXY_CPU), int(LOAD_CPU)
            span0 = max(1, j1[p0][1] - j0[p0][1])
            span1 = max(1, j1[l1][1] - j0[l1][1])
            f["others_cpu0"] = max(0.0, (j1[p0][0] - j0[p0][0] - own0) / span0)
            f["others_cpu1"] = max(0.0, (j1[l1][0] - j0[l1][0] - own1) / span1)
            return f
        finally:
            peer.stop()

    def sse_load(self, peer, target, streams, extra, label, timeout_extra=30,
                 duration=None, warmup=None):
        """Runs sse-load on the load CPU and returns its JSON report."""
        duration = self.a.duration if duration is None else duration
        warmup = self.a.warmup if warmup is None else warmup
        if self.load_bin is None:
            raise Failure("sse-load is not built (perf/src/bin/sse-load.rs missing)")
        out = os.path.join(self.work, f"load-{label}-{self.seq}.json")
        argv = [self.load_bin, "--url", peer.url(target), "--streams", str(streams),
                "--duration", f"{duration}s", "--warmup", f"{warmup}s", "--quiet",
                # Generous: under flat-out load a new stream's head can take seconds.
                "--head-timeout", "20s", "--open-timeout", "60s",
                "--threads", "1", "--json", out, "--label", label] + extra
        if peer.pid:
            argv += ["--proxy-pid", str(peer.pid)]
        if peer.tls:
            argv += ["--ca", self.tls_files()["ca"]]
        p = self.procs.start(f"load-{label}-{self.seq}", argv, LOAD_CPU)
        self.seq += 1
        limit = duration + warmup + timeout_extra + 60
        try:
            self.child_cpu_s += self.procs.wait(p, limit)
        except subprocess.TimeoutExpired:
            self.procs.stop(p)
            raise Failure(f"sse-load did not finish within {limit:.0f}s")
        try:
            with open(out) as f:
                r = json.load(f)
        except (OSError, ValueError) as e:
            raise Failure(f"sse-load exit {p.returncode}, no report ({e}): "
                          f"{tail(os.path.join(self.work, f'load-{label}-{self.seq - 1}.err'))}")
        if r.get("open_failure"):
            raise Failure(f"sse-load: {r['open_failure']}")
        self.last_tls = tls_figures(r) if peer.tls else {}
        return r

    def common(self, r, streams):
        """Fails a run whose streams did not all open, or whose answer was wrong."""
        if r["established"] < streams:
            raise Failure(f"only {r['established']} of {streams} streams established "
                          f"(errors: {r.get('errors_by_kind')})")
        if r["events"] <= 0:
            raise Failure("no events in the window")

    def m_throughput(self, peer, kind, per_stream_url=False, extra=()):
        n = self.a.streams
        target = load_query(kind, self.event_bytes) + (PER_STREAM_URL if per_stream_url else "")
        if self.a.pace:
            # Paced instead of flat out (--pace): the origin writes each stream's events at
            # this rate, so nothing on either CPU is saturated.
            target += f"&rate={self.a.pace:g}"
        label = f"{peer.name}-{kind}{'-url' if per_stream_url else ''}"
        # The window starts once the held streams flow (+ the usual warm-up).
        r = self.sse_load(peer, target, n, list(extra), label,
                          warmup=self.a.warmup + FLAT_OUT_HOLD_MS / 1000)
        self.common(r, n)
        self.last_report = r
        return self.throughput_figures(peer, r)

    def throughput_figures(self, peer, r):
        """The figures of a flat-out load (sse-load's report): events, correctness, latency,
        and the proxy's CPU and its RSS at the end of the window (while the streams still
        run: issue 9 item 8) and after sse-load closed them."""
        timed = r["latency_us"]["count"] > 0  # untimed: events too small for ts_us
        f = {"events_per_s": r["events_per_s"], "gaps": r["gaps"],
             "duplicates": r["duplicates"], "errors": r["errors"],
             "latency_p50_ms": r["latency_us"]["p50"] / 1000 if timed else None,
             "latency_p99_ms": r["latency_us"]["p99"] / 1000 if timed else None,
             "load_cpu_share": r["self_cpu_s"] / max(r["duration_s"], 1e-9),
             "event_bytes": event_bytes(r)}
        if peer.pid:
            per_m = r["proxy_cpu_s_per_million_events"]
            f["proxy_cpu_s_per_m_events"] = per_m
            f["events_per_proxy_cpu_s"] = 1e6 / per_m if per_m else None
            f["proxy_cpu_share"] = r["proxy_cpu_s"] / max(r["duration_s"], 1e-9)
            end = r.get("proxy_rss_window_end_bytes")
            f["proxy_rss_mb"] = end / 2**20 if end is not None else None
            f["proxy_rss_after_close_mb"] = (rss_bytes(peer.pid) / 2**20
                                             if peer.proxy.poll() is None else None)
        return f

    def m_batch1(self, peer):
        return self.m_throughput(peer, "batch1")

    def m_batched(self, peer):
        return self.m_throughput(peer, "batched")

    def m_batch1_url(self, peer):
        return self.m_throughput(peer, "batch1", per_stream_url=True)

    def m_batched_url(self, peer):
        return self.m_throughput(peer, "batched", per_stream_url=True)

    def m_ttfe(self, peer):
        """Scenario 1a's load (held, then flat out, one URL) and, from the start of the
        window, --ttfe-clients new clients one after another, each timed from its connect to
        its first complete event and then closed (sse-load --ttfe, perf/LOAD.md)."""
        n, k = self.a.streams, self.a.ttfe_clients
        extra = ["--ttfe", str(k), "--ttfe-url", peer.url(TTFE_QUERY),
                 "--ttfe-timeout", f"{TTFE_TIMEOUT_S}s"]
        r = self.sse_load(peer, load_query("batch1"), n, extra, f"{peer.name}-ttfe",
                          warmup=self.a.warmup + FLAT_OUT_HOLD_MS / 1000,
                          timeout_extra=30 + k * TTFE_TIMEOUT_S)
        self.common(r, n)
        t, c, h = r["ttfe_ms"], r["ttfe_connect_ms"], r["ttfe_head_ms"]
        if not t["count"]:
            raise Failure(f"no probe got its first event: {r['ttfe_first_failure']}")
        f = {"ttfe_p50_ms": t["p50"], "ttfe_p99_ms": t["p99"], "ttfe_max_ms": t["max"],
             "ttfe_mean_ms": t["mean"], "ttfe_connect_p50_ms": c["p50"],
             "ttfe_head_p50_ms": h["p50"], "ttfe_head_p99_ms": h["p99"],
             "ttfe_ok": t["count"], "ttfe_failed": r["ttfe_failed"],
             "ttfe_samples_ms": r["ttfe_samples_ms"]}
        if r["ttfe_failed"]:
            f["ttfe_first_failure"] = r["ttfe_first_failure"]
        f.update({"load_" + k2: v for k2, v in self.throughput_figures(peer, r).items()
                  if k2 in ("events_per_s", "gaps", "duplicates", "errors", "proxy_cpu_share",
                            "proxy_rss_mb")})
        return f

    def m_latency(self, peer):
        n = self.a.streams
        r = self.sse_load(peer, load_query("latency", self.event_bytes), n, [],
                          f"{peer.name}-latency")
        self.common(r, n)
        lat = r["latency_us"]
        f = {"events_per_s": r["events_per_s"], "latency_p50_ms": lat["p50"] / 1000,
             "latency_p99_ms": lat["p99"] / 1000, "latency_p999_ms": lat["p999"] / 1000,
             "gaps": r["gaps"], "duplicates": r["duplicates"], "event_bytes": event_bytes(r)}
        if peer.pid:
            f["proxy_cpu_share"] = r["proxy_cpu_s"] / max(r["duration_s"], 1e-9)
            # The steady per-event figure (issue 17): at a fixed rate that leaves the proxy
            # idle between events, what it spends per event does not feed back into how many
            # events each read finds, as it does in the saturated 1a (96-240k events per
            # CPU-second within one build). CPU-seconds per million events = µs per event.
            f["proxy_cpu_us_per_event"] = r["proxy_cpu_s_per_million_events"]
        return f

    def m_fanout(self, peer):
        """Scenario 7: --fanout-clients clients of one SSE URL (one identity), the origin
        pacing each upstream connection at --fanout-rate events/s. Figures: the proxy's CPU
        per DELIVERED event (summed over the clients, in the window), its RSS at the end of
        the window, events/s delivered, and per-client correctness: a client may join the
        live stream at any event (tether --coalesce starts late clients at the head; through
        nginx and HAProxy every client has its own upstream stream from id 1), and from its
        first event it must get every later one exactly once, in order (sse-load
        --join-live)."""
        n, rate = self.a.fanout_clients, self.a.fanout_rate
        target = fanout_query(rate)
        r = self.sse_load(peer, target, n, ["--join-live"], f"{peer.name}-fanout")
        self.common(r, n)
        f = {"events_per_s": r["events_per_s"],
             "delivered_share": r["events_per_s"] / (n * rate),
             "lost": r["gaps"], "duplicates": r["duplicates"],
             "clients_with_loss": r["streams_with_gaps"],
             "clients_with_duplicates": r["streams_with_duplicates"],
             "lost_max_per_client": r["stream_gaps_max"],
             "duplicates_max_per_client": r["stream_duplicates_max"],
             "first_id_min": r["first_id_min"], "first_id_max": r["first_id_max"],
             "ended_streams": r["ended_streams"], "errors": r["errors"],
             "latency_p50_ms": r["latency_us"]["p50"] / 1000,
             "latency_p99_ms": r["latency_us"]["p99"] / 1000,
             "load_cpu_share": r["self_cpu_s"] / max(r["duration_s"], 1e-9)}
        f["upstream_streams"] = self.upstream_streams(peer, target)
        if peer.pid:
            per_m = r["proxy_cpu_s_per_million_events"]
            f["proxy_cpu_s_per_m_events"] = per_m
            f["events_per_proxy_cpu_s"] = 1e6 / per_m if per_m else None
            f["proxy_cpu_share"] = r["proxy_cpu_s"] / max(r["duration_s"], 1e-9)
            end = r.get("proxy_rss_window_end_bytes")
            f["proxy_rss_mb"] = end / 2**20 if end is not None else None
        if peer.name == "tether":
            f["coalesce"] = 1 if "--coalesce" in peer.proxy_extra else 0
        return f

    def upstream_streams(self, peer, target):
        """SSE requests of `target` the origin received (its request log): 1 when the proxy
        shared one upstream stream among all clients, one per client otherwise."""
        path = peer.origin_log
        if not path:
            return None
        deadline = time.monotonic() + 2
        count = 0
        while True:
            try:
                with open(path) as fh:
                    count = sum(1 for line in fh if json.loads(line).get("path") == target)
            except (OSError, ValueError):
                count = 0
            # The log is written as requests arrive; it is complete well before the window
            # ends, but read it again briefly if it is still empty.
            if count or time.monotonic() > deadline:
                return count
            time.sleep(0.1)

    def m_idle(self, peer, n=None, extra=()):
        n = self.a.idle_streams if n is None else n
        before = rss_bytes(peer.pid)
        # RSS sampled by sse-load (--idle: before the streams open and once they settled), and
        # by us at the end of the run as a cross-check.
        r = self.sse_load(peer, load_query("idle"), n, ["--idle", "--settle", "3s"] + list(extra),
                          f"{peer.name}-idle", timeout_extra=60, duration=1, warmup=0)
        self.common_idle(r, n)
        self.last_report = r
        f = {"rss_per_stream_bytes": r["rss_per_stream_bytes"],
             "proxy_rss_before_mb": r["proxy_rss_before_bytes"] / 2**20,
             "proxy_rss_after_mb": r["proxy_rss_after_bytes"] / 2**20,
             "rss_before_ours_mb": before / 2**20,
             "established": r["established"], "open_s": r["open_s"]}
        if peer.tls:
            f.update(tls_figures(r))
        return f

    def common_idle(self, r, n):
        if r["established"] < n:
            raise Failure(f"only {r['established']} of {n} idle streams established "
                          f"(errors: {r.get('errors_by_kind')})")
        if r.get("rss_per_stream_bytes") is None:
            raise Failure("sse-load gave no RSS per stream")

    def m_plain(self, peer):
        before = cpu_ticks(peer.pid) if peer.pid else 0
        name = f"wrk-{peer.name}-{self.seq}"
        self.seq += 1
        p = self.procs.start(name, ["wrk", "-t1", f"-c{self.a.connections}",
                                    f"-d{self.a.duration}s", peer.url("/small")], LOAD_CPU)
        try:
            self.child_cpu_s += self.procs.wait(p, self.a.duration + 30)
        except subprocess.TimeoutExpired:
            self.procs.stop(p)
            raise Failure("wrk did not finish in time")
        after = cpu_ticks(peer.pid) if peer.pid else 0
        with open(os.path.join(self.work, name + ".out")) as fh:
            out = fh.read()
        if p.returncode != 0:
            raise Failure(f"wrk failed: {tail(os.path.join(self.work, name + '.err'))}")
        rps = reqs = None
        for line in out.splitlines():
            if "Requests/sec" in line:
                rps = float(line.split()[1])
            if "requests in" in line:
                reqs = int(line.split()[0])
            if "Non-2xx" in line or "Socket errors" in line:
                raise Failure(f"wrk: {line.strip()}")
        if not rps or not reqs:
            raise Failure(f"wrk output not understood: {out}")
        f = {"req_per_s": rps}
        if peer.pid:
            f["proxy_cpu_us_per_req"] = (after - before) / CLK_TCK * 1e6 / reqs
            f["proxy_cpu_share"] = (after - before) / CLK_TCK / self.a.duration
        return f

    # ---- client TLS (TLS_SCENARIOS): the plain scenarios' measurements with https clients;
    # Peer(tls=True) gives the proxy the run's certificate, peer.url() is https://localhost,
    # sse_load() adds --ca. The proxy's CPU now includes the TLS records it seals and opens.

    def m_tls_plain(self, peer):
        """4t: keep-alive over TLS, wrk -c50 (OpenSSL client; 50 handshakes at the start, then
        requests on them): req/s and proxy CPU per request."""
        return self.m_plain(peer)

    def m_tls_1a(self, peer):
        """1t: scenario 1a (1000 streams held then flat out, one upstream write per event, one
        URL) with sse-load over TLS: events per proxy CPU-second, lost and duplicated events."""
        f = self.m_throughput(peer, "batch1")
        f.update(self.last_tls)
        return f

    def m_tls_idle(self, peer):
        """3t: --idle-streams idle streams over TLS: proxy RSS per stream (handshakes done, one
        event relayed on each, then quiet)."""
        return self.m_idle(peer)

    # ---- HTTP/2 (H2_SCENARIOS): the TLS scenarios with H2_STREAMS_PER_CONN streams on each
    # h2 connection (sse-load --h2-streams-per-conn); Peer(h2=True) makes the proxy offer h2.

    def h2_figures(self, n):
        """The h2 connections of the last sse-load run: all of them must have chosen h2 (each
        one checks its ALPN outcome; a refused one fails the run before this)."""
        r = self.last_report
        want = -(-n // H2_STREAMS_PER_CONN)
        if r.get("h2_connections") != want:
            raise Failure(f"{r.get('h2_connections')} h2 connections, expected {want}")
        return {"h2_connections": r["h2_connections"], "h2_streams_per_conn": H2_STREAMS_PER_CONN}

    def m_h2_1a(self, peer):
        """1h: 1t's load (--streams flat-out streams, one upstream write per event, one URL)
        over HTTP/2, H2_STREAMS_PER_CONN streams per connection: events per proxy CPU-second,
        lost and duplicated events."""
        f = self.m_throughput(peer, "batch1",
                              extra=["--h2-streams-per-conn", str(H2_STREAMS_PER_CONN)])
        f.update(self.last_tls)
        f.update(self.h2_figures(self.a.streams))
        return f

    def m_h2_idle(self, peer):
        """3h: --h2-idle-streams idle SSE streams over HTTP/2, H2_STREAMS_PER_CONN per
        connection: proxy RSS per stream."""
        n = self.a.h2_idle_streams
        f = self.m_idle(peer, n=n, extra=["--h2-streams-per-conn", str(H2_STREAMS_PER_CONN)])
        f.update(self.h2_figures(n))
        return f

    def m_drops(self, peer):
        k, rate, n = self.a.drop_every, self.a.drop_rate, self.a.drop_streams
        target = f"/sse?events=0&size={EVENT_SIZE}&rate={rate}&close_after={k}"
        # The probe: fewer streams, faster, so that every drop's gap is visible between events.
        pk, prate = 50, 100
        probe_target = f"/sse?events=0&size={EVENT_SIZE}&rate={prate}&close_after={pk}&probe=1"
        probe_out = os.path.join(self.work, f"probe-{peer.name}-{self.seq}.json")
        probe = self.procs.start(
            f"probe-{peer.name}-{self.seq}",
            [sys.executable, os.path.join(HERE, "gap_probe.py"), "--url", peer.url(probe_target),
             "--drop-every", str(pk), "--streams", str(self.a.probe_streams),
             "--duration", str(self.a.duration), "--warmup", str(self.a.warmup),
             "--json", probe_out], LOAD_CPU)
        self.seq += 1
        f = {}
        try:
            if self.load_bin is not None:
                r = self.sse_load(peer, target, n, ["--reconnect"], f"{peer.name}-drops")
                self.common(r, n)
                g = r["reconnect_gap_ms"]
                f.update({"load_lost": r["gaps"], "load_duplicates": r["duplicates"],
                          "load_client_reconnects": r["reconnects"],
                          "load_client_gap_p50_ms": g["p50"] if g["count"] else None,
                          "load_client_gap_p99_ms": g["p99"] if g["count"] else None,
                          "load_events_per_s": r["events_per_s"],
                          "load_errors": r["errors"]})
            self.child_cpu_s += self.procs.wait(probe, self.a.duration + self.a.warmup + 60)
        finally:
            self.procs.stop(probe)
        try:
            with open(probe_out) as fh:
                pr = json.load(fh)
        except (OSError, ValueError):
            raise Failure(f"gap probe gave no report: {tail(probe_out[:-5] + '.err')}")
        if pr["drops"] == 0:
            raise Failure(f"gap probe saw no drop ({pr})")
        f.update({"gap_p50_ms": pr["gap_ms"]["p50"], "gap_p99_ms": pr["gap_ms"]["p99"],
                  "gap_max_ms": pr["gap_ms"]["max"], "probe_drops": pr["drops"],
                  "probe_lost": pr["lost"], "probe_duplicates": pr["duplicates"],
                  "probe_client_reconnects": pr["client_reconnects"]})
        f["lost"] = pr["lost"] + f.get("load_lost", 0)
        f["duplicates"] = pr["duplicates"] + f.get("load_duplicates", 0)
        return f


def relevant(text, keys, d, port, origin):
    """The lines of a configuration that decide how it proxies (to print and record)."""
    text = text.replace(d, "DIR").replace(origin, "ORIGIN").replace(str(port), "PORT")
    return [line.strip().rstrip(";") for line in text.splitlines()
            if any(line.strip().startswith(k) for k in keys) and "temp_path" not in line]


NGINX_KEYS = ("worker_processes", "worker_rlimit_nofile", "worker_connections", "upstream",
              "proxy_", "access_log", "keepalive", "listen", "ssl_")
# The TLS scenarios' listen directive (the plain one is just ";"): the run's certificate and
# TLS 1.3 (nginx 1.22's compiled-in default is TLSv1-TLSv1.2; Debian's shipped nginx.conf turns
# 1.3 on, as here); every other TLS setting as nginx ships it (session tickets on, no shared
# session cache: `ssl_session_cache none`), as most sites leave them.
NGINX_TLS_LISTEN = """ ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;"""
# The HTTP/2 scenarios' listen: the same, plus http2 (nginx 1.22's syntax; Debian's nginx-light
# has ngx_http_v2_module; http2_max_concurrent_streams 128 by default).
NGINX_H2_LISTEN = """ ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;"""
NGINX_CONF = """\
# nginx as SSE users set it up (perf/NOTES.md): streamed, HTTP/1.1 upstream keep-alive.
worker_processes 1;
worker_rlimit_nofile 20000;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
  worker_connections 19500;
}}
http {{
  access_log off;
  client_body_temp_path {dir};
  proxy_temp_path {dir};
  fastcgi_temp_path {dir};
  uwsgi_temp_path {dir};
  scgi_temp_path {dir};
  upstream origin {{ server {origin}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port}{listen}
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 3600s;
    }}
  }}
}}
"""

HAPROXY_KEYS = ("nbthread", "ulimit-n", "maxconn", "mode", "option", "timeout", "http-reuse",
                "server", "bind")
# The TLS scenarios' bind options: the run's certificate and key in one PEM; HAProxy's TLS
# defaults otherwise (session cache of 20000 entries, tickets on).
HAPROXY_TLS_BIND = " ssl crt {both}"
# The HTTP/2 scenarios' bind: the same, h2 offered first in ALPN (HAProxy's h2 defaults:
# tune.h2.max-concurrent-streams 100).
HAPROXY_H2_BIND = " ssl crt {both} alpn h2,http/1.1"
HAPROXY_CONF = """\
# HAProxy as SSE users set it up (perf/NOTES.md): one thread, keep-alive, no Nagle merging.
global
  nbthread 1
  ulimit-n 20000
  maxconn 9900
  pidfile {dir}/haproxy.pid
defaults
  mode http
  option http-keep-alive
  option http-no-delay
  http-reuse safe
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout http-request 10s
  timeout http-keep-alive 60s
  maxconn 9900
frontend fe
  bind 127.0.0.1:{port}{bind}
  default_backend be
backend be
  server origin {origin}
"""


# ---------------------------------------------------------------------------------------------
# Scenario table: name -> (title, peers, needs sse-load).

SCENARIOS = {
    "batch1": ("1a. Throughput, one upstream write per event", PEERS_ALL, True),
    "batch1-url": ("1a-url. Throughput, one upstream write per event, every stream its own URL",
                   PEERS_ALL, True),
    "batched": ("1b. Throughput, batched upstream writes", PEERS_ALL, True),
    "batched-url": ("1b-url. Throughput, batched upstream writes, every stream its own URL",
                    PEERS_ALL, True),
    "latency": ("2. Latency at 10k events/s", PEERS_ALL, True),
    "idle": ("3. Idle streams", PEERS_PROXY, True),
    "plain": ("4. Plain keep-alive HTTP", PEERS_ALL, False),
    "drops": ("5. Upstream drops", PEERS_ALL, False),
    "ttfe": ("6. Time to first event under load", PEERS_ALL, True),
    "fanout": ("7. Fan-out: one URL, many clients", PEERS_ALL, True),
    # Client TLS (issue 15), only with --only (OPT_IN).
    "tls-plain": ("4t. TLS keep-alive HTTP", PEERS_PROXY, False),
    "tls-1a": ("1t. SSE over TLS, one upstream write per event", PEERS_PROXY, True),
    "tls-idle": ("3t. Idle TLS streams", PEERS_PROXY, True),
    # HTTP/2 (issue 15), only with --only (OPT_IN).
    "h2-1a": ("1h. SSE over HTTP/2, one upstream write per event", PEERS_PROXY, True),
    "h2-idle": ("3h. Idle HTTP/2 streams", PEERS_PROXY, True),
}
# Scenarios a run without --only leaves out: the TLS ones add ~8 minutes (3 reps, 10 s) to a
# default run that already takes ~50.
OPT_IN = list(TLS_SCENARIOS)
ALIASES = {"1": ["batch1", "batch1-url", "batched", "batched-url"],
           "throughput": ["batch1", "batch1-url", "batched", "batched-url"],
           "1a": ["batch1"], "1b": ["batched"], "1a-url": ["batch1-url"], "1b-url": ["batched-url"],
           "url": ["batch1-url", "batched-url"], "distinct-urls": ["batch1-url", "batched-url"],
           "2": ["latency"], "3": ["idle"], "4": ["plain"], "5": ["drops"], "6": ["ttfe"],
           "7": ["fanout"], "tls": list(TLS_SCENARIOS), "1t": ["tls-1a"], "3t": ["tls-idle"],
           "4t": ["tls-plain"], "h2": list(H2_SCENARIOS), "1h": ["h2-1a"],
           "3h": ["h2-idle"]}

# Defaults, and what --quick uses instead (flags given explicitly win over both).
# h2_idle_streams (3h): tether holds 3 fds per h2 stream (its socketpair bridge, 2, and the
# upstream socket, 1) plus one per connection: 6000 streams on 60 connections are 18060 of its
# 20000; nginx and HAProxy hold one per stream plus the connections.
DEFAULTS = {"reps": 3, "duration": 10, "warmup": 2, "streams": 1000, "idle_streams": 9000,
            "h2_idle_streams": 6000,
            "drop_streams": 1000, "retries": 2, "ttfe_clients": 50, "fanout_clients": 1000,
            "fanout_rate": 100}
QUICK = {"reps": 1, "duration": 2, "warmup": 0.5, "streams": 200, "idle_streams": 2000,
         "h2_idle_streams": 2000,
         "drop_streams": 200, "retries": 0, "fanout_clients": 200}


def tls_figures(r):
    """TLS handshakes of a sse-load report (the streams'; resumed ones among them)."""
    return {"tls_handshakes": r.get("tls_handshakes"), "tls_resumed": r.get("tls_resumed")}


def median(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def main():
    ap = argparse.ArgumentParser(description="tether vs nginx vs HAProxy (run via scripts/bench.sh)")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--duration", type=float)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma list: " + ",".join(
        list(SCENARIOS) + list(ALIASES)))
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--streams", type=int)
    ap.add_argument("--idle-streams", type=int)
    ap.add_argument("--h2-idle-streams", type=int,
                    help="scenario 3h: idle HTTP/2 streams, 100 per connection (default 6000: "
                         "tether holds 3 fds per h2 stream)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--drop-every", type=int, default=20)
    ap.add_argument("--drop-rate", type=float, default=10)
    ap.add_argument("--drop-streams", type=int)
    ap.add_argument("--probe-streams", type=int, default=20)
    ap.add_argument("--peers", default=",".join(PEERS_ALL))
    ap.add_argument("--ttfe-clients", type=int,
                    help="scenario 6: new clients, one after another, during the load")
    ap.add_argument("--fanout-clients", type=int,
                    help="scenario 7: clients of the one URL (default 1000; --quick 200)")
    ap.add_argument("--fanout-rate", type=float,
                    help="scenario 7: events/s of each upstream stream (default 100: "
                         "perf/NOTES.md, 'Fan-out')")
    ap.add_argument("--pace", type=float,
                    help="scenarios 1a/1b: each stream's events/s instead of flat out (e.g. 50: "
                         "50k events/s over 1000 streams), to compare proxy CPU per event when "
                         "another process (a replay store's Redis) needs room on CPU 1")
    ap.add_argument("--retries", type=int,
                    help="measure again (after waiting for quiet) when others used a CPU")
    ap.add_argument("--max-others", type=float, default=0.10,
                    help="share of a CPU other processes may take during a measurement")
    ap.add_argument("--tether-extra", default="",
                    help="more tether flags, space-separated (e.g. '--driver epoll'), for experiments")
    ap.add_argument("--origin-driver", choices=["uring", "epoll"], default="uring",
                    help="sse-upstream's driver for the SSE scenarios (plain always io_uring)")
    ap.add_argument("--origin", default="both",
                    help="origin of scenarios " + ", ".join(ORIGIN_SCENARIOS) + ": sse-upstream "
                         "(our monoio simulator, one event per stream per turn), sse-tokio "
                         "(alias tokio: every due event back to back, one write each with "
                         "batch=1), or both (default); the other scenarios always use "
                         "sse-upstream")
    ap.add_argument("--event-size", default=str(DEFAULT_EVENT_BYTES),
                    help="bytes per event on the wire for the same scenarios, a comma list "
                         f"(default {DEFAULT_EVENT_BYTES}: size={EVENT_SIZE}, as before); e.g. "
                         "32,100. Below ~57 B events carry no send time (ts=0, no latency "
                         "figures); scenario 2 keeps the send time (its 32 B is ~55 B)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--nginx", default="/usr/sbin/nginx")
    ap.add_argument("--haproxy", default="/usr/sbin/haproxy")
    ap.add_argument("--command", default="scripts/bench.sh")
    a = ap.parse_args()
    for k, v in DEFAULTS.items():
        if getattr(a, k) is None:
            setattr(a, k, QUICK.get(k, v) if a.quick else v)
    if a.origin in ORIGIN_ALIASES and ORIGIN_ALIASES[a.origin] is None:
        a.origins = list(ORIGINS)
    else:
        o = ORIGIN_ALIASES.get(a.origin, a.origin)
        if o not in ORIGINS:
            ap.error(f"--origin {a.origin}: expected sse-upstream, sse-tokio (tokio) or both")
        a.origins = [o]
    try:
        a.event_sizes = [int(x) for x in a.event_size.split(",") if x]
    except ValueError:
        ap.error(f"--event-size {a.event_size}: expected bytes, e.g. 100 or 32,100")
    if not a.event_sizes or any(x < 24 or x > 65536 for x in a.event_sizes):
        ap.error(f"--event-size {a.event_size}: each between 24 and 65536 bytes")
    a.duration = int(a.duration) if float(a.duration).is_integer() else a.duration
    a.warmup = int(a.warmup) if float(a.warmup).is_integer() else a.warmup
    chosen = []
    for s in ([x for x in a.only.split(",") if x]
              or [sc for sc in SCENARIOS if sc not in OPT_IN]):
        for name in ALIASES.get(s, [s]):
            if name not in SCENARIOS:
                ap.error(f"unknown scenario {s}")
            if name not in chosen:
                chosen.append(name)
    peers_wanted = a.peers.split(",")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    b = Bench(a)
    if "fanout" in chosen and "tether" in peers_wanted and not b.coalesce:
        log("NOTE: this tether has no --coalesce flag (`tether reverse --help`): scenario 7 "
            "runs tether without it, one upstream connection per client like the others")
    results = {}
    # What each key of `results` measured: scenario, origin, event size (report.py's labels).
    variants = {}
    # Every (scenario, origin, event size) to measure, in order: each scenario of
    # ORIGIN_SCENARIOS once per origin and size (origins outer), the others once.
    plan_variants = [(o, n) for o in a.origins for n in a.event_sizes]
    plan = [(sc, o, n) for sc in chosen
            for o, n in (plan_variants if sc in ORIGIN_SCENARIOS
                         else [("sse-upstream", DEFAULT_EVENT_BYTES)])]
    b.origins_in_plan = {o for _, o, _ in plan}
    b.tls_in_plan = any(sc in TLS_SCENARIOS for sc, _, _ in plan)
    b.h2_in_plan = any(sc in H2_SCENARIOS for sc, _, _ in plan)
    started = time.monotonic()
    busy = cpu_busy()
    log(f"== CPU use before the run (others' processes): " +
        ", ".join(f"CPU {i}: {x:.0%}" for i, x in enumerate(busy)))
    if max(busy) > a.max_others and not a.quick:
        log("   the machine is busy: waiting up to 2 minutes for a quieter moment")
        wait_quiet(a.max_others, 120)
    if max(busy) > a.max_others:
        log("   WARNING: the machine is busy; figures will be noisy (compare within this run)")
    try:
        try:
            b.check_peers([p for p in PEERS_ALL if p in peers_wanted])
        except Failure as e:
            log(f"FAILED before measuring: {e}")
            sys.exit(1)
        for sc, origin, size in plan:
            key = variant_key(sc, origin, size)
            title, peers, needs_load = SCENARIOS[sc]
            if len(plan_variants) > 1 and sc in ORIGIN_SCENARIOS:
                title += f" [{ORIGIN_LABELS[origin]}, {size} B]"
            peers = [p for p in peers if p in peers_wanted]
            results[key] = {p: [] for p in peers}
            if needs_load and b.load_bin is None:
                log(f"\n== {title}: SKIPPED, sse-load is not built yet")
                results[key] = {"skipped": "sse-load missing"}
                continue
            variants[key] = {"scenario": sc, "origin": origin, "event_bytes": size}
            b.origin_kind, b.event_bytes = origin, size
            log(f"\n== {title}")
            for rep in range(a.reps):
                order = peers[rep % len(peers):] + peers[:rep % len(peers)]
                for p in order:
                    try:
                        f = b.run_one(sc, p)
                        results[key][p].append(f)
                        log(f"  rep {rep + 1} {p:8} " + ", ".join(
                            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in f.items() if not isinstance(v, list)))
                    except Failure as e:
                        results[key][p].append({"failed": str(e)})
                        log(f"  rep {rep + 1} {p:8} FAILED: {e}")
    finally:
        b.procs.stop_all()
    elapsed = time.monotonic() - started
    summary = summarize(results, variants)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": a.command,
        "config": {k: getattr(a, k) for k in ("reps", "duration", "warmup", "streams",
                                               "idle_streams", "h2_idle_streams", "connections", "drop_every",
                                               "drop_rate", "drop_streams", "probe_streams",
                                               "ttfe_clients", "fanout_clients",
                                               "fanout_rate", "origin_driver",
                                               "tether_extra", "pace", "retries", "max_others",
                                               "quick", "origins", "event_sizes")},
        "event_size_param": EVENT_SIZE,
        "variants": variants,
        "cpu_busy_before": [round(x, 3) for x in busy],
        "pinning": {"proxy": f"CPU {PROXY_CPU}", "origin_and_load": f"CPU {LOAD_CPU}"},
        "versions": versions(b),
        "settings": b.settings,
        "tether_coalesce": b.coalesce,
        "checks": b.checked,
        "sse_load": b.load_bin is not None,
        "elapsed_s": round(elapsed),
        "runs": results,
        "medians": summary,
        "targets": None,
    }
    report["targets"] = report_md.targets(report)
    with open(os.path.join(a.work, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    log(f"\n(all measurements took {elapsed:.0f} s)")


def summarize(results, variants=None):
    out = {}
    for sc, by_peer in results.items():
        if "skipped" in by_peer:
            out[sc] = by_peer
            continue
        out[sc] = {}
        for p, runs in by_peer.items():
            ok = [r for r in runs if "failed" not in r]
            keys = sorted({k for r in ok for k in r})
            m = {k: median([r.get(k) for r in ok]) for k in keys
                 if all(isinstance(r.get(k), (int, float, type(None))) for r in ok)}
            m["ok_runs"] = len(ok)
            m["failed_runs"] = len(runs) - len(ok)
            out[sc][p] = m
    # Added latency over direct (medians of each), for every origin and event size.
    lat_keys = [k for k in out if (variants or {}).get(k, {}).get("scenario", k) == "latency"]
    for key in lat_keys:
        lat = out.get(key, {})
        if "skipped" in lat:
            continue
        d = lat.get("direct", {})
        for p in PEERS_PROXY:
            if (p in lat and d.get("latency_p50_ms") is not None
                    and lat[p].get("latency_p50_ms") is not None):
                lat[p]["added_p50_ms"] = lat[p]["latency_p50_ms"] - d["latency_p50_ms"]
                lat[p]["added_p99_ms"] = lat[p]["latency_p99_ms"] - d["latency_p99_ms"]
    return out


def get(summary, sc, peer, key):
    return summary.get(sc, {}).get(peer, {}).get(key) if isinstance(summary.get(sc), dict) else None


def wait_quiet(limit, max_wait):
    """Waits (at most max_wait seconds) until both CPUs were at most `limit` busy for 2 s."""
    deadline = time.monotonic() + max_wait
    while time.monotonic() < deadline:
        if max(cpu_busy(2.0)) <= limit:
            return True
    return False


def cpu_busy(seconds=1.0):
    """Share of each CPU that was busy over `seconds` (from /proc/stat)."""
    def snap():
        out = []
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    v = list(map(int, line.split()[1:]))
                    out.append((sum(v), v[3] + v[4]))
        return out
    a = snap()
    time.sleep(seconds)
    b = snap()
    return [1 - (bi - ai) / max(1, bt - at) for (at, ai), (bt, bi) in zip(a, b)]


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()
    return {"cores": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "load_average_at_end": [round(x, 2) for x in load]}


def versions(b):
    def run(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    rev = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    return {"tether": f"{run([b.tether_bin, '--version'])} ({rev})",
            "nginx": run([b.nginx_bin, "-v"]), "haproxy": run([b.haproxy_bin, "-v"]),
            "wrk": run(["wrk", "-v"])}


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
