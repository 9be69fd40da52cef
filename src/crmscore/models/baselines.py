"""Honest baselines, scored on the same out-of-time test rows as the model.

Each returns a score per test row where higher means more likely positive for the task; ranking
metrics (ROC-AUC, PR-AUC, lift, capture) compare them with the model.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from crmscore.models.tasks import Baseline, BaselineInput

log = logging.getLogger(__name__)


def _recency(inp: BaselineInput) -> np.ndarray:
    return inp.test["recency_days"].fillna(1e9).to_numpy(float)


def _rfm(inp: BaselineInput) -> np.ndarray:
    return -(inp.test["rfm_r"] + inp.test["rfm_f"] + inp.test["rfm_m"]).to_numpy(float)


def _frequency(inp: BaselineInput) -> np.ndarray:
    col = "frequency_365d" if "frequency_365d" in inp.test else "frequency_total"
    return inp.test[col].to_numpy(float)


def bgnbd_summary(df: pd.DataFrame) -> pd.DataFrame:
    """BG/NBD inputs from the point-in-time features, in weeks: repeat orders, time from first to last
    order, and time from first order to the cutoff."""
    first = df["first_purchase_days"].to_numpy(float)
    last = df["recency_days"].to_numpy(float)
    return pd.DataFrame({
        "frequency": np.maximum(df["frequency_total"].to_numpy(float) - 1, 0),
        "recency": np.maximum(first - last, 0) / 7.0,
        "T": np.maximum(first, 1e-3) / 7.0,
    }, index=df.index)


def bgnbd_expected_purchases(fit_rows: pd.DataFrame, score_rows: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Expected orders in the next horizon_days from a BG/NBD model (lifetimes) fitted on fit_rows' history
    before their cutoff (no labels involved)."""
    from lifetimes import BetaGeoFitter

    fit = bgnbd_summary(fit_rows.dropna(subset=["first_purchase_days"]))
    score = bgnbd_summary(score_rows.fillna({"first_purchase_days": 0, "recency_days": 0}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgf = BetaGeoFitter(penalizer_coef=0.001)
        bgf.fit(fit["frequency"], fit["recency"], fit["T"], maxiter=300)
        expected = bgf.conditional_expected_number_of_purchases_up_to_time(
            horizon_days / 7.0, score["frequency"], score["recency"], score["T"])
    log.info("BG/NBD fitted: %s", {k: round(float(v), 4) for k, v in bgf.params_.items()})
    return np.nan_to_num(np.asarray(expected, float), nan=0.0)


def _bgnbd_inactive(inp: BaselineInput) -> np.ndarray:
    # fitted on the test cutoff's own purchase history: BG/NBD is unsupervised, this uses nothing after it
    return -bgnbd_expected_purchases(inp.test, inp.test, inp.settings.horizon_days)


def _bgnbd_active(inp: BaselineInput) -> np.ndarray:
    return bgnbd_expected_purchases(inp.test, inp.test, inp.settings.horizon_days)


def _logistic(inp: BaselineInput) -> np.ndarray:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cats = [c for c in inp.features if c in inp.categorical]
    nums = [c for c in inp.features if c not in inp.categorical]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore")), cats),
    ])
    model = make_pipeline(pre, LogisticRegression(max_iter=2000, C=1.0))

    def prep(df: pd.DataFrame) -> pd.DataFrame:
        out = df[inp.features].copy()
        for c in cats:
            out[c] = out[c].astype("string").astype(object).where(out[c].notna(), np.nan)
        return out

    model.fit(prep(inp.train), inp.train["label"].to_numpy())
    return model.predict_proba(prep(inp.test))[:, 1]


RECENCY = Baseline("recency", "days since the last purchase (longer = more likely)", _recency)
RFM = Baseline("rfm", "RFM score R+F+M (lower = more likely)", _rfm)
FREQUENCY = Baseline("frequency", "orders in the last 365 days (more = more likely)", _frequency)
BGNBD_INACTIVE = Baseline("bgnbd", "BG/NBD expected purchases over the horizon (fewer = more likely)",
                          _bgnbd_inactive)
BGNBD_ACTIVE = Baseline("bgnbd", "BG/NBD expected purchases over the horizon (more = more likely)", _bgnbd_active)
RECENCY_ACTIVE = Baseline("recency", "days since the last purchase (shorter = more likely)",
                          lambda inp: -_recency(inp))
LOGISTIC = Baseline("logistic", "logistic regression on the same features (one-hot categories)", _logistic)
