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

import numpy as np
import pandas as pd

from crmscore.models.bundle import CompanionModels, days_column
from crmscore.models.category_pairs import NAME, pair_frame
from crmscore.models.estimator import CustomerModel, small_data_threads

QUANTILES = (0.1, 0.5, 0.9)


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
