#!/usr/bin/env python3
"""The fault soak of issue 11 (started by scripts/soak.sh, which builds the binaries first).

Processes, all on 127.0.0.1:
  replica A, replica B   sse-upstream, each its own process; tether gets both as --upstream
  tether                 release build, 2 workers, heartbeats every --heartbeat, a short
                         --upstream-idle-timeout, rings of --replay-events kept --replay-ttl
                         after their stream ends, /metrics on an admin port
  sse-load fast          most of the streams, each its own URL, events at --fast-rate
  sse-load slow          the rest, events at --slow-rate: the gaps between their events are
                         longer than the heartbeat, so tether's heartbeat timers must fire there

Faults, over the whole run:
  per connection         every upstream connection of every stream gets one fault drawn by the
                         simulator (chaos=N): FIN, RST, a stall that only tether's idle timeout
                         ends, or half an event then FIN
  refused connects       every --refuse-every seconds one replica (in turn) refuses connections
                         for --refuse-window (SIGUSR1: its listener pauses, open streams go on);
                         tether's reconnects and new requests are refused and go to the other
  kills                  every --kill-every seconds one replica (in turn) dies (SIGTERM: it prints
                         its counters and _exits, the kernel cuts its connections) and comes back
                         on its port after --kill-down; connects meanwhile are refused too
  clients leaving        every client leaves every ~--leave-every seconds (RST or FIN) and comes
                         back within --leave-pause with Last-Event-ID

Pass criteria, checked and printed at the end:
  1. every client saw every event once, in order: 0 gaps, 0 duplicates, 0 errors, no stream
     ended, no stream stuck (an event within the last --stuck-after seconds of the run)
  2. tether's RSS flat after warm-up: the median of the last 5 samples of the run is at most
     --rss-tolerance (5 %) above the median of the first 5 samples after the warm-up
  3. tether's open fds back to the baseline (after start-up, before any client) once the
     clients are gone (waited for up to --fd-settle seconds)
Reported too: faults by kind, events, reconnections, heartbeats and the longest silence per
client (a worker whose timers stall shows as silences well past the heartbeat period).
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Replica:
    """One sse-upstream process that can be killed and brought back on its port."""

    def __init__(self, name, binary, work, refuse_window):
        self.name = name
        self.binary = binary
        self.work = work
        self.refuse_window = refuse_window
        self.port = 0
        self.proc = None
        self.generation = 0
        self.stats = []  # one dict per process that ended
        self.lock = threading.Lock()

    def start(self):
        self.generation += 1
        err = open(os.path.join(self.work, f"{self.name}-{self.generation}.err"), "w")
        deadline = time.time() + 10
        while True:
            proc = subprocess.Popen(
                [self.binary, "--bind", f"127.0.0.1:{self.port}",
                 "--refuse-window", f"{self.refuse_window}s"],
                stdout=subprocess.PIPE, stderr=err, text=True)
            line = proc.stdout.readline()
            m = re.match(r"listening on 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self.proc = proc
                return
            proc.wait()
            if time.time() > deadline:
                raise RuntimeError(f"{self.name} could not listen on port {self.port}")
            time.sleep(0.1)  # the port is still held (a connection in a closing state)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM: the process prints its counters and dies at once."""
        with self.lock:
            if self.proc is None:
                return
            self.proc.send_signal(signal.SIGTERM)
            try:
                rest, _ = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rest, _ = self.proc.communicate()
            for line in rest.splitlines():
                if line.startswith("stats "):
                    self.stats.append(json.loads(line[len("stats "):]))
                    with open(os.path.join(self.work, f"{self.name}-{self.generation}.stats"),
                              "w") as f:
                        f.write(line + "\n")
            self.proc = None

    def refuse(self):
        with self.lock:
            if self.alive():
                self.proc.send_signal(signal.SIGUSR1)
                return True
        return False


