#!/usr/bin/env python3
"""Turns the report of scripts/bench/run.py into the markdown table of perf/RESULTS.md.

usage: report.py REPORT.json  -> markdown on stdout. Standard library only.
"""
import json
import sys

PEERS = ["direct", "tether", "nginx", "haproxy"]
NAMES = {"direct": "direct", "tether": "tether", "nginx": "nginx", "haproxy": "HAProxy"}

# (scenario, key, label, format, better) -- better: "hi", "lo" or None (no ratio).
ROWS = [
    ("batch1", "events_per_s", "1a. one write per event: events/s (whole box)", "{:,.0f}", "hi"),
    ("batch1", "events_per_proxy_cpu_s", "1a. events per proxy CPU-second", "{:,.0f}", "hi"),
    ("batch1", "proxy_cpu_s_per_m_events", "1a. proxy CPU-s per million events", "{:.2f}", "lo"),
    ("batch1", "proxy_cpu_share", "1a. proxy CPU use (share of its core)", "{:.0%}", None),
    ("batch1", "proxy_rss_mb", "1a. proxy RSS at the end of the window (MB)", "{:.1f}", "lo"),
    ("batch1", "event_bytes", "1a. SSE bytes per event (measured)", "{:.0f}", None),
    ("batch1-url", "events_per_s", "1a-url. own URL per stream: events/s (whole box)", "{:,.0f}",
     "hi"),
    ("batch1-url", "events_per_proxy_cpu_s", "1a-url. events per proxy CPU-second", "{:,.0f}",
     "hi"),
    ("batch1-url", "proxy_cpu_s_per_m_events", "1a-url. proxy CPU-s per million events", "{:.2f}",
     "lo"),
    ("batch1-url", "proxy_cpu_share", "1a-url. proxy CPU use (share of its core)", "{:.0%}", None),
    ("batch1-url", "proxy_rss_mb", "1a-url. proxy RSS at the end of the window (MB)", "{:.1f}",
     "lo"),
    ("batch1-url", "event_bytes", "1a-url. SSE bytes per event (measured)", "{:.0f}", None),
    ("batched", "events_per_s", "1b. batched: events/s (whole box)", "{:,.0f}", "hi"),
    ("batched", "events_per_proxy_cpu_s", "1b. events per proxy CPU-second", "{:,.0f}", "hi"),
    ("batched", "proxy_cpu_s_per_m_events", "1b. proxy CPU-s per million events", "{:.3f}", "lo"),
    ("batched", "proxy_cpu_share", "1b. proxy CPU use (share of its core)", "{:.0%}", None),
    ("batched", "proxy_rss_mb", "1b. proxy RSS at the end of the window (MB)", "{:.1f}", "lo"),
    ("batched", "event_bytes", "1b. SSE bytes per event (measured)", "{:.0f}", None),
    ("batched-url", "events_per_s", "1b-url. batched, own URL per stream: events/s (whole box)",
     "{:,.0f}", "hi"),
    ("batched-url", "events_per_proxy_cpu_s", "1b-url. events per proxy CPU-second", "{:,.0f}",
     "hi"),
    ("batched-url", "proxy_cpu_s_per_m_events", "1b-url. proxy CPU-s per million events",
     "{:.3f}", "lo"),
    ("batched-url", "proxy_cpu_share", "1b-url. proxy CPU use (share of its core)", "{:.0%}",
     None),
    ("batched-url", "proxy_rss_mb", "1b-url. proxy RSS at the end of the window (MB)", "{:.1f}",
     "lo"),
    ("batched-url", "event_bytes", "1b-url. SSE bytes per event (measured)", "{:.0f}", None),
    ("latency", "events_per_s", "2. events/s delivered", "{:,.0f}", None),
    ("latency", "latency_p50_ms", "2. latency p50 (ms)", "{:.3f}", "lo"),
    ("latency", "latency_p99_ms", "2. latency p99 (ms)", "{:.3f}", "lo"),
    ("latency", "added_p50_ms", "2. added p50 over direct (ms)", "{:+.3f}", None),
    ("latency", "added_p99_ms", "2. added p99 over direct (ms)", "{:+.3f}", None),
    ("latency", "proxy_cpu_share", "2. proxy CPU use (share of its core)", "{:.1%}", "lo"),
    ("latency", "proxy_cpu_us_per_event",
     "2. proxy CPU µs per event (not saturated: each event its own wake-up)", "{:.2f}", "lo"),
    ("latency", "event_bytes", "2. SSE bytes per event (measured)", "{:.0f}", None),
    ("idle", "established", "3. idle streams held", "{:,.0f}", None),
    ("idle", "rss_per_stream_bytes", "3. proxy RSS per idle stream (bytes)", "{:,.0f}", "lo"),
    ("plain", "req_per_s", "4. keep-alive req/s", "{:,.0f}", "hi"),
    ("plain", "proxy_cpu_us_per_req", "4. proxy CPU µs per request", "{:.2f}", "lo"),
    ("drops", "gap_p50_ms", "5. delivery gap at a drop p50 (ms)", "{:.2f}", "lo"),
    ("drops", "gap_p99_ms", "5. delivery gap at a drop p99 (ms)", "{:.2f}", "lo"),
    ("drops", "lost", "5. lost events", "{:,.0f}", None),
    ("drops", "duplicates", "5. duplicated events", "{:,.0f}", None),
    ("drops", "load_client_reconnects", "5. client reconnections (sse-load)", "{:,.0f}", None),
    ("drops", "probe_client_reconnects", "5. client reconnections (probe)", "{:,.0f}", None),
    ("ttfe", "ttfe_p50_ms", "6. time to first event under load p50 (ms)", "{:.2f}", "lo"),
    ("ttfe", "ttfe_p99_ms", "6. time to first event p99 (ms)", "{:.2f}", "lo"),
    ("ttfe", "ttfe_max_ms", "6. time to first event max (ms)", "{:.2f}", "lo"),
    ("ttfe", "ttfe_head_p50_ms", "6. time to response head p50 (ms)", "{:.2f}", "lo"),
    ("ttfe", "ttfe_failed", "6. probes without a first event", "{:,.0f}", None),
    ("ttfe", "load_proxy_cpu_share", "6. proxy CPU use during it (share of its core)", "{:.0%}",
     None),
    ("fanout", "events_per_s", "7. fan-out, one URL: events/s delivered (whole box)", "{:,.0f}",
     "hi"),
    ("fanout", "proxy_cpu_s_per_m_events", "7. proxy CPU-s per million delivered events",
     "{:.2f}", "lo"),
    ("fanout", "events_per_proxy_cpu_s", "7. delivered events per proxy CPU-second", "{:,.0f}",
     "hi"),
    ("fanout", "proxy_cpu_share", "7. proxy CPU use (share of its core)", "{:.0%}", None),
    ("fanout", "proxy_rss_mb", "7. proxy RSS at the end of the window (MB)", "{:.1f}", "lo"),
    ("fanout", "upstream_streams", "7. upstream SSE streams the origin served", "{:,.0f}", None),
    ("fanout", "latency_p50_ms", "7. latency p50 (ms)", "{:.2f}", "lo"),
    ("fanout", "latency_p99_ms", "7. latency p99 (ms)", "{:.2f}", "lo"),
    ("fanout", "lost", "7. lost events, all clients (from each one's first event)", "{:,.0f}",
     None),
    ("fanout", "duplicates", "7. duplicated events, all clients", "{:,.0f}", None),
    ("fanout", "clients_with_loss", "7. clients that lost an event", "{:,.0f}", None),
    ("fanout", "clients_with_duplicates", "7. clients that got an event twice", "{:,.0f}",
     None),
    ("fanout", "ended_streams", "7. clients whose stream ended (cut or closed)", "{:,.0f}",
     None),
    # Client TLS (issue 15; only with --only tls): the same proxies serving HTTP/1.1 over TLS
    # to the clients, plain HTTP to the origin.
    ("tls-plain", "req_per_s", "4t. TLS keep-alive req/s", "{:,.0f}", "hi"),
    ("tls-plain", "proxy_cpu_us_per_req", "4t. TLS: proxy CPU µs per request", "{:.2f}", "lo"),
    ("tls-1a", "events_per_s", "1t. SSE over TLS, one write per event: events/s (whole box)",
     "{:,.0f}", "hi"),
    ("tls-1a", "events_per_proxy_cpu_s", "1t. TLS: events per proxy CPU-second", "{:,.0f}",
     "hi"),
    ("tls-1a", "proxy_cpu_s_per_m_events", "1t. TLS: proxy CPU-s per million events", "{:.2f}",
     "lo"),
    ("tls-1a", "proxy_cpu_share", "1t. TLS: proxy CPU use (share of its core)", "{:.0%}", None),
    ("tls-1a", "load_cpu_share", "1t. TLS: load generator CPU use (share of its core)",
     "{:.0%}", None),
    ("tls-1a", "proxy_rss_mb", "1t. TLS: proxy RSS at the end of the window (MB)", "{:.1f}",
     "lo"),
    ("tls-1a", "gaps", "1t. TLS: lost events", "{:,.0f}", None),
    ("tls-1a", "duplicates", "1t. TLS: duplicated events", "{:,.0f}", None),
    ("tls-idle", "established", "3t. idle TLS streams held", "{:,.0f}", None),
    ("tls-idle", "rss_per_stream_bytes", "3t. proxy RSS per idle TLS stream (bytes)",
     "{:,.0f}", "lo"),
    ("tls-idle", "tls_resumed", "3t. of their handshakes, resumed", "{:,.0f}", None),
    ("tls-idle", "open_s", "3t. seconds to open them all", "{:.1f}", "lo"),
    # HTTP/2 (issue 15; with --only tls or h2): 1t and 3t with 100 streams per h2 connection.
    ("h2-1a", "events_per_s", "1h. SSE over HTTP/2, one write per event: events/s (whole box)",
     "{:,.0f}", "hi"),
    ("h2-1a", "events_per_proxy_cpu_s", "1h. h2: events per proxy CPU-second", "{:,.0f}", "hi"),
    ("h2-1a", "proxy_cpu_s_per_m_events", "1h. h2: proxy CPU-s per million events", "{:.2f}",
     "lo"),
    ("h2-1a", "proxy_cpu_share", "1h. h2: proxy CPU use (share of its core)", "{:.0%}", None),
    ("h2-1a", "load_cpu_share", "1h. h2: load generator CPU use (share of its core)", "{:.0%}",
     None),
    ("h2-1a", "proxy_rss_mb", "1h. h2: proxy RSS at the end of the window (MB)", "{:.1f}", "lo"),
    ("h2-1a", "gaps", "1h. h2: lost events", "{:,.0f}", None),
    ("h2-1a", "duplicates", "1h. h2: duplicated events", "{:,.0f}", None),
    ("h2-1a", "h2_connections", "1h. h2 connections (ALPN h2, checked)", "{:,.0f}", None),
    ("h2-idle", "established", "3h. idle HTTP/2 streams held", "{:,.0f}", None),
    ("h2-idle", "h2_connections", "3h. on h2 connections (ALPN h2, checked)", "{:,.0f}", None),
    ("h2-idle", "rss_per_stream_bytes", "3h. proxy RSS per idle HTTP/2 stream (bytes)",
     "{:,.0f}", "lo"),
    ("h2-idle", "open_s", "3h. seconds to open them all", "{:.1f}", "lo"),
]


