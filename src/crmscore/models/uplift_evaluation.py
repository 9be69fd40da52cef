"""Measuring an uplift ranking on experiment rows (treated and control, outcome known), as a marketer reads it.

Every measure takes the rows' outcome y (bought 1/0, or an amount), treatment t (1/0) and a score (higher =
target first) and asks: if we contacted the top share of customers by this score, how many more purchases
would the campaign bring than contacting none of them? Within the top share the treated and control rows
are a randomised experiment, so the difference of their outcome rates is the measured lift there.

- Qini curve: incremental outcomes among the top k, Q(k) = Y_t(k) - Y_c(k) N_t(k) / N_c(k) (Radcliffe 2007).
- Uplift curve: (rate_t(k) - rate_c(k)) x k, the same incremental outcomes with rates per group.
- Both are shown per customer of the test rows (divided by N) against the share targeted, so the random
  line is a straight line from 0 to the average effect. AUUC is the area under the uplift curve; the Qini
  coefficient is the area between the Qini curve and the random line (0 = no better than random; in
  incremental outcomes per customer, averaged over every share targeted). Scores that tie are taken
  together (thresholds at distinct scores), so a constant score is exactly the random line.
Numbers agree with scikit-uplift's qini_curve / uplift_curve (checked once when this was written; the
library itself is not a dependency, see crmscore.models.uplift_learner).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _as_arrays(y: Any, t: Any, score: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, t, s = np.asarray(y, float), np.asarray(t, float), np.asarray(score, float)
    if not (len(y) == len(t) == len(s)):
        raise ValueError("y, t and score must have the same length")
    return y, t, s


def uplift_table(y: Any, t: Any, score: Any) -> pd.DataFrame:
    """Cumulative counts at each distinct score from the top: share targeted, n_t, n_c, y_t, y_c, `qini` and
    `uplift` (incremental outcomes per customer of all rows); the first row is share 0."""
    return pd.DataFrame(_curves(*_as_arrays(y, t, score)))


def _curves(y: np.ndarray, t: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """uplift_table's columns as arrays (the bootstrap in uplift_learner calls this a thousand times)."""
    order = np.argsort(-s, kind="mergesort")
    y, t, s = y[order], t[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the end of each tie group
    n_t, n_c = np.cumsum(t)[last], np.cumsum(1 - t)[last]
    y_t, y_c = np.cumsum(y * t)[last], np.cumsum(y * (1 - t))[last]
    n = len(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        qini = y_t - np.where(n_c > 0, y_c * n_t / n_c, 0.0)
        rate_t = np.where(n_t > 0, y_t / n_t, 0.0)
        rate_c = np.where(n_c > 0, y_c / n_c, 0.0)
    uplift = (rate_t - rate_c) * (n_t + n_c)
    columns = {"share": (last + 1) / n, "n_t": n_t, "n_c": n_c, "y_t": y_t, "y_c": y_c, "qini": qini / n,
               "uplift": uplift / n}
    return {k: np.r_[0.0, v.astype(float)] for k, v in columns.items()}


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def auuc(y: Any, t: Any, score: Any) -> float:
    """The area under the uplift curve alone (uplift_metrics' `auuc`, without the rest)."""
    curves = _curves(*_as_arrays(y, t, score))
    return _area(curves["share"], curves["uplift"])


def average_effect(y: Any, t: Any) -> float:
    """Treated minus control outcome rate over all rows."""
    y, t = np.asarray(y, float), np.asarray(t, float)
    return float(y[t == 1].mean() - y[t == 0].mean())


def uplift_metrics(y: Any, t: Any, score: Any, *, spend: Any = None, share: float = 0.3) -> dict[str, float]:
    """`qini` (coefficient, the primary metric), `auuc`, `auuc_random`, `ate`, and at the chosen share targeted
    (top `share` by score): `lift_at_share` (treated - control rate there), `incremental_purchases_at_share` and,
    with spend, `incremental_revenue_at_share` (scaled to everyone in that share being treated)."""
    tab = uplift_table(y, t, score)
    x = tab["share"].to_numpy()
    ate = average_effect(y, t)
    q_end = float(tab["qini"].iloc[-1])
    out = {"qini": _area(x, tab["qini"].to_numpy()) - q_end / 2, "auuc": _area(x, tab["uplift"].to_numpy()),
           "auuc_random": ate / 2, "ate": ate, "test_rows": float(len(np.asarray(y))),
           "treated_share": float(np.mean(np.asarray(t, float))), "share_targeted": share}
    out.update(at_share(y, t, score, share, spend))
    return out


# The grade's A margin on the Qini scale: a tenth of what random targeting gets (|AUUC random| = |average effect| / 2).
# A fixed 0.02 (a ROC-AUC's margin) is twice a whole Qini coefficient at the shared experiments' ~1-point effects;
# a tenth is about what a bootstrap of 10,000 test rows can tell apart from nothing.
GRADE_SHARE_OF_RANDOM = 0.1


def grade_margin(metrics: dict[str, float]) -> float:
    """The Qini gain over the best baseline that earns an A (Task.grade_margin), in incremental outcomes per
    customer: GRADE_SHARE_OF_RANDOM x |AUUC of random targeting| on the same test rows."""
    return GRADE_SHARE_OF_RANDOM * abs(float(metrics["auuc_random"]))


def at_share(y: Any, t: Any, score: Any, share: float, spend: Any = None) -> dict[str, float]:
    """Targeting the top `share` of rows by score: measured lift there, and incremental purchases (and revenue)
    if every one of them were treated, against contacting them at random from the whole population."""
    y, t, s = _as_arrays(y, t, score)
    k = max(1, int(round(share * len(s))))
    top = np.argsort(-s, kind="mergesort")[:k]
    tt, yy = t[top], y[top]
    lift = float(yy[tt == 1].mean() - yy[tt == 0].mean()) if (tt == 1).any() and (tt == 0).any() else float("nan")
    out = {"lift_at_share": lift, "incremental_purchases_at_share": lift * k,
           "incremental_purchases_random": average_effect(y, t) * k}
    if spend is not None:
        m = np.asarray(spend, float)[top]
        rev = float(m[tt == 1].mean() - m[tt == 0].mean()) if (tt == 1).any() and (tt == 0).any() else float("nan")
        out["incremental_revenue_at_share"] = rev * k
        full = np.asarray(spend, float)
        out["incremental_revenue_random"] = float(full[t == 1].mean() - full[t == 0].mean()) * k
    return out


def uplift_by_decile(y: Any, t: Any, score: Any) -> pd.DataFrame:
    """Deciles of the score (1 = highest tenth): treated and control rows, their outcome rates and the measured
    uplift, next to the average effect (what random targeting gets in every decile)."""
    y, t, s = _as_arrays(y, t, score)
    rank = pd.Series(-s).rank(method="first").to_numpy()
    decile = np.minimum(10, 1 + ((rank - 1) * 10 // len(s)).astype(int))
    df = pd.DataFrame({"decile": decile, "y": y, "t": t})
    rows = []
    for d, g in df.groupby("decile"):
        tr, co = g[g["t"] == 1], g[g["t"] == 0]
        rate_t = float(tr["y"].mean()) if len(tr) else float("nan")
        rate_c = float(co["y"].mean()) if len(co) else float("nan")
        rows.append({"decile": int(d), "rows": len(g), "treated": len(tr), "control": len(co),
                     "rate_treated": rate_t, "rate_control": rate_c, "uplift": rate_t - rate_c})
    out = pd.DataFrame(rows)
    out["random"] = average_effect(y, t)
    return out


def save_uplift_plots(y: Any, t: Any, scores: dict[str, np.ndarray], out_dir: Path, title: str) -> dict[str, Path]:
    """qini.png and uplift_curve.png (every score against the random line) and deciles.png (the model's uplift
    by decile against random targeting). Returns the files by name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for col, name, ylabel in (("qini", "qini", "incremental purchases per customer (Qini)"),
                              ("uplift", "uplift_curve", "incremental purchases per customer (uplift)")):
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        end = 0.0
        for label, sc in scores.items():
            tab = uplift_table(y, t, sc)
            ax.plot(tab["share"], tab[col], label=label, lw=2 if label == "model" else 1.2)
            end = float(tab[col].iloc[-1])
        ax.plot([0, 1], [0, end], "k--", lw=1, label="random targeting")
        ax.set_xlabel("share of customers targeted (highest score first)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {name.replace('_', ' ')}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        files[name] = out_dir / f"{name}.png"
        fig.savefig(files[name], dpi=110)
        plt.close(fig)
    dec = uplift_by_decile(y, t, scores["model"])
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.bar(dec["decile"], dec["uplift"], color=["#2a7" if u > 0 else "#c44" for u in dec["uplift"]])
    ax.axhline(dec["random"].iloc[0], color="k", ls="--", lw=1, label="random targeting (average effect)")
    ax.set_xticks(dec["decile"])
    ax.set_xlabel("decile of predicted lift (1 = highest)")
    ax.set_ylabel("measured lift (treated - control rate)")
    ax.set_title(f"{title}: uplift by decile")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files["deciles"] = out_dir / "deciles.png"
    fig.savefig(files["deciles"], dpi=110)
    plt.close(fig)
    return files
