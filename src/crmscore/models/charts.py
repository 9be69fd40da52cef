"""Charts as inline SVG, drawn on the server: no JavaScript, no CDN, works offline and in an e-mail.

Every function returns one `<svg>` string with a `viewBox` (it scales to its container, see ui.css), a
`<title>` for screen readers and class names the end-to-end tests assert on (`chart waterfall`,
`wf-step up`, ...). Text is escaped here; templates insert the result with `|safe`.

The primitives (svg, svg_text, escape_text, nice_ticks, ...) and the evaluation report's charts
(crmscore.models.report: curves, drivers, beeswarm). The operations page draws its own charts
(crmscore.ui.charts) from the same primitives and shows the drivers and beeswarm too. Nothing here imports
the package: it sits with the report, in the models layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

UP, DOWN, NEUTRAL, ACCENT = "#c2410c", "#0f766e", "#64748b", "#1d4ed8"
PALETTE = ("#1d4ed8", "#c2410c", "#0f766e", "#7c3aed", "#b45309", "#be185d", "#475569", "#15803d")
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', 'Noto Sans CJK SC', 'Noto Sans SC', 'PingFang SC', " \
       "'Microsoft YaHei', sans-serif\""


def escape_text(text: Any) -> str:
    return escape(str(text), quote=True)


def svg(width: float, height: float, cls: str, title: str, body: list[str]) -> str:
    return (f'<svg class="chart {cls}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg" {FONT} font-size="12">'
            f"<title>{escape_text(title)}</title>{''.join(body)}</svg>")


def svg_text(x: float, y: float, s: Any, anchor: str = "start", cls: str = "", size: float | None = None,
          weight: str | None = None, fill: str = "#1e293b") -> str:
    extra = (f' font-size="{size}"' if size else "") + (f' font-weight="{weight}"' if weight else "") + \
            (f' class="{cls}"' if cls else "")
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{extra}>{escape_text(s)}</text>'


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


def nice_ticks(lo: float, hi: float, n: int) -> list[float]:
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
        body.append(f'<g class="bar"><title>{escape_text(tip)}</title>')
        body.append(svg_text(label_width - 6, y + 14, truncate(label, label_width / 7.2), "end", size=11.5))
        body.append(f'<rect x="{label_width}" y="{y + 4}" width="{w:.1f}" height="13" rx="2" fill="{color}"/>')
        body.append(svg_text(label_width + w + 4, y + 14.5, fmt(v), size=10.5, fill="#475569"))
        body.append("</g>")
    return svg(W, H, cls, title, body)


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
        body.append(f'<g class="swarm-row"><title>{escape_text(label)}</title>')
        body.append(svg_text(label_width - 6, cy + 4, truncate(label, label_width / 7.2), "end", size=11.5))
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
    for tick in nice_ticks(-m, m, 4):
        body.append(svg_text(x(tick), base + 4, f"{tick:+.1f}" if tick else "0", "middle", size=10, fill="#64748b"))
    body.append(svg_text(label_width + span / 2, base + 18, axis_label, "middle", size=10.5, fill="#475569"))
    gx = label_width
    for j in range(20):
        body.append(f'<rect x="{gx + j * 4}" y="{base + 26}" width="4" height="8" fill="{_mix("#2563eb", "#dc2626", j / 19)}"/>')
    body.append(svg_text(gx - 4, base + 34, f"{value_label}: {low_label}", "end", size=10, fill="#475569"))
    body.append(svg_text(gx + 84, base + 34, high_label, size=10, fill="#475569"))
    body.append(f'<circle cx="{gx + 130}" cy="{base + 30}" r="2.5" fill="#a3a3a3"/>')
    body.append(svg_text(gx + 136, base + 34, missing_label, size=10, fill="#475569"))
    return svg(W, H, "beeswarm", title, body)


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

    body = [svg_text(left, 16, title, size=13, weight="600"),
            f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#cbd5e1"/>']
    for t in (0, 0.25, 0.5, 0.75, 1):
        body.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#f1f5f9"/>')
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#f1f5f9"/>')
        body.append(svg_text(px(t), top + ph + 14, f"{t:g}", "middle", size=10, fill="#64748b"))
        body.append(svg_text(left - 5, py(t) + 3.5, f"{t:g}", "end", size=10, fill="#64748b"))
    body.append(svg_text(left + pw / 2, H - 8, xlabel, "middle", size=11, fill="#334155"))
    body.append(f'<text transform="translate(12 {top + ph / 2:.0f}) rotate(-90)" text-anchor="middle" font-size="11" '
                f'fill="#334155">{escape_text(ylabel)}</text>')
    if diagonal:
        body.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#94a3b8" stroke-dasharray="4 3"/>')
    if hline is not None:
        body.append(f'<line x1="{px(0)}" x2="{px(1)}" y1="{py(hline):.1f}" y2="{py(hline):.1f}" stroke="#94a3b8" '
                    f'stroke-dasharray="4 3"/>')
    for i, (name, xs, ys) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in _thin(xs, ys))
        body.append(f'<g class="series"><title>{escape_text(name)}</title><polyline points="{pts}" fill="none" '
                    f'stroke="{color}" stroke-width="{2.4 if i == 0 else 1.4}"/>')
        if markers:
            body.extend(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="2.6" fill="{color}"/>' for a, b in zip(xs, ys))
        body.append("</g>")
        ly = top + ph - 10 - (len(series) - 1 - i) * 14
        body.append(f'<line x1="{left + pw - 150}" x2="{left + pw - 136}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" '
                    f'stroke-width="2"/>')
        body.append(svg_text(left + pw - 132, ly, truncate(name, 26), size=10))
    return svg(W, H, cls, title, body)


def _thin(xs: Sequence[float], ys: Sequence[float], n: int = 400) -> list[tuple[float, float]]:
    """At most about n points of a curve (every k-th plus the last), clipped to the unit square."""
    pairs = [(min(max(float(a), 0.0), 1.0), min(max(float(b), 0.0), 1.0)) for a, b in zip(xs, ys)]
    if len(pairs) <= n:
        return pairs
    k = math.ceil(len(pairs) / n)
    return pairs[::k] + [pairs[-1]]
