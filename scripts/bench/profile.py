#!/usr/bin/env python3
"""Profiles a proxy under one of bench.sh's SSE loads (same placement: proxy alone on CPU 0).

usage: scripts/bench/profile.py [--peer tether|nginx|haproxy] [--load batch1|batched|latency]
                                [--streams 1000] [--seconds 8] [--tool perf|callgrind]
                                [--out FILE]

perf (default): `perf record -e cpu-clock -g -p PROXY` over a window of the load (the software
clock works on this VM; hardware counters do not), then a flat profile by symbol (kernel and
user), by shared object, and call chains of the top user-space symbols.
callgrind: the proxy runs under `valgrind --tool=callgrind` (user-space instructions only,
exact and repeatable; ~50x slower, so the load is whatever it can take) and the report is
instructions per relayed event by function.
Builds nothing: run scripts/bench.sh (or cargo build --release --workspace) first.
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", default="tether", choices=["tether", "nginx", "haproxy"])
    ap.add_argument("--load", default="batch1", choices=["batch1", "batched", "latency", "plain"])
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--tool", default="perf", choices=["perf", "callgrind"])
    ap.add_argument("--event-size", type=int, default=bench.DEFAULT_EVENT_BYTES,
                    help="bytes per event on the wire of batch1/batched/latency (as bench.sh)")
    ap.add_argument("--origin", default="sse-upstream", choices=list(bench.ORIGINS),
                    help="the origin behind the proxy (as bench.sh --origin)")
    ap.add_argument("--out")
    ap.add_argument("--dwarf", action="store_true",
                    help="unwind with DWARF (call chains through inlined Rust; bigger, 499 Hz)")
    a = ap.parse_args()
    b, work = bench.tool_bench("tether-profile.", a.seconds)
    if b.load_bin is None:
        sys.exit("sse-load is not built")
    report = []
    try:
        if a.tool == "callgrind":
            report = run_callgrind(b, a, work)
        else:
            report = run_perf(b, a, work)
    finally:
        b.procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(report) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)


def start_load(b, peer, a, duration):
    out = os.path.join(b.work, "load.json")
    argv = [b.load_bin, "--url", peer.url(bench.load_query(a.load, a.event_size)), "--streams", str(a.streams),
            "--duration", f"{duration}s", "--warmup", f"{1 + bench.FLAT_OUT_HOLD_MS / 1000}s", "--threads", "1", "--quiet",
            "--head-timeout", "60s", "--open-timeout", "120s", "--json", out,
            "--proxy-pid", str(peer.pid)]
    return b.procs.start("load", argv, bench.LOAD_CPU), out


def run_perf(b, a, work):
    peer = bench.Peer(b, a.peer, {}, origin=a.origin)
    peer.start()
    if a.load == "plain":
        load = b.procs.start("wrk", ["wrk", "-t1", "-c50", f"-d{int(a.seconds + 3)}s",
                                     peer.url("/small")], bench.LOAD_CPU)
        out = None
        time.sleep(1.5)
    else:
        load, out = start_load(b, peer, a, a.seconds + 3)
        time.sleep(2 + bench.FLAT_OUT_HOLD_MS / 1000)  # streams open, held, then flowing
    data = os.path.join(work, "perf.data")
    unwind = ["-F", "499", "--call-graph", "dwarf,16384"] if a.dwarf else ["-F", "1999", "-g"]
    subprocess.run(["perf", "record", "-e", "cpu-clock"] + unwind + ["-p", str(peer.pid),
                    "-o", data, "--", "sleep", str(a.seconds)],
                   check=True, capture_output=True)
    load.wait(a.seconds + 120)
    if out is None:
        with open(os.path.join(work, "wrk.out")) as f:
            text = f.read()
        rps = next((line.split()[1] for line in text.splitlines() if "Requests/sec" in line), None)
        if rps is None:
            sys.exit(f"wrk failed: {text} {bench.tail(os.path.join(work, 'wrk.err'))}")
        head = [f"# {a.peer} under `plain` (wrk -c50, /small): {float(rps):,.0f} req/s; "
                f"perf record -e cpu-clock -g over {a.seconds:g} s", ""]
    else:
        with open(out) as f:
            r = json.load(f)
        if r.get("open_failure") or not r.get("proxy_cpu_s_per_million_events"):
            sys.exit(f"the load failed: {r.get('open_failure')} {r.get('errors_by_kind')}")
        head = [f"# {a.peer} under `{a.load}` ({a.streams} streams): {r['events_per_s']:,.0f} "
                f"events/s, proxy {r['proxy_cpu_s_per_million_events']:.2f} CPU-s per million "
                f"events; perf record -e cpu-clock -g over {a.seconds:g} s", ""]

    def rep(*extra):
        p = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children"] + list(extra),
                           capture_output=True, text=True)
        return [line for line in p.stdout.splitlines() if line and not line.startswith("#")]

    head += ["## by shared object"] + rep("--sort", "dso", "-g", "none", "--percent-limit", "0.5")
    head += ["", "## by symbol (self)"] + rep("--sort", "dso,sym", "-g", "none",
                                              "--percent-limit", "0.7")
    head += ["", "## who calls the top symbols (self time, callee first, then its callers)"] + rep(
        "--sort", "sym", "-g", "callee,0.5,callee,function,percent", "--percent-limit", "3",
        "--max-stack", "8")[:400]
    peer.stop()
    return head


def run_callgrind(b, a, work):
    if a.peer != "tether":
        sys.exit("callgrind mode profiles tether only")
    # Start the origin through a Peer, then tether under valgrind by hand.
    origin = bench.Peer(b, "direct", {}, origin=a.origin)
    origin.start()
    port = bench.free_port()
    cg_out = os.path.join(work, "callgrind.out")
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg_out}",
            b.tether_bin, "reverse", "--bind", f"127.0.0.1:{port}", "--upstream",
            f"http://{origin.origin_addr}", "--workers", "1", "--cpus", bench.PROXY_CPU,
            "--max-connections", "12000", "--sse-heartbeat", "0", "--log-level", "warn"]
    proxy = b.procs.start("tether-callgrind", argv, bench.PROXY_CPU)
    bench.wait_answer(port, proxy, "tether under callgrind", None, timeout=60)

    class P:  # what start_load needs
        pid = proxy.pid

        @staticmethod
        def url(t):
            return f"http://127.0.0.1:{port}{t}"

    load, out = start_load(b, P, a, a.seconds)
    load.wait(a.seconds + 180)
    with open(out) as f:
        r = json.load(f)
    b.procs.stop(proxy, timeout=60)  # SIGTERM: tether drains, callgrind writes its file
    events = r["events_total"]
    if a.out:
        # The raw file too, for callers and callees (callgrind_annotate --tree=caller FILE).
        shutil.copy(cg_out, a.out + ".callgrind")
    p = subprocess.run(["callgrind_annotate", "--inclusive=no", cg_out],
                       capture_output=True, text=True)
    lines = p.stdout.splitlines()
    total = next((int(line.split()[0].replace(",", "")) for line in lines
                  if "PROGRAM TOTALS" in line), 0)
    head = [f"# tether under callgrind, `{a.load}` load with {a.streams} streams for "
            f"{a.seconds:g} s: {events:,} events relayed, {total:,} instructions "
            f"(~{total / max(events, 1):,.0f} per event, start-up included)", ""]
    body = [line for line in lines if line.strip()][:80]
    origin.stop()
    return head + body


if __name__ == "__main__":
    main()
