#!/usr/bin/env python3
"""Counts, per relayed SSE event, a proxy's syscalls, its io_uring operations and the TCP
segments it receives from the origin and sends to its clients, under scenario 1a or 1b of
scripts/bench.sh with either origin (perf/NOTES.md, "Two origins").

usage: scripts/bench/syscalls.py [--peers tether,nginx,haproxy] [--origins sse-upstream,sse-tokio]
                                 [--loads batch1,batched,latency] [--rates 10,30,60]
                                 [--streams 1000] [--seconds 5] [--event-size 100]
                                 [--tool perf|strace] [--json FILE] [--markdown FILE]

Loads: batch1 (1a), batched (1b), latency (scenario 2: a fixed rate per stream, not flat out;
--rates gives the per-stream rates to count, each its own row: 10 is scenario 2's 10k events/s
over 1000 streams). At a fixed rate that leaves the proxy idle between events every event is
its own wake-up and read, so the counts are the per-event cost of a realistic load rather than
of a saturated proxy whose events per read grow as it falls behind (perf/NOTES.md, "Per-event
cost at a fixed rate").

Same placement and loads as the bench (run.py's Peer and load_query: proxy alone on CPU 0 with
one worker, origin and sse-load on CPU 1, held streams then flat out). Once sse-load reports its
measured window, for --seconds:
- syscalls: `perf stat -e raw_syscalls:sys_enter -e syscalls:sys_enter_<name>... -p PROXY`,
  kernel tracepoint counts (every thread of the proxy). Not `strace -c`: ptrace stops the proxy
  at every syscall and slows it several-fold, which changes how many events each read finds,
  the very figure compared here. `perf stat` counts in the kernel without stopping it.
  `--tool strace` counts with `strace -c -f -p PROXY` instead, to see that distortion (no
  io_uring operations then).
- io_uring operations submitted, by opcode: `io_uring:io_uring_submit_req` filtered on
  `opcode` (a read through io_uring is an operation, not a syscall).
- TCP segments: `ss -tin` before and after, summed over the proxy's sockets: data_segs_in of
  its upstream connections (segments of the origin it reads) and data_segs_out of its client
  connections (segments it sends).
- events: the bytes the proxy sent its clients between the two `ss` snapshots (bytes_sent of
  its client sockets) over sse-load's wire bytes per event; the rate over that span times the
  counting time for perf's counts (the span brackets perf's, whose start-up takes a while).
  Proxy CPU per event from /proc over perf's run (with the counting's own overhead: the
  bench's figure is the one to compare).
- wake-ups: the proxy's voluntary context switches (voluntary_ctxt_switches of every thread in
  /proc/PID/task/*/status) over perf's run: each is one sleep in epoll_wait/io_uring_enter.
Figures per event, one line per (origin, load, rate, peer); --json keeps every count.
Builds nothing: run `cargo build --release --workspace` first (CARGO_TARGET_DIR honoured).
Needs perf (linux-perf) and ss (iproute2): installed with apt-get when missing and root.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402

# Syscalls counted one by one (the rest only in the total). A name without a tracepoint on
# this kernel is skipped.
SYSCALLS = ["read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg",
            "epoll_wait", "epoll_pwait", "epoll_ctl", "io_uring_enter", "ioctl", "accept4",
            "close", "getsockopt", "setsockopt", "clock_gettime", "futex"]
READS = ["read", "readv", "recvfrom", "recvmsg"]
WRITES = ["write", "writev", "sendto", "sendmsg"]
# io_uring opcodes (include/uapi/linux/io_uring.h).
URING_OPS = {"readv": 1, "writev": 2, "poll_add": 6, "sendmsg": 9, "recvmsg": 10, "timeout": 11,
             "accept": 13, "async_cancel": 14, "read": 22, "write": 23, "send": 26, "recv": 27}
URING_READS = ["readv", "recvmsg", "read", "recv"]
URING_WRITES = ["writev", "sendmsg", "write", "send"]
TRACEFS = "/sys/kernel/tracing/events"


def ensure_tools():
    missing = [pkg for tool, pkg in (("perf", "linux-perf"), ("ss", "iproute2"),
                                     ("strace", "strace"))
               if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"== installing {' '.join(missing)} (apt-get)", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    else:
        sys.exit(f"missing: {' '.join(missing)}; install with apt-get install {' '.join(missing)}")


def perf_events():
    """(label, perf stat arguments) for every counted event."""
    out = [("syscalls", ["-e", "raw_syscalls:sys_enter"])]
    for name in SYSCALLS:
        if os.path.isdir(f"{TRACEFS}/syscalls/sys_enter_{name}") or not os.path.isdir(TRACEFS):
            out.append((name, ["-e", f"syscalls:sys_enter_{name}"]))
    out.append(("uring_ops", ["-e", "io_uring:io_uring_submit_req"]))
    for name, code in URING_OPS.items():
        out.append((f"uring_{name}", ["-e", "io_uring:io_uring_submit_req",
                                      "--filter", f"opcode == {code}"]))
    return out


def perf_stat(pid, seconds, events):
    argv = ["perf", "stat", "-x", ",", "--no-big-num"]
    for _, args in events:
        argv += args
    argv += ["-p", str(pid), "--", "sleep", str(seconds)]
    p = subprocess.run(argv, capture_output=True, text=True)
    counts = {}
    lines = [line for line in p.stderr.splitlines() if line and not line.startswith("#")]
    rows = [line.split(",") for line in lines if "," in line]
    if len(rows) != len(events):
        raise bench.Failure(f"perf stat gave {len(rows)} counts for {len(events)} events: "
                            f"{p.stderr[-500:]}")
    for (label, _), row in zip(events, rows):
        counts[label] = int(row[0]) if row[0].strip().isdigit() else 0
    return counts


def strace_count(pid, seconds):
    """The same counts from `strace -c -f -p PID` over `seconds` (ptrace: slows the proxy)."""
    p = subprocess.run(["timeout", "-s", "INT", str(seconds), "strace", "-c", "-f", "-p",
                        str(pid)], capture_output=True, text=True)
    counts = {"syscalls": 0}
    for line in p.stderr.splitlines():
        f = line.split()
        # "% time  seconds  usecs/call  calls  errors  syscall"; errors may be blank.
        if len(f) >= 5 and f[0].replace(".", "").isdigit() and f[3].isdigit():
            name = f[-1]
            if name == "total":
                counts["syscalls"] = int(f[3])
            else:
                counts[name] = int(f[3])
    if not counts["syscalls"]:
        raise bench.Failure(f"strace gave no summary: {p.stderr[-300:]}")
    return counts


SEG = re.compile(r"\b(data_segs_in|data_segs_out|segs_in|segs_out|bytes_sent|bytes_received)"
                 r":(\d+)")


def ss_segments(filt):
    """{(local, peer): {counter: value}} for established TCP sockets matching `filt`."""
    p = subprocess.run(["ss", "-tinH", "state", "established", filt], capture_output=True,
                       text=True, check=True)
    out, key = {}, None
    for line in p.stdout.splitlines():
        if not line.startswith((" ", "\t")):
            f = line.split()
            key = (f[-2], f[-1]) if len(f) >= 2 else None
            continue
        if key is not None:
            out[key] = {k: int(v) for k, v in SEG.findall(line)}
    return out


def ss_timed(filt):
    """ss_segments(filt) and the moment it stands for (the middle of the call: ss takes
    tens of milliseconds over a thousand sockets)."""
    t0 = time.monotonic()
    segs = ss_segments(filt)
    return segs, (t0 + time.monotonic()) / 2


def seg_diff(before, after, counter):
    return sum(v.get(counter, 0) - before.get(k, {}).get(counter, 0) for k, v in after.items())


def cpu0_jiffies():
    """CPU 0's (busy, steal, total) clock ticks: busy = user + nice + system + steal, as
    run.py counts it."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{bench.PROXY_CPU} "):
                v = list(map(int, line.split()[1:]))
                steal = v[7] if len(v) > 7 else 0
                return v[0] + v[1] + v[2] + steal, steal, sum(v[:8])
    raise bench.Failure("no CPU 0 in /proc/stat")


