"""The campaign report of an uplift run, for marketers: one self-contained HTML file (inline CSS, plots as
embedded PNG, no script, nothing fetched), logged with the run as `evaluation/report.html` and kept in the
model's bundle so the operations page shows it without the tracking server.

It answers, on the held-out experiment rows: whom should we contact, and what does it bring? The Qini and
uplift curves and the uplift by decile against random targeting, the incremental purchases (and revenue) at
the chosen share targeted by the model and by each baseline (target everyone, by churn score, by purchase
probability), and how the customers split into persuadables, sure things, lost causes and do-not-disturb.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crmscore.models.quadrants import QUADRANTS, quadrant
from crmscore.models.uplift_evaluation import GRADE_SHARE_OF_RANDOM, uplift_by_decile

if TYPE_CHECKING:
    from crmscore.models.run import TrainResult

CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#0f172a;background:#f8fafc;margin:0;
padding:1rem;line-height:1.45;font-size:14px}main{max-width:1100px;margin:0 auto}h1{font-size:1.4rem}h2{font-size:1.05rem}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:10px;padding:1rem;margin:0 0 1rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{padding:.3rem .5rem;border-bottom:1px solid #e2e8f0;
text-align:right;font-variant-numeric:tabular-nums}th:first-child,td:first-child{text-align:left}.muted{color:#64748b}
img{max-width:100%;height:auto}.grid{display:grid;grid-template-columns:1fr;gap:1rem}
@media(min-width:900px){.grid{grid-template-columns:1fr 1fr}}td.best{font-weight:700;color:#1d4ed8}"""
QUADRANT_TEXT = {"persuadable": "buy because of the campaign: contact them",
                 "sure_thing": "buy anyway: the contact is wasted",
                 "lost_cause": "buy neither way: the contact is wasted",
                 "do_not_disturb": "the campaign puts them off: leave them alone"}


def _learner(method: str | None, m: dict[str, Any]) -> str:
    """The chosen learner's name and every candidate's AUUC where it was chosen (out-of-fold or validation)."""
    from crmscore.models.uplift_learner import METHOD_NAMES, SELECTIONS

    where = next((w for w in SELECTIONS if any(k.startswith(f"{w}_auuc_") for k in m)), "validation")
    scores = ", ".join(f"{METHOD_NAMES.get(k.removeprefix(f'{where}_auuc_'), k)} {v:.4f} "
                       f"(gap to the best +- {_num(m.get(f'{where}_gap_se_' + k.removeprefix(f'{where}_auuc_')))})"
                       for k, v in m.items() if k.startswith(f"{where}_auuc_"))
    label = "out-of-fold AUUC over the training and validation rows" if where == "out_of_fold" else "validation AUUC"
    return (f"{METHOD_NAMES.get(method or '', method or '—')}: the most constrained within one standard error of "
            f"the best ({label}: {scores})")


def _num(v: Any, digits: int = 4) -> str:
    return f"{float(v):,.{digits}f}" if isinstance(v, (int, float, np.floating)) and np.isfinite(v) else "—"


