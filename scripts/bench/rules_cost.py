#!/usr/bin/env python3
"""What interceptor rules cost per relayed SSE event: callgrind instruction counts of tether on a
fixed, finite SSE workload, once per configuration (no config file, a routes-only file, rules
that cannot apply, event rules whose prefilters never hit, ...).

usage: scripts/bench/rules_cost.py [--configs none,routes-only,non-applying,event-nonmatching]
                                   [--repeat-none 2] [--streams 100] [--small 1500] [--big 3000]
                                   [--size 80] [--extra-query '&batch=1'] [--add NAME=FILE]
                                   [--target-dir DIR] [--json FILE] [--keep]

Configurations (--configs, comma-separated, `all` for every one; default: the first four):
  none               no config file (`--upstream`)
  routes-only        a config file with the one route and upstream, no rules
  non-applying       9 rules that cannot apply to the workload's requests (another path
                     prefix, another route, method POST) on request, response and event hooks
  event-nonmatching  4 event rules that apply to every request, whose prefilters never hit an
                     event (data-contains, event-type, mcp-result-of, data-regex): looked at per
                     event
  event-matching     1 redact rule that rewrites every event (the cost of a rewrite)
The rule tables follow the [[rule]] format of the interceptor-rules issue. A binary without rule
support refuses them (`tether check` first, then tether's start-up): the configuration is
reported as FAILED with tether's message, the others still run, and the exit status is 1.
`--add NAME=FILE` adds or replaces a configuration: a TOML file in which ORIGIN stands for the
origin's host:port (e.g. when the real rule keys differ from the ones written here).

What it runs, per configuration and per size N (events per stream), all on loopback:
- the origin simulator (sse-upstream, 1 thread, CPU 1, not under valgrind), fresh each run;
- tether under `valgrind --tool=callgrind` (CPU 0) with TETHER_FLAGS below (1 worker,
  --sse-heartbeat 0, log level warn, --driver epoll, --pass-clean-end) and `--config FILE`
  (written by this script into a temp dir) or, for `none`, `--upstream`;
- sse-load (CPU 1, --expect-exact): S streams of
  `/sse?events=N&size=B&ts=0&stall_after=0&stall_ms=H&s={i}`: every stream its own URL (its own
  upstream stream and replay ring), a finite flat-out stream of N events (batched by the origin
  up to 16 KiB per write), held H ms after its head so that every stream is open before any
  flows; it reads until every stream has ended (or --deadline);
- then SIGTERM to tether, which drains and exits, and callgrind writes its totals.
The client must have received exactly S x N events, without gap, duplicate or error, every
stream must have ended, and tether must exit 0; anything else fails the run loudly.

What it reports (a Markdown table; --json FILE for every figure): instructions (callgrind Ir,
user space only, tether's whole process) per relayed event, as the *marginal* cost between the
two sizes,
    (Ir(big) - Ir(small)) / (S x big - S x small),
which cancels start-up, config parsing, connection set-up and the drain; the ratio of each
configuration's marginal cost to the first `none` run; and, for orientation, Ir per event of the
big run whole (start-up included). `none` runs --repeat-none times (the repeats last, after the
others): their spread is the noise floor of every ratio.

Why 1500 and 3000 events per stream (not 1000): a replay ring keeps 1024 events by default; up
to event 1024 of a stream nothing is evicted, from there on every event evicts one. With both
sizes past 1024 every counted event is a steady-state event. The rings stay far below
--replay-memory (100 x 1024 events of ~100 bytes).

Determinism: an instruction count does not depend on the machine's speed or load, but it can
depend on scheduling: how many events one read of tether carries (tether, slowed ~50x by
valgrind, mostly finds full socket buffers), how often its fair turns (--turn-slice, 2 ms of
wall time) hand back to the IO loop, how often its loop finds nothing to do. Measured on the
2-core VM: `none` runs within one invocation 0.001-0.006% apart, over three invocations (8 runs)
0.03% (1427.7-1428.2 Ir per event); the totals of same-size runs differ by ~0.02%.

Why --driver epoll: under valgrind 3.19 a thread blocked in io_uring_enter keeps valgrind's
lock, so no other thread runs while the worker waits; tether's signal thread then never sees
the SIGTERM and callgrind never writes its file. The relay's user-space code is the same on
both drivers; the system calls differ, and callgrind does not count the kernel anyway.

Time: ~5 s per run with the defaults (2 s of it the hold), ~10 s per configuration without
per-event rule work, ~20-30 s with it; the default set takes about 1 minute, `all` about 1.5
minutes on this 2-core machine (more when others' builds take the CPUs: the counts do not
change). Progress is printed per run. Every process is bounded: sse-load by
--deadline (+180 s), tether's start by 120 s, its drain by 120 s (then SIGKILL: the run fails).

Builds nothing: `cargo build --release --workspace` first, with the CARGO_TARGET_DIR given here
as --target-dir or in the environment (default ./target). Python 3.11 standard library only.
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402

# ---------------------------------------------------------------------------------------------
# The configurations. ORIGIN is replaced by the origin simulator's host:port.

ROUTE_MAIN = """\
[[route]]
name = "main"
path-prefix = "/"
upstream = ["http://ORIGIN"]
"""

# A second route the workload never reaches (first match wins, so it comes first).
ROUTE_OTHER = """\
[[route]]
name = "other"
path-prefix = "/other"
upstream = ["http://ORIGIN"]
"""

# Rules that cannot apply to the workload's requests (GET /sse?... on route "main"): another
# path prefix, another route, another method. Nine rules, on every hook.
NON_APPLYING = ROUTE_OTHER + "\n" + ROUTE_MAIN + """
[[rule]]
name = "deny-elsewhere"
on = "request"
match = { path-prefix = "/elsewhere" }
action = "deny"

