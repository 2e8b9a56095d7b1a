#!/usr/bin/env python3
"""Draws perf/results/comparison.svg from perf/results/latest.json (hand-written SVG).

usage: chart.py LATEST.json OUT.svg. Standard library only.

Panels in two columns, one bar per peer, each labelled with its value and its ratio to nginx:
events per proxy CPU-second (one write per event; batched; each with one URL for all streams
and with its own URL per stream), RSS per idle stream, keep-alive requests per second, time to
first event under load (p99), proxy RSS at the end of the one-write-per-event windows (one
URL, own URLs), and fan-out (one URL, many clients): proxy CPU per million delivered events and
proxy RSS. A panel whose figures are missing is drawn with a "not measured" note. When the run
measured 1a/1b with other origins or event sizes (run.py's "variants"), a panel of events per
proxy CPU-second for each of those follows (the fixed panels are sse-upstream at ~100 B).
"""
import json
import sys
from xml.sax.saxutils import escape

PEERS = [("tether", "tether", "#1f77b4"), ("nginx", "nginx", "#2ca02c"),
         ("haproxy", "HAProxy", "#ff7f0e"), ("direct", "direct (no proxy)", "#9e9e9e")]

# (scenario, key, title, subtitle, direction, scale, unit, with direct, target) -- target:
# ("x nginx", factor) or ("abs", value), drawn as a dashed line.
PANELS = [
    ("batch1", "events_per_proxy_cpu_s", "Events per proxy CPU-second",
     "{streams} streams, one upstream write per event", "higher is better", 1e3, "k", False,
     ("x nginx", 1.10)),
    ("batched", "events_per_proxy_cpu_s", "Events per proxy CPU-second",
     "{streams} streams, batched upstream writes", "higher is better", 1e6, "M", False,
     ("x nginx", 1.15)),
    ("idle", "rss_per_stream_bytes", "Proxy RSS per idle stream",
     "~{idle} idle SSE streams", "lower is better", 1024, " KiB", False, ("abs", 2048)),
    ("plain", "req_per_s", "Keep-alive requests per second",
     "100-byte responses, wrk -c50", "higher is better", 1e3, "k", True, ("x nginx", 1.5)),
    ("batch1-url", "events_per_proxy_cpu_s", "Events per proxy CPU-second, own URLs",
     "{streams} streams, one write per event, own URL each", "higher is better",
     1e3, "k", False, ("x nginx", 1.10)),
    ("batched-url", "events_per_proxy_cpu_s", "Events per proxy CPU-second, own URLs",
     "{streams} streams, batched writes, own URL each", "higher is better", 1e6, "M",
     False, ("x nginx", 1.15)),
    ("ttfe", "ttfe_p99_ms", "Time to first event under load, p99",
     "{clients} new clients while {streams} streams run flat out", "lower is better", 1, " ms",
     True, ("abs", 20)),
    ("ttfe", "ttfe_p50_ms", "Time to first event under load, p50",
     "{clients} new clients while {streams} streams run flat out", "lower is better", 1, " ms",
     True, None),
    ("batch1", "proxy_rss_mb", "Proxy RSS, flat-out streams, one URL",
     "at the end of the window, one write per event", "lower is better", 1, " MB", False, None),
    ("batch1-url", "proxy_rss_mb", "Proxy RSS, flat-out streams, own URLs",
     "at the end of the window, one write per event", "lower is better", 1, " MB", False, None),
    ("fanout", "proxy_cpu_s_per_m_events", "Proxy CPU-s per million delivered events",
     "fan-out: {fanout} clients of one URL at {fanout_rate} events/s", "lower is better", 1,
     " s", False, ("x nginx", 0.5)),
    ("fanout", "proxy_rss_mb", "Proxy RSS, fan-out",
     "at the end of the window, {fanout} clients of one URL", "lower is better", 1, " MB",
     False, None),
]

W, PANEL_W, PANEL_H = 980, 460, 250
BAR_H, BAR_GAP, LABEL_W = 30, 12, 120


def fmt(v, scale, unit):
    x = v / scale
    digits = 0 if x >= 100 else 1 if x >= 10 else 2
    return f"{x:,.{digits}f}{unit}"


