"""Scoring with co-purchase rules ("bought A, then bought B within the horizon"): what the copurchase baseline and
next-category's blend share. The rules themselves are fitted from labelled rows in crmscore.models.baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmscore.features.definitions import slug


def history_matrix(df: pd.DataFrame, targets: list[str]) -> np.ndarray:
    """Each customer's share of spend per category over the share window (0 when none), (n, k)."""
    cols = [f"category_share_{slug(t)}" for t in targets]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"feature columns {missing[:3]} are missing: the feature set lacks these categories")
    return df[cols].fillna(0).to_numpy(float)


def copurchase_scores(df: pd.DataFrame, targets: list[str], conf: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """Score of B = the highest confidence of a rule A -> B over the categories A the customer bought
    (A = B included: buying a category again is a rule too); popularity for customers with no history."""
    A = history_matrix(df, targets) > 0
    scores = np.where(A[:, :, None], conf[None, :, :], 0.0).max(1)
    return np.where(A.any(1)[:, None], scores + 1e-6 * pop[None, :], pop[None, :])  # popularity breaks ties