[[rule]]
name = "tag-elsewhere"
on = "request"
match = { path-prefix = "/elsewhere" }
action = "set-header"
header = "X-Rule"
value = "1"

[[rule]]
name = "strip-elsewhere"
on = "response"
match = { path-prefix = "/elsewhere" }
action = "remove-header"
header = "Server"

[[rule]]
name = "tools-elsewhere"
on = "response"
match = { path-prefix = "/elsewhere" }
action = "filter-tools"
tools = ["admin_*"]

[[rule]]
name = "drop-elsewhere"
on = "event"
match = { path-prefix = "/elsewhere", data-contains = "seq" }
action = "drop"

[[rule]]
name = "redact-elsewhere"
on = "event"
match = { path-prefix = "/elsewhere", data-regex = 'x{8,}' }
action = "redact"
replace = "[redacted]"

[[rule]]
name = "deny-other-route"
route = "other"
on = "request"
action = "deny"

[[rule]]
name = "drop-other-route"
route = "other"
on = "event"
action = "drop"

[[rule]]
name = "drop-posts"
on = "event"
match = { method = "POST" }
action = "drop"
"""

# Event rules that apply to every request of the workload, whose prefilters never hit one of
# its events (`{"seq":N,"pad":"xxx..."}`, no `event:` line, no JSON-RPC): looked at per event.
EVENT_NONMATCHING = ROUTE_MAIN + """
[[rule]]
name = "drop-never"
on = "event"
match = { data-contains = "never-in-these-events" }
action = "drop"

[[rule]]
name = "drop-debug"
on = "event"
match = { event-type = "debug" }
action = "drop"

[[rule]]
name = "filter-tools-list"
on = "event"
match = { mcp-result-of = "tools/list" }
action = "filter-tools"
tools = ["admin_*"]

