"""Charts as inline SVG, drawn on the server: no JavaScript, no CDN, works offline and in an e-mail.

Every function returns one `<svg>` string with a `viewBox` (it scales to its container, see ui.css), a
`<title>` for screen readers and class names the end-to-end tests assert on (`chart waterfall`,
`wf-step up`, ...). Text is escaped here; templates insert the result with `|safe`.

They serve both the evaluation report of a training run (crmscore.models.report: curves, drivers,
beeswarm) and the operations page (crmscore.ui: waterfall, timeline, box plots, counts); they import
nothing of the package, so they sit with the report in the models layer and the page imports them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

UP, DOWN, NEUTRAL, ACCENT = "#c2410c", "#0f766e", "#64748b", "#1d4ed8"
PALETTE = ("#1d4ed8", "#c2410c", "#0f766e", "#7c3aed", "#b45309", "#be185d", "#475569", "#15803d")
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', 'Noto Sans CJK SC', 'Noto Sans SC', 'PingFang SC', " \
       "'Microsoft YaHei', sans-serif\""


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _svg(width: float, height: float, cls: str, title: str, body: list[str]) -> str:
    return (f'<svg class="chart {cls}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg" {FONT} font-size="12">'
            f"<title>{_e(title)}</title>{''.join(body)}</svg>")


def _text(x: float, y: float, s: Any, anchor: str = "start", cls: str = "", size: float | None = None,
          weight: str | None = None, fill: str = "#1e293b") -> str:
    extra = (f' font-size="{size}"' if size else "") + (f' font-weight="{weight}"' if weight else "") + \
            (f' class="{cls}"' if cls else "")
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{extra}>{_e(s)}</text>'


def truncate(s: str, n: int) -> str:
    """At most n characters (CJK characters count double), with an ellipsis."""
    out, width = "", 0.0
    for ch in s:
        w = 2.0 if ord(ch) > 0x2E80 else 1.0
        if width + w > n:
            return out.rstrip() + "…"
        out += ch
        width += w
    return out


def text_width(s: str, size: float = 12) -> float:
    """A rough width of a text in pixels (CJK characters are about twice as wide as Latin ones)."""
    return sum(size if ord(ch) > 0x2E80 else size * 0.58 for ch in s)


def pct(v: float, digits: int = 0) -> str:
    return f"{v * 100:.{digits}f}%"


def points(delta: float) -> str:
    """A probability change in percentage points, signed: '+5.2', '-0.4'."""
    return f"{delta * 100:+.1f}"


# -- waterfall ------------------------------------------------------------------------------------
def waterfall_svg(wf: dict[str, Any], labels: Sequence[str], *, base_label: str, other_label: str,
                  final_label: str, unit_label: str, fmt: Callable[[float], str] = pct,
                  delta: Callable[[float], str] = points, title: str = "") -> str:
    """Base value -> one bar per listed contribution -> the rest -> the score, on the score's scale.

    wf: crmscore.scoring.online.waterfall()'s output; labels: one per step (the feature, in words)."""
    steps = wf["steps"]
    other = wf["other"]
    rows: list[tuple[str, float, float, str, str]] = [(base_label, 0.0, wf["base"], "base", fmt(wf["base"]))]
    for label, st in zip(labels, steps):
        d = st["end"] - st["start"]
        rows.append((label, st["start"], st["end"], "up" if st["contribution"] > 0 else "down",
                     f"{delta(d)} {unit_label}"))
    if other["count"] > 0:
        d = other["end"] - other["start"]
        rows.append((other_label, other["start"], other["end"], "other", f"{delta(d)} {unit_label}"))
    rows.append((final_label, 0.0, wf["final"], "final", fmt(wf["final"])))
    values = [v for r in rows for v in (r[1], r[2])]
    hi = max(values) if values else 1.0
    hi = min(1.0, max(0.05, hi * 1.15)) if 0 <= min(values) and hi <= 1 else hi * 1.1 or 1.0
    lo = min(0.0, min(values))
    W, left, right, row_h = 360, 14, 8, 40
    span = W - left - right - 70
    H = len(rows) * row_h + 26

    def x(v: float) -> float:
        return left + (v - lo) / ((hi - lo) or 1) * span

    body = []
    for i, (label, a, b, kind, value) in enumerate(rows):
        y = 8 + i * row_h
        color = {"up": UP, "down": DOWN, "other": NEUTRAL}.get(kind, "#334155")
        x0, x1 = sorted((x(a), x(b)))
        width = max(x1 - x0, 1.5)
        weight = "600" if kind in ("base", "final") else None
        body.append(f'<g class="wf-step {kind}">')
        body.append(_text(left, y + 12, truncate(label, 56), weight=weight, cls="wf-label", size=11.5))
        opacity = ' fill-opacity="0.55"' if kind == "other" else ""
        body.append(f'<rect x="{x0:.1f}" y="{y + 17:.1f}" width="{width:.1f}" height="14" rx="2" fill="{color}"'
                    f'{opacity}><title>{_e(label)}: {_e(value)}</title></rect>')
        fill = color if kind in ("up", "down") else "#1e293b"
        if x1 + 6 + text_width(value, 11.5) <= W - 2:  # the value right of its bar, else left of it
            body.append(_text(x1 + 6, y + 28.5, value, cls="wf-value", weight=weight, fill=fill))
        else:
            body.append(_text(x0 - 6, y + 28.5, value, "end", cls="wf-value", weight=weight, fill=fill))
        if i + 1 < len(rows):  # connector to the next step
            body.append(f'<line x1="{x(b):.1f}" x2="{x(b):.1f}" y1="{y + 31:.1f}" y2="{y + row_h + 17:.1f}" '
                        f'stroke="#94a3b8" stroke-dasharray="2 2"/>')
        body.append("</g>")
    axis_y = H - 14
    body.append(f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{axis_y}" y2="{axis_y}" stroke="#cbd5e1"/>')
    for tick in _ticks(lo, hi, 4):
        body.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#94a3b8"/>')
        body.append(_text(x(tick), axis_y + 13, fmt(tick), "middle", size=10, fill="#64748b"))
    return _svg(W, H, "waterfall", title or final_label, body)


def _ticks(lo: float, hi: float, n: int) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    out, v = [], start
    while v <= hi + 1e-12:
        out.append(round(v, 10))
        v += step
    return out


# -- purchase timeline ----------------------------------------------------------------------------
def timeline_svg(timeline: dict[str, Any], *, months: Sequence[str], title: str, spend_label: str,
                 width: int = 720, cls: str = "") -> str:
    """One bar per purchase day over the timeline's 12 months (height: the day's spend), months marked.

    months: twelve month names (January first) in the page's language; width: of the viewBox (a narrow one
    for phones keeps the text readable)."""
    start = dt.date.fromisoformat(timeline["from"])
    end = dt.date.fromisoformat(timeline["to"])
    days = max((end - start).days + 1, 1)
    W, H, left, right, top, bottom = width, 130, 8, 8, 14, 30
    span = W - left - right
    entries = timeline.get("days") or []
    peak = max([a for _, _, a in entries if a > 0] + [1.0])

    def x(d: dt.date) -> float:
        return left + (d - start).days / days * span

    base = H - bottom
    body = [f'<line x1="{left}" x2="{W - right}" y1="{base}" y2="{base}" stroke="#94a3b8"/>']
    d = dt.date(start.year, start.month, 1)
    while d <= end:
        if d >= start:
            body.append(f'<line x1="{x(d):.1f}" x2="{x(d):.1f}" y1="{top - 4}" y2="{base + 4}" stroke="#e2e8f0"/>')
        mid = d + dt.timedelta(days=15)
        if start <= mid <= end:
            body.append(_text(x(mid), base + 16, months[d.month - 1], "middle", size=10.5, fill="#475569"))
        d = dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    bar = max(1.6, span / days * 0.9)
    for day, orders, amount in entries:
        when = dt.date.fromisoformat(day)
        h = max(3.0, (base - top) * math.sqrt(max(amount, 0) / peak))
        color = DOWN if amount >= 0 else UP
        body.append(f'<rect class="purchase" x="{x(when) - bar / 2:.1f}" y="{base - h:.1f}" width="{bar:.1f}" '
                    f'height="{h:.1f}" fill="{color}"><title>{_e(day)}: {orders} × {_e(spend_label)} '
                    f'{amount:,.2f}</title></rect>')
    body.append(_text(W - right, top - 3, end.isoformat(), "end", size=10, fill="#64748b"))
    body.append(_text(left, top - 3, start.isoformat(), "start", size=10, fill="#64748b"))
    return _svg(W, H, f"timeline {cls}".strip(), title, body)


# -- horizontal bars (global drivers, counts) -----------------------------------------------------
def hbar_svg(items: Sequence[tuple[str, float, str]], *, title: str, fmt: Callable[[float], str] = lambda v: f"{v:.3f}",
             label_width: int = 140, color: str = ACCENT, cls: str = "bars") -> str:
    """items: (label, value, tooltip)."""
    W, row_h = 360, 22
    H = len(items) * row_h + 8
    span = W - label_width - 44
    hi = max([v for _, v, _ in items] + [1e-12])
    body = []
    for i, (label, v, tip) in enumerate(items):
        y = 4 + i * row_h
        w = max(1.0, v / hi * span)
        body.append(f'<g class="bar"><title>{_e(tip)}</title>')
        body.append(_text(label_width - 6, y + 14, truncate(label, label_width / 7.2), "end", size=11.5))
        body.append(f'<rect x="{label_width}" y="{y + 4}" width="{w:.1f}" height="13" rx="2" fill="{color}"/>')
        body.append(_text(label_width + w + 4, y + 14.5, fmt(v), size=10.5, fill="#475569"))
        body.append("</g>")
    return _svg(W, H, cls, title, body)


def paired_bars_svg(items: Sequence[tuple[str, int, int | None]], *, title: str, current_label: str,
                    previous_label: str, label_width: int = 115) -> str:
    """Counts now (solid) and before (outline) per group; items: (label, current, previous or None)."""
    W, row_h = 360, 30
    H = len(items) * row_h + 30
    span = W - label_width - 48
    hi = max([max(c, p or 0) for _, c, p in items] + [1])
    body = [f'<rect x="{label_width}" y="6" width="10" height="10" fill="{ACCENT}"/>',
            _text(label_width + 14, 15, current_label, size=10.5),
            f'<rect x="{label_width + 90}" y="6" width="10" height="10" fill="none" stroke="{NEUTRAL}"/>',
            _text(label_width + 104, 15, previous_label, size=10.5)]
    for i, (label, cur, prev) in enumerate(items):
        y = 26 + i * row_h
        before = "" if prev is None else f" ({_e(previous_label)} {prev:,})"
        body.append(f'<g class="count-bar"><title>{_e(label)}: {cur:,}{before}</title>')
        body.append(_text(label_width - 6, y + 15, truncate(label, label_width / 7.2), "end", size=11.5))
        body.append(f'<rect x="{label_width}" y="{y + 3}" width="{max(1, cur / hi * span):.1f}" height="11" rx="2" '
                    f'fill="{ACCENT}"/>')
        if prev is not None:
            body.append(f'<rect x="{label_width}" y="{y + 16}" width="{max(1, prev / hi * span):.1f}" height="7" '
                        f'fill="none" stroke="{NEUTRAL}"/>')
        body.append(_text(label_width + cur / hi * span + 5, y + 13, f"{cur:,}", size=10.5, fill="#334155"))
        body.append("</g>")
    return _svg(W, H, "counts", title, body)


# -- beeswarm ---------------------------------------------------------------------------------------
def value_ranks(v: Any) -> list[float | None]:
    """Feature values as ranks in 0-1 within the sample (ties share a rank), None where missing: the beeswarm's
    colours."""
    import numpy as np
    import pandas as pd

    r = pd.Series(np.asarray(v, float)).rank(method="average")
    lo, hi = r.min(), r.max()
    r = (r - lo) / (hi - lo) if hi > lo else r * 0 + 0.5
    return [None if np.isnan(x) else float(x) for x in r]


def _mix(a: str, b: str, t: float) -> str:
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))


