"""The operations page's charts as inline SVG: a customer's waterfall and purchase timeline, score
distributions by group (box plots) and segment counts now and before. Drawn like the evaluation report's
charts, from the same primitives (crmscore.models.charts); class names are what the page's end-to-end tests
assert on (`chart waterfall`, `wf-step up`, ...). The model page also shows the report's drivers bars and
beeswarm: they are importable from here too (hbar_svg, beeswarm_svg, value_ranks)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

from crmscore.models.charts import (
    ACCENT,
    DOWN,
    NEUTRAL,
    UP,
    beeswarm_svg,
    escape_text,
    hbar_svg,
    nice_ticks,
    pct,
    points,
    svg,
    svg_text,
    text_width,
    truncate,
    value_ranks,
)

__all__ = ["beeswarm_svg", "boxplot_svg", "hbar_svg", "paired_bars_svg", "pct", "points", "timeline_svg", "truncate",
           "value_ranks", "waterfall_svg"]


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
        body.append(svg_text(left, y + 12, truncate(label, 56), weight=weight, cls="wf-label", size=11.5))
        opacity = ' fill-opacity="0.55"' if kind == "other" else ""
        body.append(f'<rect x="{x0:.1f}" y="{y + 17:.1f}" width="{width:.1f}" height="14" rx="2" fill="{color}"'
                    f'{opacity}><title>{escape_text(label)}: {escape_text(value)}</title></rect>')
        fill = color if kind in ("up", "down") else "#1e293b"
        if x1 + 6 + text_width(value, 11.5) <= W - 2:  # the value right of its bar, else left of it
            body.append(svg_text(x1 + 6, y + 28.5, value, cls="wf-value", weight=weight, fill=fill))
        else:
            body.append(svg_text(x0 - 6, y + 28.5, value, "end", cls="wf-value", weight=weight, fill=fill))
        if i + 1 < len(rows):  # connector to the next step
            body.append(f'<line x1="{x(b):.1f}" x2="{x(b):.1f}" y1="{y + 31:.1f}" y2="{y + row_h + 17:.1f}" '
                        f'stroke="#94a3b8" stroke-dasharray="2 2"/>')
        body.append("</g>")
    axis_y = H - 14
    body.append(f'<line x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{axis_y}" y2="{axis_y}" stroke="#cbd5e1"/>')
    for tick in nice_ticks(lo, hi, 4):
        body.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#94a3b8"/>')
        body.append(svg_text(x(tick), axis_y + 13, fmt(tick), "middle", size=10, fill="#64748b"))
    return svg(W, H, "waterfall", title or final_label, body)


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
            body.append(svg_text(x(mid), base + 16, months[d.month - 1], "middle", size=10.5, fill="#475569"))
        d = dt.date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    bar = max(1.6, span / days * 0.9)
    for day, orders, amount in entries:
        when = dt.date.fromisoformat(day)
        h = max(3.0, (base - top) * math.sqrt(max(amount, 0) / peak))
        color = DOWN if amount >= 0 else UP
        body.append(f'<rect class="purchase" x="{x(when) - bar / 2:.1f}" y="{base - h:.1f}" width="{bar:.1f}" '
                    f'height="{h:.1f}" fill="{color}"><title>{escape_text(day)}: {orders} × {escape_text(spend_label)} '
                    f'{amount:,.2f}</title></rect>')
    body.append(svg_text(W - right, top - 3, end.isoformat(), "end", size=10, fill="#64748b"))
    body.append(svg_text(left, top - 3, start.isoformat(), "start", size=10, fill="#64748b"))
    return svg(W, H, f"timeline {cls}".strip(), title, body)


def paired_bars_svg(items: Sequence[tuple[str, int, int | None]], *, title: str, current_label: str,
                    previous_label: str, label_width: int = 115) -> str:
    """Counts now (solid) and before (outline) per group; items: (label, current, previous or None)."""
    W, row_h = 360, 30
    H = len(items) * row_h + 30
    span = W - label_width - 48
    hi = max([max(c, p or 0) for _, c, p in items] + [1])
    body = [f'<rect x="{label_width}" y="6" width="10" height="10" fill="{ACCENT}"/>',
            svg_text(label_width + 14, 15, current_label, size=10.5),
            f'<rect x="{label_width + 90}" y="6" width="10" height="10" fill="none" stroke="{NEUTRAL}"/>',
            svg_text(label_width + 104, 15, previous_label, size=10.5)]
    for i, (label, cur, prev) in enumerate(items):
        y = 26 + i * row_h
        before = "" if prev is None else f" ({escape_text(previous_label)} {prev:,})"
        body.append(f'<g class="count-bar"><title>{escape_text(label)}: {cur:,}{before}</title>')
        body.append(svg_text(label_width - 6, y + 15, truncate(label, label_width / 7.2), "end", size=11.5))
        body.append(f'<rect x="{label_width}" y="{y + 3}" width="{max(1, cur / hi * span):.1f}" height="11" rx="2" '
                    f'fill="{ACCENT}"/>')
        if prev is not None:
            body.append(f'<rect x="{label_width}" y="{y + 16}" width="{max(1, prev / hi * span):.1f}" height="7" '
                        f'fill="none" stroke="{NEUTRAL}"/>')
        body.append(svg_text(label_width + cur / hi * span + 5, y + 13, f"{cur:,}", size=10.5, fill="#334155"))
        body.append("</g>")
    return svg(W, H, "counts", title, body)


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
        body.append(f'<g class="box"><title>{escape_text(label)}: n={g["n"]:,}, median {fmt(g["p50"])}, '
                    f'p10-p90 {fmt(g["p10"])}-{fmt(g["p90"])}</title>')
        body.append(svg_text(label_width - 6, cy + 4, truncate(label, label_width / 7.2), "end", size=11.5))
        body.append(f'<line x1="{x(g["p10"]):.1f}" x2="{x(g["p90"]):.1f}" y1="{cy}" y2="{cy}" stroke="#475569"/>')
        body.append(f'<rect x="{x(g["p25"]):.1f}" y="{cy - 7}" width="{max(1.5, x(g["p75"]) - x(g["p25"])):.1f}" '
                    f'height="14" fill="#bfdbfe" stroke="{ACCENT}"/>')
        body.append(f'<line x1="{x(g["p50"]):.1f}" x2="{x(g["p50"]):.1f}" y1="{cy - 7}" y2="{cy + 7}" '
                    f'stroke="#1e3a8a" stroke-width="2"/>')
        body.append(svg_text(W - 4, cy + 4, f"n={g['n']:,}", "end", size=10, fill="#64748b"))
        body.append("</g>")
    base = H - 18
    body.append(f'<line x1="{label_width}" x2="{label_width + span}" y1="{base}" y2="{base}" stroke="#cbd5e1"/>')
    for tick in nice_ticks(0, hi, 4):
        body.append(svg_text(x(tick), base + 12, fmt(tick), "middle", size=10, fill="#64748b"))
    return svg(W, H, "boxplot", title, body)