[[rule]]
name = "redact-keys"
on = "event"
match = { data-regex = 'sk-[A-Za-z0-9]{20,}' }
action = "redact"
replace = "[redacted]"
"""

# One rule that rewrites every event (the pad's run of x): the cost of a rewrite.
EVENT_MATCHING = ROUTE_MAIN + """
[[rule]]
name = "redact-pad"
on = "event"
match = { data-regex = 'x{8,}' }
action = "redact"
replace = "[pad]"
"""

CONFIGS = {
    "none": None,
    "routes-only": ROUTE_MAIN,
    "non-applying": NON_APPLYING,
    "event-nonmatching": EVENT_NONMATCHING,
    "event-matching": EVENT_MATCHING,
}
DEFAULT_CONFIGS = "none,routes-only,non-applying,event-nonmatching"


def log(msg):
    print(msg, flush=True)


class Failed(Exception):
    """A run that could not be measured; the message says why (with tether's stderr)."""


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(
        description="callgrind instructions per relayed SSE event, per tether configuration",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--configs", default=DEFAULT_CONFIGS,
                    help="comma list of: " + ", ".join(CONFIGS) + " (and names given by --add); "
                         "`all`: every one")
    ap.add_argument("--add", action="append", default=[], metavar="NAME=FILE",
                    help="an extra (or replacement) configuration: a TOML file, ORIGIN standing "
                         "for the origin's host:port; run it by naming it in --configs")
    ap.add_argument("--repeat-none", type=int, default=2,
                    help="runs of `none` (the first before the others, the repeats after)")
    ap.add_argument("--streams", type=int, default=100, help="concurrent SSE streams")
    ap.add_argument("--small", type=int, default=1500, help="events per stream, small run")
    ap.add_argument("--big", type=int, default=3000, help="events per stream, big run")
    ap.add_argument("--size", type=int, default=bench.EVENT_SIZE,
                    help="size= of the origin: data payload bytes per event")
    ap.add_argument("--extra-query", default="",
                    help="appended to the origin's query, e.g. '&batch=1' (one upstream write "
                         "per event instead of 16 KiB batches)")
    ap.add_argument("--hold-ms", type=int, default=2000,
                    help="each stream waits this long after its head before it flows")
    ap.add_argument("--deadline", type=float, default=600,
                    help="longest a load may run (seconds) before the run fails")
    ap.add_argument("--target-dir",
                    help="cargo target dir holding release/{tether,sse-upstream,sse-load} "
                         "(default: $CARGO_TARGET_DIR, else ./target)")
    ap.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work dir (callgrind files, configs, logs) and print its path")
    a = ap.parse_args()
    if a.big <= a.small or a.small < 1 or a.streams < 1:
        ap.error("need --big > --small >= 1 and --streams >= 1")

    configs = dict(CONFIGS)
    for spec in a.add:
        name, sep, path = spec.partition("=")
        if not sep or not name:
            ap.error(f"--add {spec}: expected NAME=FILE")
        with open(path) as f:
            configs[name] = f.read()
    chosen = []
    for c in [c for c in a.configs.split(",") if c]:
        for name in (list(configs) if c == "all" else [c]):
            if name not in chosen:
                chosen.append(name)
    for c in chosen:
        if c not in configs:
            ap.error(f"unknown configuration {c} (known: {', '.join(configs)})")
    # The run order: none first, the others, then the repeats of none.
    order = []
    if "none" in chosen:
        order.append(("none", 1))
    order += [(c, 1) for c in chosen if c != "none"]
    if "none" in chosen:
        order += [("none", k) for k in range(2, a.repeat_none + 1)]

    target = a.target_dir or os.environ.get("CARGO_TARGET_DIR") or os.path.join(bench.ROOT,
                                                                                "target")
    target = os.path.abspath(target)
    bins = {n: os.path.join(target, "release", n) for n in ("tether", "sse-upstream", "sse-load")}
    for n, p in bins.items():
        if not os.access(p, os.X_OK):
            sys.exit(f"{p} is missing: cargo build --release --workspace "
                     f"(CARGO_TARGET_DIR={target}) first")
    for tool in ("valgrind", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    work = tempfile.mkdtemp(prefix="tether-rules-cost.")
    ns = argparse.Namespace(work=work, tether_extra="", origin_driver="uring", nginx=None,
                            haproxy=None)
    b = bench.Bench(ns)
    b.tether_bin, b.upstream_bin, b.load_bin = bins["tether"], bins["sse-upstream"], bins["sse-load"]

    started = time.monotonic()
    version = version_of(b.tether_bin)
    rev = git_rev()
    total_runs = 2 * len(order)
    log(f"== tether rules cost: {version} ({b.tether_bin}; script at {rev}), "
        f"{a.streams} streams x {a.small} and "
        f"{a.big} events (size={a.size}), {total_runs} callgrind runs; work dir {work}")
    log(f"   order: {', '.join(n if k == 1 else f'{n} (run {k})' for n, k in order)}")
    results = []
    seq = 0
    try:
        for name, k in order:
            label = name if k == 1 else f"{name} (run {k})"
            res = {"config": name, "run": k, "label": label, "config_text": configs[name],
                   "sizes": {}}
            results.append(res)
            for n in (a.small, a.big):
                seq += 1
                log(f"[{seq}/{total_runs}] {label}, {a.streams} x {n} events: ...")
                try:
                    r = run_once(b, a, configs[name], n, f"{name}-{k}-{n}")
                except Failed as e:
                    res["failed"] = str(e)
                    log(f"    FAILED: {e}")
                    if n == a.small:
                        seq += 1  # the big run of a failed configuration is skipped
                    break
                res["sizes"][n] = r
                log(f"    {r['events']:,} events, {r['instructions']:,} Ir "
                    f"({r['instructions'] / r['events']:,.0f} per event whole), "
                    f"load {r['load_s']:.1f} s, run {r['wall_s']:.1f} s")
            if "failed" not in res:
                s, g = res["sizes"][a.small], res["sizes"][a.big]
                res["marginal_ir_per_event"] = ((g["instructions"] - s["instructions"])
                                                / (g["events"] - s["events"]))
                res["whole_ir_per_event_big"] = g["instructions"] / g["events"]
                log(f"    marginal: {res['marginal_ir_per_event']:,.2f} Ir per event")
    except BaseException:
        b.procs.stop_all()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        raise
    b.procs.stop_all()
    elapsed = time.monotonic() - started

    base = next((r for r in results if r["config"] == "none" and "failed" not in r), None)
    for r in results:
        if base is not None and "failed" not in r:
            r["ratio_to_none"] = r["marginal_ir_per_event"] / base["marginal_ir_per_event"]
    nones = [r["marginal_ir_per_event"] for r in results
             if r["config"] == "none" and "failed" not in r]
    spread = (max(nones) - min(nones)) / min(nones) if len(nones) > 1 else None

    cmd = "scripts/bench/rules_cost.py " + " ".join(sys.argv[1:])
    text = table(results, a, f"{version}, {b.tether_bin}", rev, cmd, spread, elapsed)
    print()
    print(text)
    if a.json:
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": cmd.strip(), "tether": version, "tether_binary": b.tether_bin,
            "script_commit": rev,
            "workload": {"streams": a.streams, "small": a.small, "big": a.big, "size": a.size,
                         "hold_ms": a.hold_ms, "query": query(a, "N"),
                         "tether_flags": TETHER_FLAGS},
            "baseline": "first none run" if base else None,
            "none_spread": spread, "elapsed_s": round(elapsed), "configs": results,
        }
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    if a.keep:
        log(f"(work dir kept: {work})")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if any("failed" in r for r in results):
        sys.exit(1)


# tether's flags besides --bind and --upstream/--config. --driver epoll: under valgrind, a
# thread blocked in io_uring_enter keeps valgrind's big lock (valgrind 3.19), so the other
# threads (the signal thread among them) never run while the worker waits: SIGTERM would never
# be handled. The relay's user-space code is the same on both drivers; the syscalls differ.
# --pass-clean-end: the origin's clean end of a finite stream ends the client's stream, instead
# of a resume that finds nothing new and gives up after --reconnect-timeout (30 s).
TETHER_FLAGS = ["--workers", "1", "--cpus", bench.PROXY_CPU, "--driver", "epoll",
                "--max-connections", "12000", "--sse-heartbeat", "0", "--pass-clean-end",
                "--log-level", "warn"]


def query(a, n):
    return (f"/sse?events={n}&size={a.size}&ts=0&stall_after=0&stall_ms={a.hold_ms}"
            f"{a.extra_query}&s={{i}}")


def run_once(b, a, config_text, n, tag):
    """One measurement: fresh origin, tether under callgrind, the load; returns the figures."""
    t0 = time.monotonic()
    origin = bench.Peer(b, "direct", {})
    proxy = load = None
    try:
        try:
            origin.start()
        except bench.Failure as e:
            raise Failed(f"the origin: {e}")
        port = bench.free_port()
        cg_out = os.path.join(b.work, f"callgrind.{tag}.out")
        flags = ["--bind", f"127.0.0.1:{port}"] + TETHER_FLAGS
        if config_text is None:
            flags += ["--upstream", f"http://{origin.origin_addr}"]
        else:
            conf = os.path.join(b.work, f"{tag}.toml")
            with open(conf, "w") as f:
                f.write(config_text.replace("ORIGIN", origin.origin_addr))
            flags += ["--config", conf]
            check = subprocess.run([b.tether_bin, "check"] + flags,
                                   capture_output=True, text=True, timeout=30)
            if check.returncode != 0:
                raise Failed(f"`tether check --config` refused the file (status "
                             f"{check.returncode}):\n{indent(check.stderr + check.stdout)}")
        argv = [b.tether_bin, "reverse"] + flags
        vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg_out}",
              "--dump-line=no"]
        name = f"tether-{tag}"
        proxy = b.procs.start(name, vg + argv, bench.PROXY_CPU)
        err = os.path.join(b.work, name + ".err")
        try:
            bench.wait_answer(port, proxy, "tether under callgrind", None, timeout=120)
        except bench.Failure as e:
            raise Failed(f"{e}; tether's stderr:\n{indent(tether_lines(err))}")

        out = os.path.join(b.work, f"load-{tag}.json")
        largv = [b.load_bin, "--url", f"http://127.0.0.1:{port}{query(a, n)}",
                 "--streams", str(a.streams), "--duration", f"{a.deadline:g}s", "--warmup", "0",
                 "--threads", "1", "--quiet", "--expect-exact", "--head-timeout", "60s",
                 "--open-timeout", "120s", "--json", out, "--proxy-pid", str(proxy.pid)]
        tl = time.monotonic()
        load = b.procs.start(f"load-{tag}", largv, bench.LOAD_CPU)
        try:
            b.procs.wait(load, a.deadline + 180)
        except subprocess.TimeoutExpired:
            raise Failed(f"sse-load did not finish within {a.deadline + 180:.0f} s")
        load_s = time.monotonic() - tl
        try:
            with open(out) as f:
                r = json.load(f)
        except (OSError, ValueError):
            raise Failed(f"sse-load (status {load.returncode}) wrote no report: "
                         f"{bench.tail(out[:-5] + '.err')}")
        want = a.streams * n
        problems = []
        if load.returncode != 0:
            problems.append(f"sse-load exited with {load.returncode}: "
                            f"{bench.tail(out[:-5] + '.err', 5).strip()}")
        if r["events_total"] != want:
            problems.append(f"the client received {r['events_total']:,} events, not "
                            f"{a.streams} x {n} = {want:,}")
        if r["ended_streams"] != a.streams:
            problems.append(f"{r['ended_streams']} of {a.streams} streams ended (deadline "
                            f"{a.deadline:g} s?)")
        for k in ("gaps", "duplicates", "errors"):
            if r[k]:
                problems.append(f"{k}: {r[k]} {r.get('errors_by_kind') if k == 'errors' else ''}")
        if proxy.poll() is not None:
            problems.append(f"tether exited during the load ({proxy.returncode})")
        if problems:
            raise Failed("; ".join(problems) + f"\ntether's stderr:\n{indent(tether_lines(err))}")

        b.procs.stop(proxy, timeout=120)  # SIGTERM: tether drains, callgrind writes its file
        status = proxy.returncode
        ir = callgrind_total(cg_out)
        if ir is None:
            raise Failed(f"no callgrind totals in {cg_out} (tether exited with {status}):\n"
                         f"{indent(bench.tail(err, 10))}")
        if status != 0:
            raise Failed(f"tether exited with {status} after SIGTERM:\n"
                         f"{indent(tether_lines(err))}")
        return {"events_per_stream": n, "events": r["events_total"], "instructions": ir,
                "load_s": round(load_s, 2), "wall_s": round(time.monotonic() - t0, 2),
                "tether_exit": status}
    finally:
        b.procs.stop(load)
        b.procs.stop(proxy, timeout=30)
        origin.stop()


