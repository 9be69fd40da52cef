"""The monitoring report as one HTML file, readable offline: plots are PNGs embedded as data URIs, no script,
no font or style sheet from the network. Per model: the verdict, a PSI chart and drift table, segment
migration, and realised performance beside the promoted figures with the reliability curve.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from crmscore.config import MonitoringConfig
from crmscore.monitoring.check import ModelCheck
from crmscore.monitoring.run import headline

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;font-size:.9em}
th{background:#f3f3f3}td.n{text-align:right}.act{background:#f8d0d0}.watch{background:#fdf0c4}.ok{}
.verdict{padding:.6em 1em;border-left:4px solid #888;background:#f7f7f7}.verdict.yes{border-color:#c33}
img{max-width:100%}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}"""


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def psi_chart(check: ModelCheck, cfg: MonitoringConfig, top: int = 20) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted([f for f in check.features if np.isfinite(f.psi)], key=lambda f: -f.psi)[:top]
    if check.score is not None:
        rows = [check.score, *rows]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1))
    colors = ["#c33" if r.status == "act" else "#e0a000" if r.status == "watch" else "#4a7" for r in rows]
    ax.barh([r.feature for r in rows][::-1], [r.psi for r in rows][::-1], color=colors[::-1])
    ax.axvline(cfg.psi_watch, color="#e0a000", ls="--", lw=1, label=f"watch {cfg.psi_watch}")
    ax.axvline(cfg.psi_act, color="#c33", ls="--", lw=1, label=f"act {cfg.psi_act}")
    ax.set_xlabel("PSI against the training reference")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{check.model} v{check.version}: drift at {check.as_of}")
    return _png(fig)