def fmt(v, f):
    if v is None:
        return "-"
    try:
        return f.format(v)
    except (ValueError, TypeError):
        return str(v)


ORIGIN_LABELS = {"sse-upstream": "sse-upstream origin", "sse-tokio": "tokio origin"}


def variant_rows(r):
    """ROWS, each scenario's block repeated for every origin and event size the run measured
    it with (run.py's "variants": key -> scenario, origin, event_bytes), labelled
    "1a [tokio origin, 32 B]. ..." (a scenario measured only with sse-upstream at 100 B keeps
    its old label); reports without variants give ROWS unchanged. The
    scenario's own key is sse-upstream at ~100 B, the figure earlier runs reported."""
    variants = r.get("variants") or {}
    by_sc = {}
    for key, v in variants.items():
        by_sc.setdefault(v["scenario"], []).append((key, v))
    out = []
    blocks = []  # consecutive ROWS of one scenario, in order
    for row in ROWS:
        if blocks and blocks[-1][0][0] == row[0]:
            blocks[-1].append(row)
        else:
            blocks.append([row])
    for block in blocks:
        sc = block[0][0]
        if sc not in by_sc:
            out += [row + (row[0],) for row in block]
            continue
        # A scenario's rows are labelled unless it ran with sse-upstream at 100 B alone (as
        # every scenario did before the second origin, and the others still do).
        labelled = any(key != sc for key, _ in by_sc[sc])
        for key, v in by_sc[sc]:
            tag = f" [{ORIGIN_LABELS.get(v['origin'], v['origin'])}, {v['event_bytes']} B]"
            for _, k, label, f, better in block:
                head, _, rest = label.partition(". ")
                out.append((key, k, f"{head}{tag if labelled else ''}. {rest}", f, better, sc))
    return out


