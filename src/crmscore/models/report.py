"""The HTML evaluation report of a training run, for data scientists: one self-contained file (inline CSS and
SVG, no script, nothing fetched), logged as an MLflow artifact (`evaluation/report.html`) and viewable in
the MLflow UI's artifact browser.

It shows the run's facts (task, cutoffs, rows, grade), the model against every baseline on the same
out-of-time test rows, ROC, precision-recall, cumulative gains and calibration curves (binary tasks;
spend captured for amounts), the global drivers (mean |SHAP|) and a SHAP summary (beeswarm) of a sample
of test rows. The charts (crmscore.models.charts) are shared with the operations page.
"""

from __future__ import annotations

import datetime as dt
import logging
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crmscore.features.translations import description
from crmscore.models.evaluation import GRADE_MARGIN, LOWER_IS_BETTER, comparison_columns
from crmscore.models import charts

if TYPE_CHECKING:
    from crmscore.models.run import TrainResult

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans CJK SC',sans-serif;color:#0f172a;background:#f8fafc;
margin:0;padding:1rem;line-height:1.45;font-size:14px}main{max-width:1200px;margin:0 auto}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.05rem;margin:0 0 .5rem}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:1rem;margin:0 0 1rem;min-width:0}
.grid{display:grid;grid-template-columns:1fr;gap:0 1rem}@media(min-width:900px){.grid{grid-template-columns:1fr 1fr}}
svg.chart{display:block;width:100%;height:auto;max-width:520px}.muted{color:#64748b}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{padding:.3rem .5rem;border-bottom:1px solid #e2e8f0;
text-align:right;font-variant-numeric:tabular-nums}th:first-child,td:first-child{text-align:left}
thead th{color:#64748b;font-size:.8rem}td.best{font-weight:700;color:#1d4ed8}.wrap{overflow-x:auto}
dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:.3rem 1rem;margin:0}
dt{color:#64748b;font-size:.8rem}dd{margin:0;overflow-wrap:anywhere}
.grade{border-radius:6px;padding:.1rem .5rem;font-weight:700;background:#e2e8f0}
.grade-A{background:#dcfce7;color:#166534}.grade-B{background:#fef9c3;color:#854d0e}.grade-C{background:#fee2e2;color:#991b1b}
"""
log = logging.getLogger(__name__)


def _e(v: Any) -> str:
    return escape(str(v))


def _fmt(v: Any) -> str:
    if isinstance(v, (int, float, np.floating)) and np.isfinite(v):
        return f"{float(v):.4f}"
    return "—"


def comparison_table(result: TrainResult) -> str:
    """The model and every baseline on the task's comparison metrics, best value of each metric in bold."""
    kind = result.bundle.kind
    cols = list(comparison_columns(kind))
    extra = [c for c in ("brier", "ece", "log_loss") if kind == "binary" and c in result.metrics]
    cols += extra
    rows = [("model", result.metrics)] + [(f"baseline: {n}", m) for n, m in result.baselines.items()]
    best = {}
    for c in cols:
        vals = [float(m[c]) for _, m in rows if isinstance(m.get(c), (int, float)) and np.isfinite(m.get(c))]
        if vals:
            best[c] = min(vals) if c in LOWER_IS_BETTER else max(vals)
    head = "".join(f"<th scope='col'>{_e(c)}</th>" for c in cols)
    body = []
    for name, m in rows:
        cells = []
        for c in cols:
            v = m.get(c)
            is_best = isinstance(v, (int, float)) and c in best and np.isfinite(v) and float(v) == best[c]
            cells.append(f"<td class='{'best' if is_best else ''}'>{_fmt(v)}</td>")
        err = f" <span class='muted'>({_e(m['error'])})</span>" if isinstance(m.get("error"), str) else ""
        body.append(f"<tr><th scope='row'>{_e(name)}{err}</th>{''.join(cells)}</tr>")
    return (f"<div class='wrap'><table id='comparison'><thead><tr><th scope='col'>scored by</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _binary_curves(y: np.ndarray, scores: dict[str, np.ndarray], calibration: dict[str, np.ndarray]) -> list[str]:
    from sklearn import metrics as skm

    from crmscore.models.evaluation import expected_calibration_error

    roc, pr, gains = [], [], []
    for name, s in scores.items():
        s = np.asarray(s, float)
        fpr, tpr, _ = skm.roc_curve(y, s)
        roc.append((f"{name} (AUC {skm.roc_auc_score(y, s):.3f})", fpr, tpr))
        prec, rec, _ = skm.precision_recall_curve(y, s)
        pr.append((f"{name} (AP {skm.average_precision_score(y, s):.3f})", rec[::-1], prec[::-1]))
        order = np.argsort(-s, kind="stable")
        g = np.concatenate([[0], np.cumsum(y[order]) / max(y.sum(), 1)])
        gains.append((name, np.linspace(0, 1, len(g)), g))
    cal = []
    for name, p in calibration.items():
        p = np.asarray(p, float)
        edges = np.linspace(0, 1, 11)
        idx = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
        xs, ys = [], []
        for b in range(10):
            m = idx == b
            if m.sum() >= 5:
                xs.append(float(p[m].mean()))
                ys.append(float(y[m].mean()))
        cal.append((f"{name} (ECE {expected_calibration_error(y, p):.3f})", xs, ys))
    return [
        charts.line_chart_svg(roc, title="ROC", xlabel="false positive rate", ylabel="true positive rate",
                              diagonal=True, cls="roc"),
        charts.line_chart_svg(pr, title="Precision-recall", xlabel="recall", ylabel="precision",
                              hline=float(y.mean()), cls="pr"),
        charts.line_chart_svg(gains, title="Cumulative gains", xlabel="share of customers contacted (highest first)",
                              ylabel="share of positives reached", diagonal=True, cls="gains"),
        charts.line_chart_svg(cal, title="Calibration", xlabel="predicted probability", ylabel="observed rate",
                              diagonal=True, markers=True, cls="calibration"),
    ]


def _amount_curves(y: np.ndarray, preds: dict[str, np.ndarray]) -> list[str]:
    series = []
    for name, p in preds.items():
        order = np.argsort(-np.asarray(p, float), kind="stable")
        share = np.concatenate([[0], np.cumsum(y[order]) / max(y.sum(), 1e-12)])
        series.append((name, np.linspace(0, 1, len(share)), share))
    return [charts.line_chart_svg(series, title="Spend captured", xlabel="share of customers (highest prediction first)",
                                  ylabel="share of actual spend", diagonal=True, cls="gains")]


def shap_section(result: TrainResult, sample: int = 300) -> tuple[str, str]:
    """(global drivers bar chart, beeswarm) of a sample of test rows."""
    bundle, ds = result.bundle, result.dataset
    model = bundle.model
    if bundle.kind == "multilabel":
        heads = [t for t in bundle.targets if model.head(t) is not None]
        if not heads:
            return "", ""
        model = model.head(max(heads, key=lambda t: model.rates_.get(t, 0)))
    part = ds.test.sample(min(sample, len(ds.test)), random_state=17) if len(ds.test) else ds.test
    if not len(part):
        return "", ""
    expl = model.explain(part[ds.features])
    C = expl.contributions
    enc = model._encode(part[ds.features])
    X = np.column_stack([enc[c].cat.codes.to_numpy().astype(float) if c in model.categories_ else enc[c].to_numpy(float)
                         for c in ds.features])
    importance = bundle.info.get("global_importance") or dict(zip(ds.features, np.abs(C).mean(0).tolist()))
    top = [n for n, _ in sorted(importance.items(), key=lambda kv: -kv[1]) if n in ds.features][:15]

    def desc(n: str) -> str:
        f = ds.feature_set.get(n)
        return description(f) if f is not None else n

    bars = charts.hbar_svg([(n, float(importance[n]), desc(n)) for n in top], title="Mean |SHAP| (global drivers)",
                           cls="drivers")
    rows = [{"feature": n, "shap": C[:, ds.features.index(n)].tolist(),
             "value": charts.value_ranks(X[:, ds.features.index(n)])}
            for n in top[:10]]
    swarm = charts.beeswarm_svg(rows, [r["feature"] for r in rows], title="SHAP summary",
                                axis_label="SHAP value (raw model scale)", low_label="low", high_label="high",
                                value_label="feature value", missing_label="missing")
    return bars, swarm


def evaluation_report(result: TrainResult) -> str:
    """The report as one HTML string."""
    bundle, ds = result.bundle, result.dataset
    y = ds.test["label"].to_numpy(float) if "label" in ds.test else np.array([])
    curves = result.curves or {}
    scores = {**(curves.get("scores") or {}), **(curves.get("baselines") or {})}
    figures: list[str] = []
    notes: list[str] = []
    try:  # a chart that cannot be drawn is named in the report; it never fails the training run
        if bundle.kind == "binary" and len(y) and scores:
            calibration = {"calibrated": curves["scores"]["model"]}
            if "uncalibrated" in curves:
                calibration = {"uncalibrated": curves["uncalibrated"], **calibration}
            figures = _binary_curves(y, {k: np.asarray(v, float) for k, v in scores.items() if np.ndim(v) == 1},
                                     calibration)
        elif bundle.kind == "regression" and len(y) and scores:
            figures = _amount_curves(y, {k: np.asarray(v, float) for k, v in scores.items() if np.ndim(v) == 1})
    except Exception as exc:  # noqa: BLE001
        log.warning("evaluation report: curves left out: %s", exc)
        notes.append(f"curves left out: {exc}")
    try:
        bars, swarm = shap_section(result)
    except Exception as exc:  # noqa: BLE001
        log.warning("evaluation report: SHAP summary left out: %s", exc)
        bars, swarm = "", ""
        notes.append(f"SHAP summary left out: {exc}")
    primary = bundle.primary_metric
    facts = {"task": result.task, "mode": ds.mode, "run id": result.run_id or "—",
             "registered version": result.version or "—", "trained at": bundle.info.get("trained_at", "—"),
             "feature set": ds.feature_set.version, "features": len(ds.features),
             **{f"cutoff {k}": (str(v) if not isinstance(v, list) else f"{len(v)}: {str(v[0])[:10]} .. {str(v[-1])[:10]}")
                for k, v in ds.cutoffs.items()},
             "rows (train / valid / test)": f"{len(ds.train):,} / {len(ds.valid):,} / {len(ds.test):,}",
             "test positive rate": f"{float((y > 0).mean()):.1%}" if len(y) else "—",
             primary: _fmt(result.metrics.get(primary)),
             f"best baseline {primary}": _fmt(result.metrics.get(f"best_baseline_{primary}"))}
    dl = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts.items())
    figs = "".join(f"<section class='card'>{f}</section>" for f in figures)
    shap = (f"<div class='grid'><section class='card'><h2>Global drivers</h2>{bars}</section>"
            f"<section class='card'><h2>SHAP summary (test rows)</h2>{swarm}</section></div>") if bars else ""
    title = f"{result.task}: evaluation report"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width, initial-scale=1'><title>{_e(title)}</title><style>{CSS}</style></head>"
            f"<body><main><h1>{_e(title)} <span class='grade grade-{_e(result.grade)}'>grade {_e(result.grade)}"
            f"</span></h1><p class='muted'>Out-of-time test: the model and every baseline score the same test rows. "
            f"Grade A: {_e(primary)} at least {_fmt(result.metrics.get('grade_margin', GRADE_MARGIN))} above the best "
            f"baseline; B: above it; C: not above it. "
            f"Written {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC by crmscore.</p>"
            f"<section class='card'><dl>{dl}</dl></section>"
            f"<section class='card'><h2>Model against baselines</h2>{comparison_table(result)}</section>"
            f"<div class='grid'>{figs}</div>{shap}"
            f"{''.join(f'<p class=muted>{_e(n)}</p>' for n in notes)}</main></body></html>")


def write_evaluation_report(result: TrainResult, path: str | Path) -> Path:
    """Write the report to path (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(evaluation_report(result), encoding="utf-8")
    return path
