"""(customer, category) pair rows for next-category's timing model (crmscore.models.category_timing): the customer's
features, the category's own purchase history under generic names and the category, so that one model serves every
category. Kept apart from the model so that a bundle can build them at scoring without importing the trainer."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from crmscore.features.definitions import slug

NAME = "days_to_category"
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
