"""When will a customer buy a category: days from the cutoff to the first purchase of it, for next-category.

A campaign offering a cross-sell category is worth timing ("cross-sell at the right time"): the ranking says
which category, this says how soon. One set of quantile models (10%, 50%, 90%; LightGBM) serves every target
category: each row is a (customer, category) pair with the customer's features, that category's own purchase
history under generic names (days since bought, orders with it, its order and spend share) and the category
itself, fitted on the pairs where the customer bought the category within the horizon. So, like days_to_next
of next-purchase, read the prediction as "if they buy it within the horizon".

Evaluated on the held-out buyers: the test customers who bought their top cross-sell category in the horizon,
the median's MAE against the usual-gap baseline (the customer's mean gap between orders minus the days since
the last one) and the 80% interval's coverage.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from crmscore.features.definitions import slug
from crmscore.models.bundle import CompanionModels, days_column
from crmscore.models.estimator import CustomerModel, small_data_threads

NAME = "days_to_category"
QUANTILES = (0.1, 0.5, 0.9)
CATEGORY_COLUMN = "target_category"
_HISTORY = re.compile(r"^category_(recency|orders_\d+d|order_share)_")


def _generic(target: str, windows: list[int]) -> dict[str, str]:
    """The target's own columns -> their generic pair names."""
    s = slug(target)
    cols = {f"category_recency_{s}": "cat_recency", f"category_order_share_{s}": "cat_order_share",
            f"category_share_{s}": "cat_spend_share"}
    cols.update({f"category_orders_{w}d_{s}": f"cat_orders_{w}d" for w in windows})
    return cols


def _windows(features: list[str]) -> list[int]:
    return sorted({int(m.group(1)) for f in features if (m := re.match(r"^category_orders_(\d+)d_", f))})


def customer_features(features: list[str]) -> list[str]:
    """The model's features that describe the customer (every per-category purchase-history column left out)."""
    return [f for f in features if not _HISTORY.match(f)]


def pair_frame(df: pd.DataFrame, features: list[str], pairs: list[tuple[int, str]]) -> pd.DataFrame:
    """One row per (row position in df, category): the customer's features, the category's own history under
    generic names, and `target_category`."""
    if not pairs:
        return pd.DataFrame(columns=[*customer_features(features), CATEGORY_COLUMN])
    windows = _windows(features)
    base = customer_features(features)
    rows = np.fromiter((r for r, _ in pairs), int, len(pairs))
    cats = np.asarray([t for _, t in pairs], dtype=object)
    out = df.iloc[rows][base].reset_index(drop=True)
    generic = sorted(set(_generic("x", windows).values()))
    values = {g: np.full(len(pairs), np.nan) for g in generic}
    for t in pd.unique(cats):
        at = np.flatnonzero(cats == t)
        for col, g in _generic(t, windows).items():
            if col in df.columns:
                values[g][at] = pd.to_numeric(df[col].iloc[rows[at]], errors="coerce").to_numpy(float)
    for g in generic:
        out[g] = values[g]
    # the usual gaps as the differences a tree cannot form itself: the customer's mean gap between orders minus
    # the days since the last order (the usual-gap baseline), and the same for the category (its orders in the
    # longest window spread over that window, minus the days since it was bought)
    if {"gap_mean_days", "recency_days"} <= set(out.columns):
        out["usual_gap_left"] = out["gap_mean_days"].astype(float) - out["recency_days"].astype(float)
    if windows:
        longest = max(windows)
        cat_gap = longest / out[f"cat_orders_{longest}d"].where(out[f"cat_orders_{longest}d"] > 0)
        out["cat_usual_gap_left"] = cat_gap - out["cat_recency"]
    out[CATEGORY_COLUMN] = pd.Series(cats, dtype="string")
    return out


def bought_pairs(df: pd.DataFrame, targets: list[str]) -> tuple[list[tuple[int, str]], np.ndarray]:
    """Every (row, category) of df where the category was bought in the horizon, and the days to it."""
    pairs, days = [], []
    for t in targets:
        d = df[days_column(t)].to_numpy(float) if days_column(t) in df.columns else np.full(len(df), np.nan)
        for r in np.flatnonzero(~np.isnan(d)):
            pairs.append((int(r), t))
            days.append(d[r])
    return pairs, np.asarray(days, float)


def fit(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], targets: list[str], horizon_days: int,
        params: dict | None = None, num_boost_round: int = 600) -> CompanionModels:
    """Quantile models of days to each category's first purchase, on the bought pairs of the training rows
    (early stopping on the validation rows' pairs); predictions are clipped to [0, horizon_days)."""
    tp, ty = bought_pairs(train, targets)
    vp, vy = bought_pairs(valid, targets)
    X, Xv = pair_frame(train, features, tp), pair_frame(valid, features, vp)
    models = []
    for q in QUANTILES:
        m = CustomerModel("quantile", {**small_data_threads(len(X)), **(params or {}), "alpha": q}, num_boost_round)
        models.append(m.fit(X, ty, Xv, vy))
    return CompanionModels(NAME, QUANTILES, models, (0.0, float(horizon_days - 1)))


def predict(models: CompanionModels, df: pd.DataFrame, features: list[str], pairs: list[tuple[int, str]]
            ) -> pd.DataFrame:
    """days_to_category, _low and _high for each (row, category) pair, in the pairs' order."""
    return models.predict(pair_frame(df, features, pairs)).reset_index(drop=True)


def evaluate(models: CompanionModels, test: pd.DataFrame, features: list[str], top: list[str | None],
             horizon_days: int) -> dict[str, float]:
    """On the test customers who bought their top cross-sell category (`top`, one per row) in the horizon:
    MAE of the median (days), the usual-gap baseline's MAE and the 80% interval's coverage."""
    rows = [r for r, t in enumerate(top) if t is not None and days_column(t) in test.columns
            and np.isfinite(test[days_column(t)].iloc[r])]
    out = {f"{NAME}_test_rows": float(len(rows))}
    if not rows:
        return out
    pairs = [(r, str(top[r])) for r in rows]
    pred = predict(models, test, features, pairs)
    y = np.asarray([test[days_column(t)].iloc[r] for r, t in pairs], float)
    part = test.iloc[rows]
    gap = part["gap_mean_days"].to_numpy(float) - part["recency_days"].to_numpy(float)
    usual = np.clip(np.where(np.isnan(gap), horizon_days / 2, gap), 0, horizon_days - 1)
    inside = (y >= pred[f"{NAME}_low"].to_numpy()) & (y <= pred[f"{NAME}_high"].to_numpy())
    out.update({f"{NAME}_mae": float(np.mean(np.abs(pred[NAME].to_numpy() - y))),
                f"{NAME}_mae_baseline": float(np.mean(np.abs(usual - y))),
                f"{NAME}_interval_coverage": float(inside.mean())})
    return out