def callgrind_total(path):
    """Ir of the whole process, from the `totals:` (or `summary:`) line of callgrind's file."""
    try:
        with open(path) as f:
            found = None
            for line in f:
                if line.startswith(("totals:", "summary:")):
                    found = int(line.split()[1])
                    if line.startswith("totals:"):
                        return found
            return found
    except (OSError, ValueError, IndexError):
        return None


def tether_lines(err_path, n=12):
    """tether's own stderr lines (valgrind's ==PID== banner left out)."""
    try:
        with open(err_path, errors="replace") as f:
            lines = [ln.rstrip() for ln in f if not ln.startswith("==")]
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def indent(text):
    return "\n".join("    " + ln for ln in text.strip().splitlines())


def version_of(binary):
    try:
        p = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return p.stdout.strip() or p.stderr.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "tether (version unknown)"


def git_rev():
    try:
        p = subprocess.run(["git", "-C", bench.ROOT, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", bench.ROOT, "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return p.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def table(results, a, version, rev, cmd, spread, elapsed):
    lines = [
        f"tether rules cost: callgrind Ir per relayed SSE event; {version}; script at {rev}; "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"`{cmd.strip()}`: {a.streams} streams of `{query(a, 'N')}`, N = {a.small} and {a.big}; "
        f"tether {' '.join(TETHER_FLAGS)} under callgrind; {elapsed / 60:.1f} min",
        "",
        "| configuration | Ir (N = small) | Ir (N = big) | Ir per event, marginal | "
        "÷ none | Ir per event, big run whole |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "failed" in r:
            why = " ".join(ln.strip() for ln in r["failed"].splitlines()[:2])
            why = (why[:197] + "...") if len(why) > 200 else why
            lines.append(f"| {r['label']} | FAILED: {why.replace('|', '/')} | | | | |")
            continue
        s, g = r["sizes"][a.small], r["sizes"][a.big]
        ratio = f"{r['ratio_to_none']:.4f}" if "ratio_to_none" in r else ""
        lines.append(f"| {r['label']} | {s['instructions']:,} | {g['instructions']:,} | "
                     f"{r['marginal_ir_per_event']:,.2f} | {ratio} | "
                     f"{r['whole_ir_per_event_big']:,.1f} |")
    lines.append("")
    lines.append("Marginal = (Ir(big) - Ir(small)) / (events(big) - events(small)); every run "
                 f"relayed exactly streams x N events. ÷ none: against the first `none` run.")
    if spread is not None:
        lines.append(f"Repeated `none` runs differ by {spread:.4%} (max - min over min): "
                     "ratios closer to 1 than that are not resolved.")
    failed = [r for r in results if "failed" in r]
    for r in failed:
        lines += ["", f"{r['label']} failed:", r["failed"]]
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