def panel(x0, y0, data, spec):
    sc, key, title, sub, better, scale, unit, with_direct, target = spec
    med = data.get("medians", {}).get(sc, {})
    peers = [p for p in PEERS if with_direct or p[0] != "direct"]
    vals = {p: (med.get(p, {}) or {}).get(key) if isinstance(med, dict) else None
            for p, _, _ in peers}
    c = data.get("config", {})
    sub = sub.format(streams=c.get("streams", 1000), clients=c.get("ttfe_clients", 50),
                     idle=c.get("idle_streams", 9000), fanout=c.get("fanout_clients", 1000),
                     fanout_rate=f"{c.get('fanout_rate', 100):g}")
    out = [f'<g transform="translate({x0},{y0})">',
           f'<text x="0" y="18" class="t">{escape(title)}</text>',
           f'<text x="0" y="38" class="s">{escape(sub)} · {escape(better)}</text>']
    present = [v for v in vals.values() if v]
    if not present:
        out.append('<text x="0" y="90" class="s">not measured in this run</text></g>')
        return out
    nginx = vals.get("nginx")
    goal = None
    if target is None:
        pass
    elif target[0] == "abs":
        goal = target[1]
    elif nginx:
        goal = nginx * target[1]
    top = max(present + ([goal] if goal else []))
    span = PANEL_W - LABEL_W - 170
    for i, (p, name, color) in enumerate(peers):
        y = 56 + i * (BAR_H + BAR_GAP)
        v = vals[p]
        out.append(f'<text x="{LABEL_W - 8}" y="{y + BAR_H / 2 + 5}" class="l" '
                   f'text-anchor="end">{escape(name)}</text>')
        if v is None:
            out.append(f'<text x="{LABEL_W}" y="{y + BAR_H / 2 + 5}" class="s">-</text>')
            continue
        w = max(1.0, span * v / top)
        out.append(f'<rect x="{LABEL_W}" y="{y}" width="{w:.1f}" height="{BAR_H}" '
                   f'fill="{color}" rx="3"><title>{escape(name)}: {escape(fmt(v, scale, unit))}'
                   f'</title></rect>')
        label = fmt(v, scale, unit)
        if nginx and p not in ("nginx", "direct"):
            label += f"  ({v / nginx:.2f}x nginx)"
        out.append(f'<text x="{LABEL_W + w + 6:.1f}" y="{y + BAR_H / 2 + 5}" '
                   f'class="v">{escape(label)}</text>')
    if goal:
        gx = LABEL_W + span * goal / top
        y_end = 56 + len(peers) * (BAR_H + BAR_GAP) - BAR_GAP + 4
        what = f"target {fmt(goal, scale, unit)}" if target[0] == "abs" else \
            f"target {target[1]:g}x nginx"
        out.insert(3, f'<line x1="{gx:.1f}" y1="50" x2="{gx:.1f}" y2="{y_end}" stroke="#d62728" '
                   f'stroke-width="1.5" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{gx:.1f}" y="{y_end + 14}" class="g" '
                   f'text-anchor="middle">{escape(what)}</text>')
    out.append("</g>")
    return out


ORIGIN_NAMES = {"sse-upstream": "sse-upstream origin", "sse-tokio": "tokio origin"}


def variant_panels(data):
    """Events per proxy CPU-second of 1a and 1b with every other origin and event size."""
    out = []
    for key, v in (data.get("variants") or {}).items():
        base = next((p for p in PANELS[:2] if p[0] == v["scenario"]), None)
        if base is None or key == v["scenario"]:
            continue
        origin = ORIGIN_NAMES.get(v["origin"], v["origin"])
        out.append((key,) + base[1:2] + (f"{base[2]}, {origin}, {v['event_bytes']} B",)
                   + base[3:])
    return out


def svg(data):
    panels = PANELS + variant_panels(data)
    rows = (len(panels) + 1) // 2
    h = rows * PANEL_H + 110
    m = data.get("machine", {})
    c = data.get("config", {})
    foot = (f"{data.get('date', '')} · {m.get('cores', '?')} cores, {m.get('cpu', '')} · "
            f"proxy alone on one core, 1 worker each · medians of {c.get('reps', '?')} runs · "
            f"scripts/bench.sh")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" '
           f'viewBox="0 0 {W} {h}" font-family="Helvetica, Arial, sans-serif">',
           "<style>.t{font-size:16px;font-weight:bold;fill:#222}.s{font-size:12px;fill:#666}"
           ".l{font-size:13px;fill:#222}.v{font-size:12px;fill:#222}"
           ".h{font-size:20px;font-weight:bold;fill:#111}.g{font-size:11px;fill:#d62728}</style>",
           f'<rect width="{W}" height="{h}" fill="#ffffff"/>',
           '<text x="20" y="32" class="h">tether vs nginx vs HAProxy, one core each</text>']
    for i, spec in enumerate(panels):
        x0 = 20 + (i % 2) * (PANEL_W + 30)
        y0 = 50 + (i // 2) * PANEL_H
        out += panel(x0, y0, data, spec)
    out.append(f'<text x="20" y="{h - 16}" class="s">{escape(foot)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        data = json.load(f)
    with open(sys.argv[2], "w") as f:
        f.write(svg(data))