def _img(path: Path, alt: str) -> str:
    if not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def write_campaign_report(result: TrainResult, out: Path, plots: Path) -> Path:
    """Write the report of an uplift TrainResult to `out`, with the PNGs from `plots` embedded."""
    ds, m, s = result.dataset, result.metrics, result.bundle.settings
    y, t = ds.test["label"].to_numpy(float), ds.test["treated"].to_numpy(float)
    lift = result.curves["scores"]["model"]
    share = float(s.get("share", 0.3))
    outcome = "purchase" if result.bundle.info.get("outcome") == "binary" else "spend"
    rows = [("model (predicted lift)", m), *((f"baseline: {n}", b) for n, b in result.baselines.items())]
    best_qini = max(r[1].get("qini", -np.inf) for r in rows)
    cmp = "".join(
        f"<tr><td>{escape(name)}</td><td class=\"{'best' if r.get('qini') == best_qini else ''}\">{_num(r.get('qini'))}"
        f"</td><td>{_num(r.get('auuc'))}</td><td>{_num(r.get('lift_at_share'))}</td>"
        f"<td>{_num(r.get('incremental_purchases_at_share'), 1)}</td><td>{_num(r.get('incremental_revenue_at_share'), 2)}"
        f"</td></tr>" for name, r in rows)
    dec = uplift_by_decile(y, t, lift)
    dec_rows = "".join(f"<tr><td>{int(d.decile)}</td><td>{int(d.treated):,}</td><td>{int(d.control):,}</td>"
                       f"<td>{_num(d.rate_treated)}</td><td>{_num(d.rate_control)}</td><td>{_num(d.uplift)}</td>"
                       f"<td>{_num(d.random)}</td></tr>" for d in dec.itertuples())
    p0 = result.curves.get("p_control")
    quad = quadrant(lift, p0 if p0 is not None else np.zeros(len(lift)), float(s.get("min_lift", 0.02)),
                    float(s.get("sure_thing_probability", 0.5)))
    counts = pd.Series(quad).value_counts()
    quad_rows = "".join(f"<tr><td>{q.replace('_', ' ')}</td><td>{int(counts.get(q, 0)):,}</td>"
                        f"<td>{counts.get(q, 0) / max(len(quad), 1):.1%}</td><td>{QUADRANT_TEXT[q]}</td></tr>"
                        for q in QUADRANTS)
    k = int(round(share * len(y)))
    headline = (f"Contacting the {share:.0%} of customers with the highest predicted lift ({k:,} of the {len(y):,} "
                f"test customers) brings {_num(m.get('incremental_purchases_at_share'), 1)} more "
                f"{'purchases' if outcome == 'purchase' else 'units of spend'} than not contacting them; contacting "
                f"{k:,} at random brings {_num(m.get('incremental_purchases_random'), 1)}.")
    if "incremental_revenue_at_share" in m:
        headline += (f" Revenue: {_num(m['incremental_revenue_at_share'], 2)} incremental against "
                     f"{_num(m.get('incremental_revenue_random'), 2)} at random.")
    facts = {"campaign": s.get("campaign", ""), "outcome": f"{outcome} within {s.get('horizon_days')} days of treatment",
             "features": f"before {ds.cutoffs.get('features_before', '—')}" if ds.mode == "transactions" else "table",
             "split": ds.cutoffs.get("split", ""), "test customers": f"{len(y):,} ({t.mean():.0%} treated)",
             "measured average effect": _num(m.get("ate")),
             ("learner (chosen on validation rows)" if result.bundle.info.get("uplift_selection") == "validation"
              else "learner (chosen out of fold on training and validation rows)"):
                 _learner(result.bundle.info.get("uplift_method"), m),
             "grade": f"{result.grade} (A: Qini at least {_num(m.get('grade_margin'), 5)} above the best baseline, "
                      f"{GRADE_SHARE_OF_RANDOM:.0%} of random targeting's AUUC; B: above it; C: not above it)",
             "run": result.run_id or ""}
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Campaign report: {escape(result.task)}</title>
<style>{CSS}</style></head><body><main>
<h1>Campaign report: {escape(str(s.get('campaign', result.task)))}</h1>
<section class="card"><p>{escape(headline)}</p><table><tbody>{''.join(f'<tr><th>{escape(k_)}</th><td>{escape(str(v))}</td></tr>' for k_, v in facts.items())}</tbody></table></section>
<section class="card"><h2>Model against other ways of choosing whom to contact (held-out experiment rows)</h2>
<table><thead><tr><th>targeting</th><th>Qini coefficient</th><th>AUUC (random {_num(m.get('auuc_random'))})</th>
<th>lift in top {share:.0%}</th><th>incremental purchases, top {share:.0%}</th><th>incremental revenue, top {share:.0%}</th></tr></thead>
<tbody>{cmp}</tbody></table>
<p class="muted">Qini coefficient: area between the Qini curve and random targeting (0 = random), in incremental outcomes per
customer averaged over every share targeted. Lift: treated minus control outcome rate among the customers chosen;
both groups were assigned at random, so the difference is the campaign's effect there.</p></section>
<div class="grid"><section class="card"><h2>Qini curve</h2>{_img(plots / 'qini.png', 'Qini curve')}</section>
<section class="card"><h2>Uplift curve</h2>{_img(plots / 'uplift_curve.png', 'uplift curve')}</section></div>
<div class="grid"><section class="card"><h2>Uplift by decile of predicted lift</h2>{_img(plots / 'deciles.png', 'uplift by decile')}
<table><thead><tr><th>decile</th><th>treated</th><th>control</th><th>rate treated</th><th>rate control</th><th>lift</th>
<th>random</th></tr></thead><tbody>{dec_rows}</tbody></table></section>
<section class="card"><h2>Who is who</h2><table><thead><tr><th>quadrant</th><th>customers</th><th>share</th><th>meaning</th></tr></thead>
<tbody>{quad_rows}</tbody></table><p class="muted">From the predicted lift (persuadable at or above {_num(s.get('min_lift'), 3)},
do-not-disturb at or below minus it) and the probability of buying without the campaign (sure thing at or above
{_num(s.get('sure_thing_probability'), 2)}). Each customer's reasons explain the predicted lift itself (SHAP of the
chosen learner's lift, exact and additive); they say what makes a customer respond, not why they buy.</p></section></div>
</main></body></html>"""
    out.write_text(html)
    return out