def realised_chart(check: ModelCheck) -> str | None:
    """Realised ROC-AUC and PR-AUC per version beside the promoted ones, and the reliability curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if check.realised is None or not check.realised.groups:
        return None
    overall = [g for g in check.realised.groups if g["segment"] == "all"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    x = np.arange(len(overall))
    for i, (metric, color) in enumerate((("roc_auc", "#36c"), ("pr_auc", "#6a3"))):
        ax1.bar(x + (i - 0.5) * 0.38, [g[metric] for g in overall], 0.36, color=color, label=f"realised {metric}")
        promised = [check.realised.promised.get(g["model_version"], {}).get(metric, np.nan) for g in overall]
        ax1.scatter(x + (i - 0.5) * 0.38, promised, marker="_", s=600, color="black", zorder=3,
                    label="promoted (test)" if i == 0 else None)
    ax1.set_xticks(x, [f"v{g['model_version']}" for g in overall])
    ax1.set_ylim(0, 1)
    ax1.set_title("realised vs promised")
    ax1.legend(fontsize=7, loc="lower right")
    ax2.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
    for version, bins in check.realised.reliability.items():
        ax2.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label=f"v{version}")
    ax2.set_xlabel("predicted")
    ax2.set_ylabel("observed")
    ax2.set_title("reliability")
    ax2.legend(fontsize=7)
    return _png(fig)


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)


def _table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(f"<tr class='{(classes or [''] * len(rows))[i]}'>" + "".join(cell for cell in r) + "</tr>"
                   for i, r in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _td(v: Any, numeric: bool = False) -> str:
    return f"<td class='n'>{v}</td>" if numeric else f"<td>{html.escape(str(v))}</td>"


def model_section(check: ModelCheck, cfg: MonitoringConfig) -> str:
    v = check.verdict
    parts = [f"<h2>{html.escape(check.model)} v{html.escape(check.version)} at {check.as_of} "
             f"({check.rows:,} customers)</h2>"]
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in v.get("reasons", []))
    parts.append(f"<div class='verdict {'yes' if v.get('retrain') else ''}'><b>"
                 f"{'Retrain' if v.get('retrain') else 'No retraining needed'}</b> (drift status "
                 f"{html.escape(str(v.get('drift_status')))})<ul>{reasons}</ul></div>")
    if not check.reference:
        parts.append("<p>This version was trained before training references were kept: no drift figures. "
                     "Retrain it to get them.</p>")
    chart = psi_chart(check, cfg)
    if chart:
        parts.append(f"<img alt='PSI per feature' src='{chart}'>")
    rows, classes = [], []
    for f in [*([check.score] if check.score else []), *sorted(check.features, key=lambda f: -f.psi), *check.segments]:
        rows.append([_td(f.feature), _td(f.kind), _td(_num(f.psi), True), _td(f.test),
                     _td(_num(f.p_value, "{:.2g}"), True), _td(_num(f.missing_ref, "{:.1%}"), True),
                     _td(_num(f.missing_now, "{:.1%}"), True), _td(f.status), _td(f.detail)])
        classes.append(f.status)
    if rows:
        parts.append("<h3>Drift against the training reference</h3>")
        parts.append(_table(["feature", "kind", "PSI", "test", "p-value", "missing (ref)", "missing (now)", "status",
                             "detail"], rows, classes))
    for m in check.migration:
        parts.append(f"<h3>Migration of {html.escape(m['column'])} between the two latest snapshots</h3>")
        levels = sorted({*m["transitions"], *(t for row in m["transitions"].values() for t in row)})
        to_levels = [lv for lv in levels if any(lv in row for row in m["transitions"].values())]
        mrows = [[_td(a), *[_td(m["transitions"][a].get(b, ""), True) for b in to_levels]]
                 for a in levels if a in m["transitions"]]
        parts.append(_table(["from \\ to", *to_levels], mrows))
        if m.get("stayed_share") is not None:
            parts.append(f"<p>{m['stayed_share']:.1%} of customers in both snapshots kept their {m['column']}.</p>")
    r = check.realised
    parts.append("<h3>Realised performance</h3>")
    if r is None:
        parts.append("<p>No written scores given (batch files with --scores, or the service's prediction log).</p>")
    else:
        waiting = (f"{r.waiting:,} scores are still waiting for their outcome (horizon passes by {r.waiting_until})."
                   if r.waiting else "No score is waiting for its outcome.")
        parts.append(f"<p>{r.judged:,} scores judged. {waiting}</p>")
        chart = realised_chart(check)
        if chart:
            parts.append(f"<img alt='realised vs promised' src='{chart}'>")
        grows = []
        for g in r.groups:
            promised = r.promised.get(g["model_version"], {})
            grows.append([_td(f"v{g['model_version']}"), _td(g["segment"]), _td(g["cutoffs"]),
                          _td(f"{int(g['rows']):,}", True), _td(_num(g["positive_rate"], "{:.1%}"), True),
                          _td(_num(g["roc_auc"]), True),
                          _td(_num(promised.get("roc_auc")) if g["segment"] == "all" else "", True),
                          _td(_num(g["pr_auc"]), True),
                          _td(_num(promised.get("pr_auc")) if g["segment"] == "all" else "", True),
                          _td(_num(g["ece"]), True), _td(_num(g.get("lift_top10"), "{:.2f}"), True)])
        if grows:
            parts.append(_table(["version", "segment", "cutoffs", "customers", "positive rate", "ROC-AUC",
                                 "promoted ROC-AUC", "PR-AUC", "promoted PR-AUC", "ECE", "lift top 10%"], grows))
    return "\n".join(parts)


def write_html(checks: list[ModelCheck], cfg: MonitoringConfig, path: Path, title: str = "crmscore monitoring") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    heads = [[_td(f"{c.model} v{c.version}"), _td(c.as_of), _td(c.verdict.get("drift_status")),
              _td(_num(headline(c).get("feature_psi_max")), True), _td(_num(headline(c).get("score_psi")), True),
              _td(_num(headline(c).get("realised_roc_auc")), True), _td(_num(c.promised.get("roc_auc")), True),
              _td("yes" if c.verdict.get("retrain") else "no")] for c in checks]
    summary = _table(["model", "cutoff", "drift", "worst feature PSI", "score PSI", "realised ROC-AUC",
                      "promoted ROC-AUC", "retrain"], heads) if checks else "<p>No model was monitored.</p>"
    body = "\n".join(model_section(c, cfg) for c in checks)
    thresholds = (f"PSI watch {cfg.psi_watch}, act {cfg.psi_act}; missing-rate change {cfg.missing_shift:.0%}; "
                  f"test p-value {cfg.p_value}; realised drop {cfg.performance_drop}")
    path.write_text(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>Thresholds: "
                    f"{html.escape(thresholds)}.</p>{summary}{body}</body></html>")
    return path