class Tether:
    def __init__(self, binary, work, args, upstreams):
        self.log_path = os.path.join(work, "tether.log")
        self.log = open(self.log_path, "w")
        cmd = [binary, "reverse", "--bind", "127.0.0.1:0", "--workers", "2",
               "--admin", "127.0.0.1:0",
               "--sse-heartbeat", f"{args.heartbeat}s",
               "--upstream-idle-timeout", f"{args.idle_timeout}s",
               "--replay-events", str(args.replay_events),
               "--replay-ttl", f"{args.replay_ttl}s",
               "--connect-timeout", "1s",
               "--log-level", args.tether_log_level]
        for u in upstreams:
            cmd += ["--upstream", u]
        cmd += args.tether_extra
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.addr = None
        self.admin = None
        deadline = time.time() + 20
        while (self.addr is None or self.admin is None) and time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.write(line)
            m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
            if m:
                self.addr = m.group(1)
            m = re.search(r"admin endpoint on http://(\S+)", line)
            if m:
                self.admin = m.group(1)
        if self.addr is None or self.admin is None:
            raise RuntimeError(f"tether did not start: see {self.log_path}")
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self):
        for line in self.proc.stderr:
            self.log.write(line)
        self.log.flush()

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=10) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
        return values

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def main():
    p = argparse.ArgumentParser(description="tether fault soak (issue 11)")
    p.add_argument("--bin", required=True, help="directory with tether, sse-upstream, sse-load")
    p.add_argument("--work", required=True, help="directory for logs and figures")
    p.add_argument("--duration", type=float, default=300, help="seconds of load, warm-up included")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds before the RSS baseline (default: a fifth of --duration, 10-60)")
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--slow-share", type=float, default=0.1)
    p.add_argument("--fast-rate", type=float, default=5)
    p.add_argument("--slow-rate", type=float, default=0.5)
    p.add_argument("--chaos-fast", type=int, default=80, help="mean events per connection")
    p.add_argument("--chaos-slow", type=int, default=8)
    p.add_argument("--heartbeat", type=float, default=1)
    p.add_argument("--idle-timeout", type=float, default=3)
    p.add_argument("--replay-events", type=int, default=64)
    p.add_argument("--replay-ttl", type=float, default=20,
                   help="tether's --replay-ttl: a client that comes back on the other worker "
                        "gets a new ring there and the old one is kept this long, so the ring "
                        "count is steady only after it (keep it well below the warm-up)")
    p.add_argument("--tether-log-level", default="info")
    p.add_argument("--kill-every", type=float, default=25)
    p.add_argument("--kill-down", type=float, default=2)
    p.add_argument("--refuse-every", type=float, default=7)
    p.add_argument("--refuse-window", type=float, default=1)
    p.add_argument("--leave-every", type=float, default=30)
    p.add_argument("--leave-pause", type=float, default=1)
    p.add_argument("--stuck-after", type=float, default=15)
    p.add_argument("--max-quiet", type=float, default=None,
                   help="count and list silences longer than this (default: 1.5 x --heartbeat)")
    p.add_argument("--rss-tolerance", type=float, default=0.05)
    p.add_argument("--fd-settle", type=float, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--summary", help="write the summary (Markdown) here too")
    p.add_argument("--tether-extra", nargs=argparse.REMAINDER, default=[],
                   help="further tether flags (last)")
    args = p.parse_args()
    warmup = args.warmup if args.warmup is not None else min(60, max(10, args.duration / 5))
    max_quiet = args.max_quiet if args.max_quiet is not None else 1.5 * args.heartbeat
    os.makedirs(args.work, exist_ok=True)
    binp = lambda n: os.path.join(args.bin, n)

    replicas = [Replica("replica-a", binp("sse-upstream"), args.work, args.refuse_window),
                Replica("replica-b", binp("sse-upstream"), args.work, args.refuse_window)]
    for r in replicas:
        r.start()
    tether = None
    loads = []
    stop = threading.Event()
    try:
        tether = Tether(binp("tether"), args.work, args,
                        [f"http://127.0.0.1:{r.port}" for r in replicas])
        pid = tether.proc.pid
        log(f"replicas on {[r.port for r in replicas]}, tether pid {pid} on {tether.addr}, "
            f"admin {tether.admin}")
        time.sleep(1)
        fd_base = fd_count(pid)
        rss_base = rss_kb(pid)
        log(f"baseline: {fd_base} fds, RSS {rss_base / 1024:.1f} MiB")

        samples = []  # (seconds since load start, rss kB, fds)
        ring_samples = []  # (seconds since load start, streams active, replay rings)
        unexpected = []  # replicas that died without being killed
        t0 = time.time()

        gauges = open(os.path.join(args.work, "tether.csv"), "w")
        gauges.write("t,rss_kb,fds,streams_active,replay_rings,replay_ring_bytes,"
                     "connections_active\n")

        def sampler():
            while not stop.is_set():
                try:
                    samples.append((time.time() - t0, rss_kb(pid), fd_count(pid)))
                except OSError:
                    return
                try:
                    g = tether.metrics()
                    ring_samples.append((samples[-1][0],
                                         int(g.get("tether_sse_streams_active", 0)),
                                         int(g.get("tether_replay_rings", 0))))
                    gauges.write(",".join(str(v) for v in (
                        round(samples[-1][0], 1), samples[-1][1], samples[-1][2],
                        int(g.get("tether_sse_streams_active", 0)),
                        int(g.get("tether_replay_rings", 0)),
                        int(g.get("tether_replay_ring_bytes", 0)),
                        int(g.get("tether_connections_active", 0)))) + "\n")
                    gauges.flush()
                except OSError:
                    pass
                for r in replicas:
                    with r.lock:
                        if r.proc is not None and r.proc.poll() is not None:
                            event(f"{r.name} (pid {r.proc.pid}) died by itself: "
                                  f"status {r.proc.returncode}")
                            unexpected.append(r.name)
                            r.proc = None
                stop.wait(1)

        kills = []
        refusals = [0]
        events = open(os.path.join(args.work, "events.log"), "w")

        def event(what):
            events.write(f"{time.time() - t0:8.2f} {what}\n")
            events.flush()

        def chaos():
            next_kill = t0 + args.kill_every
            next_refuse = t0 + args.refuse_every / 2
            victim = 0
            refusee = 1
            while not stop.is_set():
                now = time.time()
                if now >= next_kill:
                    r = replicas[victim % 2]
                    victim += 1
                    event(f"kill {r.name} (pid {r.proc.pid if r.proc else '-'})")
                    r.stop()
                    kills.append(round(now - t0, 1))
                    stop.wait(args.kill_down)
                    r.start()
                    event(f"{r.name} back (pid {r.proc.pid})")
                    next_kill += args.kill_every
                    continue
                if now >= next_refuse:
                    if replicas[refusee % 2].refuse():
                        refusals[0] += 1
                        event(f"refuse {replicas[refusee % 2].name}")
                    refusee += 1
                    next_refuse += args.refuse_every
                stop.wait(max(0.05, min(next_kill, next_refuse) - time.time()))

        threads = [threading.Thread(target=sampler, daemon=True),
                   threading.Thread(target=chaos, daemon=True)]
        slow = max(1, round(args.streams * args.slow_share)) if args.slow_share > 0 else 0
        fast = args.streams - slow
        groups = []
        if fast:
            groups.append(("fast", fast, args.fast_rate, args.chaos_fast))
        if slow:
            groups.append(("slow", slow, args.slow_rate, args.chaos_slow))
        for name, n, rate, chaos_n in groups:
            url = (f"http://{tether.addr}/sse?events=0&rate={rate}&chaos={chaos_n}"
                   f"&chaos_seed={args.seed}&group={name}&s={{i}}")
            cmd = [binp("sse-load"), "--url", url, "--streams", str(n),
                   "--warmup", f"{warmup}s", "--duration", f"{args.duration - warmup}s",
                   "--reconnect", "--leave-every", f"{args.leave_every}s",
                   "--leave-pause", f"{args.leave_pause}s",
                   "--max-quiet", f"{max_quiet}s", "--stuck-after", f"{args.stuck_after}s",
                   "--open-timeout", "60s", "--proxy-pid", str(pid), "--quiet",
                   "--label", f"soak-{name}", "--json", os.path.join(args.work, f"{name}.json")]
            out = open(os.path.join(args.work, f"load-{name}.txt"), "w")
            loads.append((name, subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)))
        for t in threads:
            t.start()
        log(f"load: {fast} fast streams at {args.fast_rate}/s (chaos={args.chaos_fast}), "
            f"{slow} slow at {args.slow_rate}/s (chaos={args.chaos_slow}), "
            f"{args.duration:.0f} s with {warmup:.0f} s warm-up")
        last = time.time()
        while any(pr.poll() is None for _, pr in loads):
            time.sleep(1)
            if time.time() - last >= 30:
                last = time.time()
                s = samples[-1] if samples else (0, 0, 0)
                log(f"t={s[0]:.0f}s RSS {s[1] / 1024:.1f} MiB, {s[2]} fds, kills {len(kills)}, "
                    f"refusal windows {refusals[0]}")
        load_end = time.time() - t0
        stop.set()
        for t in threads:
            t.join(timeout=args.kill_down + 15)
        for r in replicas:
            if not r.alive():
                r.start()
        log("load over; waiting for tether's fds to settle")
        settle_deadline = time.time() + args.fd_settle
        fd_end = fd_count(pid)
        while fd_end != fd_base and time.time() < settle_deadline:
            time.sleep(0.5)
            fd_end = fd_count(pid)
        settle_s = args.fd_settle - max(0.0, settle_deadline - time.time())
        metrics = tether.metrics()
        rss_after = rss_kb(pid)
        for r in replicas:
            r.stop()
        code = tether.stop()
        reports = {}
        for name, pr in loads:
            try:
                with open(os.path.join(args.work, f"{name}.json")) as f:
                    reports[name] = json.load(f)
            except (OSError, ValueError):
                reports[name] = None
        result = judge(args, warmup, max_quiet, reports, [pr.returncode for _, pr in loads],
                       replicas, kills, refusals[0], metrics, samples, load_end,
                       fd_base, fd_end, settle_s, rss_base, rss_after, code, tether.cmd,
                       unexpected, ring_samples)
    finally:
        stop.set()
        for _, pr in loads:
            if pr.poll() is None:
                pr.kill()
        for r in replicas:
            if r.alive():
                r.proc.kill()
        if tether is not None and tether.proc.poll() is None:
            tether.proc.kill()
    summary, ok = result
    print(summary, flush=True)
    if args.summary:
        with open(args.summary, "w") as f:
            f.write(summary + "\n")
    sys.exit(0 if ok else 1)


