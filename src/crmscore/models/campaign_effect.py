"""Did it work? The measured effect of a finished campaign, from its randomised control group.

The effect is the treated minus the control outcome rate (bought within the horizon after treatment; or mean
spend), with a normal-approximation confidence interval (Welch standard error: sqrt(var_t / n_t + var_c / n_c)).

CUPED (Deng et al. 2013, "Improving the sensitivity of online controlled experiments by utilizing
pre-experiment data"): each customer's outcome minus theta x (their pre-period value - its mean), with the
same measure over the horizon before treatment as the pre-period value and theta = cov(y, pre) / var(pre)
over all rows. Treatment was assigned at random, so the pre-period value is independent of it: the adjusted
difference estimates the same effect, with less variance when past behaviour predicts the outcome. It is
reported next to the plain estimate and used only when it narrows the interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def _diff(y: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    yt, yc = y[t == 1], y[t == 0]
    if len(yt) < 2 or len(yc) < 2:
        return float("nan"), float("nan")
    return float(yt.mean() - yc.mean()), math.sqrt(yt.var(ddof=1) / len(yt) + yc.var(ddof=1) / len(yc))


def measured_effect(y: Any, t: Any, pre: Any = None, level: float = 0.95) -> dict[str, Any]:
    """The campaign's effect on rows y (outcome), t (1 treated / 0 control), optionally pre (pre-period value).

    Returns treated, control (row counts), rate_treated, rate_control, effect, ci_low, ci_high (the plain
    difference), and with pre: effect_cuped, ci_low_cuped, ci_high_cuped, theta, variance_reduction (share of
    the variance removed); `method` says which estimate `best_*` holds (CUPED when its interval is narrower).
    """
    y, t = np.asarray(y, float), np.asarray(t, float)
    z = _z(level)
    effect, se = _diff(y, t)
    out: dict[str, Any] = {"treated": int((t == 1).sum()), "control": int((t == 0).sum()),
                           "rate_treated": float(y[t == 1].mean()) if (t == 1).any() else float("nan"),
                           "rate_control": float(y[t == 0].mean()) if (t == 0).any() else float("nan"),
                           "effect": effect, "ci_low": effect - z * se, "ci_high": effect + z * se, "level": level,
                           "method": "difference", "best_effect": effect, "best_ci_low": effect - z * se,
                           "best_ci_high": effect + z * se}
    if pre is not None:
        x = np.asarray(pre, float)
        var = float(x.var())
        theta = float(np.cov(y, x, ddof=0)[0, 1] / var) if var > 0 else 0.0
        adjusted = y - theta * (x - x.mean())
        eff_c, se_c = _diff(adjusted, t)
        out.update({"theta": theta, "effect_cuped": eff_c, "ci_low_cuped": eff_c - z * se_c,
                    "ci_high_cuped": eff_c + z * se_c,
                    "variance_reduction": 1 - float(adjusted.var() / y.var()) if y.var() > 0 else 0.0})
        if np.isfinite(se_c) and se_c < se:
            out.update({"method": "cuped", "best_effect": eff_c, "best_ci_low": eff_c - z * se_c,
                        "best_ci_high": eff_c + z * se_c})
    return out


def effect_by_segment(rows: pd.DataFrame, outcome: str, pre: str | None, by: str, level: float = 0.95,
                      min_rows: int = 30) -> pd.DataFrame:
    """One row for everyone (`segment` = 'all') and one per value of column `by` with at least min_rows rows in
    each group, from a frame with `treated`, the outcome column and optionally the pre-period column."""
    parts = [("all", rows)] + [(str(k), g) for k, g in rows.groupby(by, dropna=False, observed=True)]
    out = []
    for name, g in parts:
        t = g["treated"].to_numpy()
        if (t == 1).sum() < min_rows or (t == 0).sum() < min_rows:
            continue
        out.append({"segment": name, **measured_effect(g[outcome], t, g[pre] if pre else None, level)})
    return pd.DataFrame(out)


def campaign_effect(data: Any, campaign: str, horizon_days: int = 30, outcome: str = "purchase",
                    by: str = "lifecycle_stage", level: float = 0.95) -> pd.DataFrame:
    """The measured effect of `campaign` (treatments table + purchases), for everyone and per segment at the
    campaign's start (`by`: lifecycle_stage or rfm_segment), CUPED with the same outcome over the horizon before
    each customer's treatment."""
    from crmscore.features.build import build_features
    from crmscore.models.uplift import campaign_rows

    rows = campaign_rows(data, campaign, horizon_days)
    start = pd.Timestamp(rows["treated_at"].min()).normalize()
    segs = build_features(data, start)[["customer_id", "rfm_segment", "lifecycle_stage"]]
    rows = rows.merge(segs, on="customer_id", how="left")
    rows[by] = rows[by].astype("string").fillna("unknown")
    pre = {"purchase": "pre_purchase", "spend": "pre_spend"}[outcome]
    return effect_by_segment(rows, outcome, pre, by, level)