def table(r):
    med = r["medians"]
    lines = ["| scenario: figure | direct | tether | nginx | HAProxy | tether ÷ nginx | "
             "HAProxy ÷ nginx |", "|---|---:|---:|---:|---:|---:|---:|"]
    for sc, key, label, f, better, _base in variant_rows(r):
        m = med.get(sc)
        if not isinstance(m, dict) or "skipped" in m:
            continue
        vals = {p: m.get(p, {}).get(key) for p in PEERS}
        if all(v is None for v in vals.values()):
            continue
        cells = [fmt(vals[p], f) for p in PEERS]
        ratios = []
        for p in ("tether", "haproxy"):
            n, v = vals["nginx"], vals[p]
            ratios.append(f"{v / n:.2f}x" if better and v is not None and n else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def failures(r):
    out = []
    for sc, by_peer in r["runs"].items():
        if "skipped" in by_peer:
            out.append(f"- {sc}: skipped ({by_peer['skipped']})")
            continue
        for p, runs in by_peer.items():
            for i, run in enumerate(runs):
                if "failed" in run:
                    msg = run["failed"].splitlines()[0]
                    out.append(f"- {sc}, {p}, rep {i + 1}: failed: {msg}")
                elif run.get("ttfe_failed"):
                    out.append(f"- {sc}, {p}, rep {i + 1}: {run['ttfe_failed']} of "
                               f"{run['ttfe_failed'] + run['ttfe_ok']} probes got no first event "
                               f"(first: {run.get('ttfe_first_failure')}); percentiles are over "
                               f"the others")
                if sc.startswith(("tls-", "h2-")) and (run.get("gaps") or run.get("duplicates")):
                    out.append(f"- {sc}, {p}, rep {i + 1}: {run.get('gaps')} lost and "
                               f"{run.get('duplicates')} duplicated events")
                if "failed" not in run and run.get("contended"):
                    out.append(f"- {sc}, {p}, rep {i + 1}: other processes took "
                               f"{run['others_cpu0']:.0%} of CPU 0 and {run['others_cpu1']:.0%} "
                               f"of CPU 1 during it (kept after {r['config'].get('retries', 0)} "
                               f"retries)")
    return out


# The targets of the issue (reported against, not tests): (name, goal, unit, better).
GOALS = {
    "cpu_batch1": ("events per proxy CPU-second, one write per event, x nginx", 1.10, "x", "hi"),
    "cpu_batch1_url": ("events per proxy CPU-second, one write per event, own URL per stream, "
                       "x nginx", 1.10, "x", "hi"),
    "cpu_batched": ("events per proxy CPU-second, batched writes, x nginx", 1.15, "x", "hi"),
    "cpu_batched_url": ("events per proxy CPU-second, batched writes, own URL per stream, "
                        "x nginx", 1.15, "x", "hi"),
    "rss": ("RSS per idle stream", 2048, "bytes", "lo"),
    "added_p99": ("added p99 latency over direct, 10k events/s over 1000 streams", 0.3, "ms", "lo"),
    "rps": ("keep-alive req/s x nginx", 1.5, "x", "hi"),
    "gap": ("reconnection gap p99, with 0 lost and 0 duplicated", 10.0, "ms", "lo"),
    # Issue 9, "fair turns": p99 under 20 ms, and better than both peers.
    "ttfe": ("time to first event p99 under 1000 flat-out streams", 20.0, "ms", "lo"),
    "ttfe_peers": ("time to first event p99 ÷ the better peer's (below 1: better than both)",
                   1.0, "x", "lo"),
    # Fan-out: one upstream stream shared by every client (tether --coalesce) against one
    # upstream connection per client (nginx); met only with no lost or duplicated event.
    "cpu_fanout": ("proxy CPU per delivered event, one URL fanned out to many clients, "
                   "x nginx", 0.5, "x", "lo"),
}


def per_rep(r, sc, fn):
    """fn(rep_runs_by_peer) for every repetition where the runs it needs succeeded."""
    runs = r["runs"].get(sc, {})
    if not isinstance(runs, dict) or "skipped" in runs:
        return []
    n = max((len(v) for v in runs.values()), default=0)
    out = []
    for i in range(n):
        rep = {p: v[i] for p, v in runs.items() if i < len(v) and "failed" not in v[i]}
        try:
            v = fn(rep)
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        if v is not None:
            out.append(v)
    return out


def targets(r):
    """Each target: the value from the medians, the range of the same figure over the
    repetitions (paired within a repetition for ratios), and the verdict."""
    med = r["medians"]

    def m(sc, peer, key):
        v = med.get(sc)
        return v.get(peer, {}).get(key) if isinstance(v, dict) else None

    def ratio(a, b):
        return a / b if a is not None and b else None

    def best_peer(value_of, missing=KeyError):
        """The lower figure of nginx and HAProxy; when one is missing: None, or raises
        `missing` (per_rep skips a repetition on KeyError)."""
        v = [value_of("nginx"), value_of("haproxy")]
        if None in v:
            if missing is None:
                return None
            raise missing("peer figure missing")
        return min(v)

    drops_ok = [rep["tether"]["lost"] == 0 and rep["tether"]["duplicates"] == 0
                for rep in [{p: v[i] for p, v in r["runs"].get("drops", {}).items()
                             if isinstance(v, list) and i < len(v)}
                            for i in range(max((len(v) for v in r["runs"].get("drops", {}).values()
                                                if isinstance(v, list)), default=0))]
                if "tether" in rep and "failed" not in rep["tether"]]
    fanout_ok = [run.get("lost") == 0 and run.get("duplicates") == 0
                 for run in r["runs"].get("fanout", {}).get("tether", [])
                 if isinstance(run, dict) and "failed" not in run]
    cpu = "events_per_proxy_cpu_s"
    per_delivered = "proxy_cpu_s_per_m_events"
    rows = {
        "cpu_batch1": (ratio(m("batch1", "tether", cpu), m("batch1", "nginx", cpu)),
                       per_rep(r, "batch1", lambda x: x["tether"][cpu] / x["nginx"][cpu])),
        "cpu_batch1_url": (ratio(m("batch1-url", "tether", cpu), m("batch1-url", "nginx", cpu)),
                           per_rep(r, "batch1-url",
                                   lambda x: x["tether"][cpu] / x["nginx"][cpu])),
        "cpu_batched": (ratio(m("batched", "tether", cpu), m("batched", "nginx", cpu)),
                        per_rep(r, "batched", lambda x: x["tether"][cpu] / x["nginx"][cpu])),
        "cpu_batched_url": (ratio(m("batched-url", "tether", cpu),
                                  m("batched-url", "nginx", cpu)),
                            per_rep(r, "batched-url",
                                    lambda x: x["tether"][cpu] / x["nginx"][cpu])),
        "rss": (m("idle", "tether", "rss_per_stream_bytes"),
                per_rep(r, "idle", lambda x: x["tether"]["rss_per_stream_bytes"])),
        "added_p99": (m("latency", "tether", "added_p99_ms"),
                      per_rep(r, "latency", lambda x: x["tether"]["latency_p99_ms"]
                              - x["direct"]["latency_p99_ms"])),
        "rps": (ratio(m("plain", "tether", "req_per_s"), m("plain", "nginx", "req_per_s")),
                per_rep(r, "plain", lambda x: x["tether"]["req_per_s"] / x["nginx"]["req_per_s"])),
        "gap": (m("drops", "tether", "gap_p99_ms"),
                per_rep(r, "drops", lambda x: x["tether"]["gap_p99_ms"])),
        "ttfe": (m("ttfe", "tether", "ttfe_p99_ms"),
                 per_rep(r, "ttfe", lambda x: x["tether"]["ttfe_p99_ms"])),
        "ttfe_peers": (ratio(m("ttfe", "tether", "ttfe_p99_ms"),
                             best_peer(lambda p: m("ttfe", p, "ttfe_p99_ms"), missing=None)),
                       per_rep(r, "ttfe", lambda x: x["tether"]["ttfe_p99_ms"] / best_peer(
                           lambda p: x[p]["ttfe_p99_ms"]))),
        "cpu_fanout": (ratio(m("fanout", "tether", per_delivered),
                             m("fanout", "nginx", per_delivered)),
                       per_rep(r, "fanout", lambda x: x["tether"][per_delivered]
                               / x["nginx"][per_delivered])),
    }
    out = []
    for key, (name, goal, unit, better) in GOALS.items():
        value, reps = rows[key]

        def ok(v):
            return (meets(v, goal, better) and (key != "gap" or all(drops_ok))
                    and (key != "cpu_fanout" or all(fanout_ok)))

        t = {"key": key, "target": name, "goal": goal, "unit": unit, "better": better,
             "value": value,
             "range": [min(reps), max(reps)] if reps else None,
             "met": None if value is None else ok(value)}
        t["every_rep"] = None if not reps else all(ok(v) for v in reps)
        if key == "cpu_fanout" and value is not None:
            notes = []
            if r.get("tether_coalesce") is False:
                notes.append("tether ran without --coalesce (not in this build)")
            if not all(fanout_ok):
                notes.append("tether lost or repeated events")
            if notes:
                t["note"] = "; ".join(notes)
        out.append(t)
    return out


def meets(v, goal, better):
    return v >= goal if better == "hi" else v <= goal


def targets_table(r):
    out = ["| target (tether) | goal | median | range over reps | verdict |",
           "|---|---:|---:|---:|---|"]
    for t in targets(r):
        unit = t["unit"]

        def show(v):
            if unit == "x":
                return f"{v:.2f}x"
            if unit == "bytes":
                return f"{v:,.0f} B"
            return f"{v:+.2f} ms" if t["key"] == "added_p99" else f"{v:.2f} ms"

        better = t.get("better", "hi" if unit == "x" else "lo")
        goal = f"{'≥' if better == 'hi' else '≤'} " + (
            f"{t['goal']}x" if unit == "x" else
            f"{t['goal']:,} {'B' if unit == 'bytes' else unit}")
        if t["value"] is None:
            out.append(f"| {t['target']} | {goal} | - | - | not measured |")
            continue
        rng = f"{show(t['range'][0])} .. {show(t['range'][1])}" if t["range"] else "-"
        if t["met"] and t["every_rep"]:
            verdict = "met"
        elif t["met"]:
            verdict = "met by the median only (within the noise)"
        elif t["every_rep"] is False and t["range"] and any(
                meets(v, t["goal"], better) for v in t["range"]):
            verdict = "**missed** (some reps meet it)"
        else:
            verdict = "**missed**"
        if t.get("note"):
            verdict += f" ({t['note']})"
        out.append(f"| {t['target']} | {goal} | {show(t['value'])} | {rng} | {verdict} |")
    return "\n".join(out)


def new_scenarios(r):
    """How the scenarios added for issue 9 were run (only those in this run)."""
    ran = set(r["runs"])
    out = ""
    if ran & {"batch1-url", "batched-url"}:
        out += (" 1a-url/1b-url: as 1a/1b with `&s={i}`, every stream its own URL (in tether "
                "one replay ring per stream; 1a and 1b share one URL and one ring).")
    if ran & {"batch1", "batched", "batch1-url", "batched-url"} and "ttfe_clients" in r["config"]:
        out += (" Proxy RSS of 1a/1b: VmRSS at the end of the window, with the streams still "
                "open (sampled by sse-load).")
    if "ttfe" in ran:
        n = r["config"].get("ttfe_clients", 50)
        out += (f" Time to first event (6): 1a's load and, from the start of the window, {n} "
                f"new clients one after another, each to its own URL "
                f"(`/sse?events=0&rate=1&probe={{i}}`: the first event is sent at once), timed "
                f"from the start of its TCP connect to its first complete event, then closed "
                f"(RST) before the next starts; per peer the median over repetitions of each "
                f"repetition's p50, p99 (interpolated between the two largest samples when "
                f"there are 50) and max.")
    if ran & {"tls-plain", "tls-1a", "tls-idle"}:
        checks = r.get("checks", {})
        negotiated = "; ".join(
            f"{NAMES[p]} {checks[p]['tls_version']} {checks[p].get('tls_cipher', '')}".strip()
            for p in ("tether", "nginx", "haproxy") if "tls_version" in checks.get(p, {}))
        out += (" Client TLS (4t, 1t, 3t): as 4, 1a and 3, the clients speaking HTTP/1.1 over "
                "TLS to the proxy (plain HTTP to the origin); every proxy serves the same "
                "certificate, made for the run by openssl (an ECDSA P-256 leaf for "
                "`localhost`, signed by a P-256 CA made with it), its other TLS settings as "
                "shipped (nginx: `ssl_protocols TLSv1.2 TLSv1.3` as Debian's nginx.conf, "
                "tickets on, no shared session cache; HAProxy: 20000-entry session cache, "
                "tickets on; tether: rustls, tickets). Clients: `wrk https://localhost:PORT/"
                "small` (OpenSSL 3.0) and `sse-load --url https://localhost:PORT/... --ca "
                "ca.pem` (rustls, key exchange X25519 as OpenSSL's, session resumption). "
                f"Negotiated with each (checked before measuring): {negotiated or '-'}.")
    if ran & {"h2-1a", "h2-idle"}:
        checks = r.get("checks", {})
        chose = ", ".join(f"{NAMES[p]} {checks[p]['h2_alpn']}" for p in ("tether", "nginx", "haproxy")
                          if "h2_alpn" in checks.get(p, {}))
        n = r["config"].get("h2_idle_streams", 6000)
        out += (" HTTP/2 (1h, 3h): as 1t and 3t, the clients speaking HTTP/2 over TLS, 100 "
                "streams per connection (`sse-load --h2-streams-per-conn 100`: h2 on "
                "tokio-rustls, 1000 streams on 10 connections for 1h, "
                f"{n} on {-(-n // 100)} for 3h); the proxies offer h2 in ALPN for these only "
                "(nginx `listen ... ssl http2`, HAProxy `alpn h2,http/1.1`, tether always), "
                "plain HTTP/1.1 to the origin. Offered only h2, each chose (checked before "
                f"measuring): {chose or '-'}; every sse-load connection checks its ALPN outcome "
                "too.")
    if "fanout" in ran:
        n = r["config"].get("fanout_clients", 1000)
        rate = r["config"].get("fanout_rate", 100)
        how = ("tether with `--coalesce` (one upstream stream for all of them; late clients "
               "start at the live head)" if r.get("tether_coalesce") else
               "tether WITHOUT `--coalesce` (its binary has no such flag yet: one upstream "
               "connection per client, like the others)")
        out += (f" Fan-out (7): {n} clients of one URL, one identity "
                f"(`/sse?events=0&size={r['event_size_param']}&rate={rate:g}&batch=1`), each "
                f"upstream connection paced at {rate:g} events/s; {how}; nginx and HAProxy open "
                f"one upstream connection per client. CPU per million events delivered, summed "
                f"over the clients; lost and duplicated events counted per client from its "
                f"first event on (`sse-load --join-live`).")
    return out


def origins_note(r):
    """How the second origin and the event sizes were used, when they were."""
    c = r["config"]
    origins, sizes = c.get("origins") or ["sse-upstream"], c.get("event_sizes") or [100]
    if origins == ["sse-upstream"] and sizes == [100]:
        return ""
    return (f"; for 1a, 1a-url, 1b, 1b-url and 2 also, or instead, as asked: origins "
            f"{', '.join(f'`{o}`' for o in origins)} (sse-tokio: tokio, 1 thread, epoll, every "
            f"due event back to back, one write each in 1a; perf/README.md), events of "
            f"{', '.join(f'{n} B' for n in sizes)} on the wire (`size=` B-20; under ~57 B "
            f"without `ts_us`, so no latency; scenario 2 keeps `ts_us`)")


def markdown(r):
    m, c = r["machine"], r["config"]
    v = r["versions"]
    s = r["settings"]
    parts = [
        f"## {r['date']}: end-to-end comparison (`scripts/bench.sh`)",
        "",
        f"Command: `{r['command']}`. Machine: {m['cores']} cores, {m['cpu']}, Linux "
        f"{m['kernel']} (load average at the end {m['load_average_at_end']}). "
        f"{v['tether']}; {v['nginx']}; {v['haproxy']}; {v['wrk']}.",
        "",
        f"Proxy alone on {r['pinning']['proxy']} with one worker/thread (taskset on every "
        f"thread); origin (`sse-upstream`, 1 thread, "
        f"{'epoll' if c.get('origin_driver') == 'epoll' else 'io_uring'}"
        + origins_note(r) + ") and load generator on "
        f"{r['pinning']['origin_and_load']}. Each measurement starts a fresh origin and proxy. "
        f"Medians of {c['reps']} interleaved repetitions, {c['duration']} s windows after "
        f"{c['warmup']} s warm-up. SSE: {c['streams']} streams, events of ~100 bytes "
        f"(`size={r['event_size_param']}`); latency: `rate=10` per stream (10k events/s in all); "
        f"idle: {c['idle_streams']} streams; drops: {c['drop_streams']} streams at "
        f"`rate={c['drop_rate']}` with `close_after={c['drop_every']}` (sse-load "
        f"`--reconnect`) plus a {c['probe_streams']}-stream gap probe at `rate=100`, "
        f"`close_after=50`; plain: `wrk -t1 -c{c['connections']}` on `/small` (100 bytes)."
        + new_scenarios(r),
        "",
        table(r),
        "",
        "Ratios are plain quotients of the medians (higher is better for events and req/s, "
        "lower for CPU, RSS, latency and gaps).",
        "",
        targets_table(r),
        "",
        "Settings compared (printed by the script):",
        "",
        f"- tether: `{s.get('tether', '-')}`" + (
            f" (fan-out, 7: plus `{s['tether_fanout_flags']}`)"
            if "fanout" in r["runs"] and s.get("tether_fanout_flags") else ""),
        f"- nginx: `{'; '.join(s.get('nginx', []))}` (single process: `master_process off`)",
        f"- HAProxy: `{'; '.join(s.get('haproxy', []))}` (`-db`, foreground)",
    ]
    for name, label in (("tether", "tether"), ("nginx", "nginx"), ("haproxy", "HAProxy")):
        t = s.get(name + "_tls")
        if t:
            t = "; ".join(t) if isinstance(t, list) else t
            parts.append(f"- {label} with TLS (4t, 1t, 3t): `{t}`")
        t = s.get(name + "_h2")
        if t:
            t = "; ".join(t) if isinstance(t, list) else t
            parts.append(f"- {label} with HTTP/2 (1h, 3h): `{t}`")
    f = failures(r)
    if f:
        parts += ["", "Runs that failed, were skipped, had probes without a first event, or "
                  "ran while other processes were busy:", ""] + f
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        print(markdown(json.load(fh)), end="")