def beeswarm_svg(rows: Sequence[dict[str, Any]], labels: Sequence[str], *, title: str, axis_label: str,
                 low_label: str, high_label: str, value_label: str, missing_label: str = "?",
                 label_width: int = 132) -> str:
    """One row per feature, one dot per customer at its SHAP value, stacked where dots collide, coloured from
    blue (low feature value) to red (high); grey where the value is missing. rows: engine beeswarm entries."""
    W, row_h = 360, 34
    H = len(rows) * row_h + 58
    span = W - label_width - 14
    vals = [v for r in rows for v in r["shap"]]
    m = max([abs(v) for v in vals] + [1e-9])

    def x(v: float) -> float:
        return label_width + (v + m) / (2 * m) * span

    body = [f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="4" y2="{H - 44}" stroke="#94a3b8"/>']
    for i, (row, label) in enumerate(zip(rows, labels)):
        cy = 4 + i * row_h + row_h / 2
        body.append(f'<g class="swarm-row"><title>{_e(label)}</title>')
        body.append(_text(label_width - 6, cy + 4, truncate(label, label_width / 7.2), "end", size=11.5))
        taken: dict[int, int] = {}
        for v, c in zip(row["shap"], row["value"]):
            px = x(v)
            slot = int(px / 3.2)
            k = taken.get(slot, 0)
            taken[slot] = k + 1
            off = ((k + 1) // 2) * 3.0 * (1 if k % 2 else -1)
            if abs(off) > row_h / 2 - 3:
                off = (k % 9 - 4) * 1.4
            color = "#a3a3a3" if c is None else _mix("#2563eb", "#dc2626", c)
            body.append(f'<circle class="dot" cx="{px:.1f}" cy="{cy + off:.1f}" r="1.9" fill="{color}" '
                        f'fill-opacity="0.8"/>')
        body.append("</g>")
    base = H - 40
    for tick in _ticks(-m, m, 4):
        body.append(_text(x(tick), base + 4, f"{tick:+.1f}" if tick else "0", "middle", size=10, fill="#64748b"))
    body.append(_text(label_width + span / 2, base + 18, axis_label, "middle", size=10.5, fill="#475569"))
    gx = label_width
    for j in range(20):
        body.append(f'<rect x="{gx + j * 4}" y="{base + 26}" width="4" height="8" fill="{_mix("#2563eb", "#dc2626", j / 19)}"/>')
    body.append(_text(gx - 4, base + 34, f"{value_label}: {low_label}", "end", size=10, fill="#475569"))
    body.append(_text(gx + 84, base + 34, high_label, size=10, fill="#475569"))
    body.append(f'<circle cx="{gx + 130}" cy="{base + 30}" r="2.5" fill="#a3a3a3"/>')
    body.append(_text(gx + 136, base + 34, missing_label, size=10, fill="#475569"))
    return _svg(W, H, "beeswarm", title, body)


# -- box plots (score distribution by group) -------------------------------------------------------
def boxplot_svg(groups: Sequence[dict[str, Any]], labels: Sequence[str], *, title: str,
                fmt: Callable[[float], str] = pct, label_width: int = 118, unit_max: float | None = 1.0) -> str:
    """One box per group: p25-p75 box, median line, p10-p90 whiskers, customer count at the right."""
    W, row_h = 360, 26
    H = len(groups) * row_h + 26
    span = W - label_width - 52
    hi = unit_max if unit_max else max([g["p90"] for g in groups] + [1e-9]) * 1.05
    hi = min(hi, max([g["p90"] for g in groups] + [0.05]) * 1.2) if unit_max else hi

    def x(v: float) -> float:
        return label_width + min(v, hi) / hi * span

    body = []
    for i, (g, label) in enumerate(zip(groups, labels)):
        y = 4 + i * row_h
        cy = y + 10
        body.append(f'<g class="box"><title>{_e(label)}: n={g["n"]:,}, median {fmt(g["p50"])}, '
                    f'p10-p90 {fmt(g["p10"])}-{fmt(g["p90"])}</title>')
        body.append(_text(label_width - 6, cy + 4, truncate(label, label_width / 7.2), "end", size=11.5))
        body.append(f'<line x1="{x(g["p10"]):.1f}" x2="{x(g["p90"]):.1f}" y1="{cy}" y2="{cy}" stroke="#475569"/>')
        body.append(f'<rect x="{x(g["p25"]):.1f}" y="{cy - 7}" width="{max(1.5, x(g["p75"]) - x(g["p25"])):.1f}" '
                    f'height="14" fill="#bfdbfe" stroke="{ACCENT}"/>')
        body.append(f'<line x1="{x(g["p50"]):.1f}" x2="{x(g["p50"]):.1f}" y1="{cy - 7}" y2="{cy + 7}" '
                    f'stroke="#1e3a8a" stroke-width="2"/>')
        body.append(_text(W - 4, cy + 4, f"n={g['n']:,}", "end", size=10, fill="#64748b"))
        body.append("</g>")
    base = H - 18
    body.append(f'<line x1="{label_width}" x2="{label_width + span}" y1="{base}" y2="{base}" stroke="#cbd5e1"/>')
    for tick in _ticks(0, hi, 4):
        body.append(_text(x(tick), base + 12, fmt(tick), "middle", size=10, fill="#64748b"))
    return _svg(W, H, "boxplot", title, body)


# -- line charts (the evaluation report) -----------------------------------------------------------
def line_chart_svg(series: Sequence[tuple[str, Sequence[float], Sequence[float]]], *, title: str, xlabel: str,
                   ylabel: str, diagonal: bool = False, hline: float | None = None, markers: bool = False,
                   cls: str = "lines") -> str:
    """Lines in the unit square (ROC, PR, gains, calibration); series: (name, xs, ys); the first is bold."""
    W, H, left, bottom, top, right = 420, 360, 46, 42, 28, 10
    pw, ph = W - left - right, H - top - bottom

    def px(v: float) -> float:
        return left + v * pw

    def py(v: float) -> float:
        return top + (1 - v) * ph

    body = [_text(left, 16, title, size=13, weight="600"),
            f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#cbd5e1"/>']
    for t in (0, 0.25, 0.5, 0.75, 1):
        body.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#f1f5f9"/>')
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#f1f5f9"/>')
        body.append(_text(px(t), top + ph + 14, f"{t:g}", "middle", size=10, fill="#64748b"))
        body.append(_text(left - 5, py(t) + 3.5, f"{t:g}", "end", size=10, fill="#64748b"))
    body.append(_text(left + pw / 2, H - 8, xlabel, "middle", size=11, fill="#334155"))
    body.append(f'<text transform="translate(12 {top + ph / 2:.0f}) rotate(-90)" text-anchor="middle" font-size="11" '
                f'fill="#334155">{_e(ylabel)}</text>')
    if diagonal:
        body.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#94a3b8" stroke-dasharray="4 3"/>')
    if hline is not None:
        body.append(f'<line x1="{px(0)}" x2="{px(1)}" y1="{py(hline):.1f}" y2="{py(hline):.1f}" stroke="#94a3b8" '
                    f'stroke-dasharray="4 3"/>')
    for i, (name, xs, ys) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in _thin(xs, ys))
        body.append(f'<g class="series"><title>{_e(name)}</title><polyline points="{pts}" fill="none" '
                    f'stroke="{color}" stroke-width="{2.4 if i == 0 else 1.4}"/>')
        if markers:
            body.extend(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.6" fill="{color}"/>' for a, b in zip(xs, ys))
        body.append("</g>")
        ly = top + ph - 10 - (len(series) - 1 - i) * 14
        body.append(f'<line x1="{left + pw - 150}" x2="{left + pw - 136}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" '
                    f'stroke-width="2"/>')
        body.append(_text(left + pw - 132, ly, truncate(name, 26), size=10))
    return _svg(W, H, cls, title, body)


def _thin(xs: Sequence[float], ys: Sequence[float], n: int = 400) -> list[tuple[float, float]]:
    """At most about n points of a curve (every k-th plus the last), clipped to the unit square."""
    pairs = [(min(max(float(a), 0.0), 1.0), min(max(float(b), 0.0), 1.0)) for a, b in zip(xs, ys)]
    if len(pairs) <= n:
        return pairs
    k = math.ceil(len(pairs) / n)
    return pairs[::k] + [pairs[-1]]