def judge(args, warmup, max_quiet, reports, load_codes, replicas, kills, refusals, m, samples,
          load_end, fd_base, fd_end, settle_s, rss_base, rss_after, tether_code, cmd,
          unexpected, ring_samples):
    lines = []
    out = lines.append
    ok = True

    def total(key):
        return sum((r or {}).get(key) or 0 for r in reports.values())

    sim = {k: 0 for k in ("connections", "fin", "rst", "stall", "half", "refusal_windows")}
    for r in replicas:
        for s in r.stats:
            for k in sim:
                sim[k] += s.get(k, 0)
    refused = int(m.get("tether_upstream_connect_errors_total", 0))
    conn_faults = sim["fin"] + sim["rst"] + sim["stall"] + sim["half"]
    faults = conn_faults + sim["refusal_windows"] + len(kills)
    out(f"## Soak: {args.streams} streams, {args.duration:.0f} s "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    out("")
    out("```")
    out(" ".join(cmd))
    out("```")
    out("")
    out("| figure | value |")
    out("|---|---|")
    out(f"| faults injected | **{faults}**: {conn_faults} upstream connections cut "
        f"({sim['fin']} FIN, {sim['rst']} RST, {sim['stall']} stalls past the "
        f"{args.idle_timeout:g} s idle timeout, {sim['half']} half events then FIN), "
        f"{sim['refusal_windows']} refusal windows of {args.refuse_window:g} s, {len(kills)} "
        f"replica kills ({args.kill_down:g} s down); tether saw {refused} refused connects |")
    out(f"| upstream drops seen by tether | {int(m.get('tether_upstream_drops_eof_total', 0))} "
        f"FIN/close, {int(m.get('tether_upstream_drops_reset_total', 0))} reset, "
        f"{int(m.get('tether_upstream_drops_idle_total', 0))} idle, "
        f"{int(m.get('tether_upstream_drops_error_total', 0))} other; "
        f"{int(m.get('tether_resumes_total', 0))} resumes, "
        f"{int(m.get('tether_resume_give_ups_total', 0))} give-ups, "
        f"{int(m.get('tether_duplicates_dropped_total', 0))} duplicates dropped |")
    out(f"| clients | {total('streams')} streams, {total('leaves')} left and came back "
        f"(replays from a ring: {int(m.get('tether_replay_served_total', 0))}, "
        f"missed: {int(m.get('tether_replay_missed_total', 0))}), "
        f"{total('reconnects')} reconnections after a drop in the window |")
    out(f"| events received | {total('events_total')} "
        f"(fewest for one client: {min((r or {}).get('stream_events_min') or 0 for r in reports.values())}) |")
    gaps, dups, errors = total("gaps"), total("duplicates"), total("errors")
    ended, stuck = total("ended_streams"), total("stuck_streams")
    exact = gaps == 0 and dups == 0 and errors == 0 and ended == 0 and stuck == 0 \
        and all(c == 0 for c in load_codes) and all(r is not None for r in reports.values())
    ok &= exact
    out(f"| lost / duplicated | **{gaps} / {dups}** (errors {errors}, streams ended {ended}, "
        f"stuck {stuck}) |")
    for name, r in reports.items():
        if r is None:
            continue
        q = r["quiet_ms"]
        hb = r["comments"]
        window = max(r["duration_s"] + r["warmup_s"], 1e-9)
        out(f"| heartbeats, {name} clients | {hb} comments, {hb / r['streams'] / window:.2f} "
            f"per client per second; longest silence per client p50/p99/max "
            f"{q['p50']:.0f} / {q['p99']:.0f} / {q['max']:.0f} ms "
            f"({r['quiet_over']} over {max_quiet * 1000:.0f} ms) |")
    long = sorted(((name, x) for name, r in reports.items() if r for x in r["long_silences"]),
                  key=lambda nx: -nx[1]["ms"])
    if long:
        out(f"| silences past {max_quiet * 1000:.0f} ms | "
            + ", ".join(f"{n} #{x['stream']}: {x['ms']:.0f} ms ending at {x['end_s']:.1f} s"
                        for n, x in long[:8]) + " |")
    per_worker = [int(v) for k, v in sorted(m.items())
                  if k.startswith("tether_worker_sse_heartbeats_total")]
    out(f"| heartbeats sent by tether | {int(m.get('tether_sse_heartbeats_total', 0))} "
        f"(per worker {per_worker}) |")

    after = [s for s in samples if warmup <= s[0] <= warmup + 5]
    end = [s for s in samples if load_end - 5 <= s[0] <= load_end]
    if len(after) >= 1 and len(end) >= 1:
        rss_start = statistics.median(s[1] for s in after)
        rss_end = statistics.median(s[1] for s in end)
        rss_max = max(s[1] for s in samples if s[0] >= warmup)
        growth = (rss_end - rss_start) / rss_start
        rss_ok = growth <= args.rss_tolerance
        out(f"| tether RSS | baseline {rss_base / 1024:.1f} MiB; after warm-up "
            f"{rss_start / 1024:.1f}, at the end {rss_end / 1024:.1f} MiB "
            f"(**{growth * 100:+.1f} %**, max {rss_max / 1024:.1f}); after the clients left "
            f"{rss_after / 1024:.1f} |")
    else:
        rss_ok = False
        out("| tether RSS | not enough samples |")
    ok &= rss_ok
    fds_ok = fd_end == fd_base
    ok &= fds_ok
    peak_fds = max((s[2] for s in samples), default=0)
    rings = [(s[0], s[2]) for s in ring_samples]
    after_rings = [r for t, r in rings if t >= warmup]
    if after_rings:
        out(f"| replay rings | {after_rings[0]} after warm-up, {after_rings[-1]} at the end "
            f"(max {max(after_rings)}; --replay-ttl {args.replay_ttl:g} s) |")
    out(f"| tether fds | baseline {fd_base}, peak {peak_fds}, after the clients left "
        f"**{fd_end}** ({settle_s:.1f} s later) |")
    out(f"| tether exit | {tether_code} |")
    out("")
    out(f"- every client saw every event once, in order: {'PASS' if exact else 'FAIL'}")
    out(f"- RSS flat after warm-up (within {args.rss_tolerance * 100:.0f} %): "
        f"{'PASS' if rss_ok else 'FAIL'}")
    out(f"- fds back to the baseline: {'PASS' if fds_ok else 'FAIL'}")
    out(f"- kills at {kills} s")
    if unexpected:
        ok = False
        out(f"- FAIL: replicas that died without being killed: {unexpected} (see events.log)")
    return "\n".join(lines), ok


if __name__ == "__main__":
    main()