def wait_window(err_path, deadline):
    """Waits until sse-load's progress shows its measured window."""
    while time.monotonic() < deadline:
        try:
            with open(err_path) as f:
                if " measure " in f.read():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise bench.Failure("sse-load never reached its window")


def voluntary_switches(pid):
    """Voluntary context switches of every thread of `pid` (each a sleep in the kernel)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def load_target(load, event_size, rate):
    """The URL target of `load`; for latency, `rate` events/s per stream instead of 10."""
    q = bench.load_query(load, event_size)
    if load == "latency" and rate is not None:
        q = re.sub(r"&rate=[0-9.]+", f"&rate={rate:g}", q)
    return q


def measure(b, a, origin, load, peer_name, events, stream_rate=None):
    peer = bench.Peer(b, peer_name, {}, origin=origin)
    try:
        peer.start()
        origin_port = peer.origin_addr.rsplit(":", 1)[1]
        hold = bench.FLAT_OUT_HOLD_MS / 1000 if load != "latency" else 0
        warmup = 2 + hold
        duration = a.seconds + 3
        out = os.path.join(b.work, f"load-{origin}-{load}-{peer_name}.json")
        name = f"load-{origin}-{load}-{peer_name}"
        argv = [b.load_bin, "--url", peer.url(load_target(load, a.event_size, stream_rate)),
                "--streams", str(a.streams), "--duration", f"{duration}s",
                "--warmup", f"{warmup}s", "--threads", "1", "--head-timeout", "20s",
                "--open-timeout", "60s", "--json", out, "--proxy-pid", str(peer.pid)]
        lp = b.procs.start(name, argv, bench.LOAD_CPU)
        wait_window(os.path.join(b.work, name + ".err"), time.monotonic() + 90)
        # Each count has its own span (perf's start-up takes a while), and the events of a span
        # are the load's rate times its length.
        up_filter, down_filter = f"( dport = :{origin_port} )", f"( sport = :{peer.port} )"
        up_before, up_t0 = ss_timed(up_filter)
        down_before, down_t0 = ss_timed(down_filter)
        cpu0 = bench.cpu_ticks(peer.pid)
        vcs0 = voluntary_switches(peer.pid)
        j0 = cpu0_jiffies()
        t0 = time.monotonic()
        if a.tool == "strace":
            counts = strace_count(peer.pid, a.seconds)
        else:
            counts = perf_stat(peer.pid, a.seconds, events)
        elapsed = time.monotonic() - t0
        own = bench.cpu_ticks(peer.pid) - cpu0
        counts["wakeups"] = voluntary_switches(peer.pid) - vcs0
        j1 = cpu0_jiffies()
        cpu = own / bench.CLK_TCK
        span = max(1, j1[2] - j0[2])
        # What else ran on the proxy's CPU (other processes, and the hypervisor's steal): a
        # proxy that lost its core to others finds more events per read, so such a count is
        # not its own (measured again, as run.py does).
        others_cpu0 = max(0.0, (j1[0] - j0[0] - own) / span)
        steal_cpu0 = (j1[1] - j0[1]) / span
        up_after, up_t1 = ss_timed(up_filter)
        down_after, down_t1 = ss_timed(down_filter)
        b.procs.wait(lp, duration + warmup + 120)
        with open(out) as f:
            r = json.load(f)
        if r.get("open_failure") or not r.get("events"):
            raise bench.Failure(f"load failed: {r.get('open_failure')} {r.get('errors_by_kind')}")
        client_bytes = seg_diff(down_before, down_after, "bytes_sent")
        span_events = client_bytes * r["events"] / r["wire_bytes"]
        rate = span_events / (down_t1 - down_t0)
        # perf counts while its workload (sleep SECONDS) runs.
        ev = rate * a.seconds
        f = {"origin": origin, "load": load, "rate_per_stream": stream_rate, "peer": peer_name,
             "seconds": a.seconds,
             "events_per_s": rate, "load_events_per_s": r["events_per_s"], "events": ev,
             "span_events": span_events, "client_bytes": client_bytes, "gaps": r["gaps"],
             "duplicates": r["duplicates"], "proxy_cpu_s": cpu, "elapsed_s": elapsed,
             "tool": a.tool, "proxy_cpu_share": cpu / elapsed, "others_cpu0": others_cpu0,
             "steal_cpu0": steal_cpu0,
             "upstream_span_s": up_t1 - up_t0, "client_span_s": down_t1 - down_t0,
             "counts": counts,
             "upstream_data_segs_in": seg_diff(up_before, up_after, "data_segs_in"),
             "client_data_segs_out": seg_diff(down_before, down_after, "data_segs_out"),
             "upstream_sockets": len(up_after), "client_sockets": len(down_after)}
        per = {k: v / ev for k, v in counts.items()}
        per["reads"] = sum(per.get(k, 0) for k in READS) + sum(
            per.get(f"uring_{k}", 0) for k in URING_READS)
        per["writes"] = sum(per.get(k, 0) for k in WRITES) + sum(
            per.get(f"uring_{k}", 0) for k in URING_WRITES)
        per["epoll_waits"] = per.get("epoll_wait", 0) + per.get("epoll_pwait", 0)
        per["upstream_segments"] = f["upstream_data_segs_in"] / (rate * f["upstream_span_s"])
        per["client_segments"] = f["client_data_segs_out"] / span_events
        per["cpu_us"] = cpu / (rate * elapsed) * 1e6
        f["per_event"] = per
        return f
    finally:
        peer.stop()


def load_label(f):
    rate = f.get("rate_per_stream")
    return f"{f['load']} at {rate:g}/s per stream" if rate is not None else f["load"]


def table(rows):
    out = ["| origin | load | proxy | events/s | proxy CPU share | proxy CPU µs/event | "
           "wake-ups/event | syscalls/event | "
           "reads/event | writes/event | epoll_wait/event | io_uring_enter/event | "
           "io_uring ops/event | ioctl/event | upstream segments/event | client segments/event |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in rows:
        if "failed" in f:
            out.append(f"| {f['origin']} | {load_label(f)} | {f['peer']} | failed: {f['failed']} |")
            continue
        p = f["per_event"]
        out.append(
            f"| {f['origin']} | {load_label(f)} | {f['peer']} | {f['events_per_s']:,.0f} | "
            f"{f['proxy_cpu_share']:.0%}{' (contended)' if f.get('contended') else ''} | "
            f"{p['cpu_us']:.2f} | {p.get('wakeups', 0):.3f} | {p['syscalls']:.3f} | {p['reads']:.3f} | {p['writes']:.3f} | "
            f"{p['epoll_waits']:.3f} | {p.get('io_uring_enter', 0):.3f} | "
            f"{p.get('uring_ops', 0):.3f} | {p.get('ioctl', 0):.3f} | "
            f"{p['upstream_segments']:.3f} | {p['client_segments']:.3f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", default="tether,nginx,haproxy")
    ap.add_argument("--origins", default="sse-upstream,sse-tokio")
    ap.add_argument("--loads", default="batch1,batched")
    ap.add_argument("--rates", default="10",
                    help="events/s per stream of the latency load, a comma list (one row each)")
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--event-size", type=int, default=bench.DEFAULT_EVENT_BYTES)
    ap.add_argument("--tool", choices=["perf", "strace"], default="perf")
    ap.add_argument("--retries", type=int, default=2,
                    help="measure again when others (or steal) took more than --max-others "
                         "of the proxy's CPU")
    ap.add_argument("--max-others", type=float, default=0.10)
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    ensure_tools()
    events = perf_events()
    b, work = bench.tool_bench("tether-syscalls.", a.seconds)
    if b.load_bin is None:
        sys.exit("sse-load is not built")
    rows = []
    try:
        for origin in a.origins.split(","):
            origin = bench.ORIGIN_ALIASES.get(origin) or origin
            for load, rate in [(ld, r) for ld in a.loads.split(",")
                               for r in ([float(x) for x in a.rates.split(",")]
                                         if ld == "latency" else [None])]:
                for peer in a.peers.split(","):
                    try:
                        for attempt in range(a.retries + 1):
                            f = measure(b, a, origin, load, peer, events, rate)
                            if f["others_cpu0"] <= a.max_others:
                                break
                            print(f"  (others took {f['others_cpu0']:.0%} of CPU 0, steal "
                                  f"{f['steal_cpu0']:.0%}: measuring again)", flush=True)
                            f["contended"] = True
                            bench.wait_quiet(a.max_others, 60)
                        p = f["per_event"]
                        print(f"{origin} {load_label(f)} {peer}: {f['events_per_s']:,.0f} "
                              f"events/s, {p['cpu_us']:.2f} CPU µs, {p['wakeups']:.3f} "
                              f"wake-ups, {p['syscalls']:.3f} syscalls, {p['reads']:.3f} reads, "
                              f"{p['upstream_segments']:.3f} upstream segments, "
                              f"{p['client_segments']:.3f} client segments per event",
                              flush=True)
                    except bench.Failure as e:
                        f = {"origin": origin, "load": load, "rate_per_stream": rate,
                             "peer": peer, "failed": str(e)}
                        print(f"{origin} {load} {rate} {peer}: FAILED {e}", flush=True)
                    rows.append(f)
    finally:
        b.procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    md = table(rows)
    print("\n" + md)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"streams": a.streams, "seconds": a.seconds, "event_size": a.event_size,
                       "rows": rows}, f, indent=1)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(md + "\n")


if __name__ == "__main__":
    main()
