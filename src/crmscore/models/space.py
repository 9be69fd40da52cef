"""The space a model's explanation lives in: the link from a margin to the score, and the order of reasons.

A model (crmscore.models.estimator) states its explanation in its score's own space, so that
f(base_value + sum(contributions)) = score with f the inverse link; crmscore.explain.effects builds each
reason's effect on the score from these two definitions. They live with the models because the estimator
computes scores from margins with them, and models do not import explain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LINKS = ("logit", "log", "identity")


def inverse_link(link: str, margin: Any) -> np.ndarray:
    """The score from a margin: sigmoid (logit), exp (log) or the margin itself (identity)."""
    m = np.asarray(margin, dtype=float)
    if link == "logit":
        return 1.0 / (1.0 + np.exp(-m))
    if link == "log":
        return np.exp(m)
    if link == "identity":
        return m
    raise ValueError(f"unknown link {link!r}: one of {', '.join(LINKS)}")


def reason_order(contributions: np.ndarray, k: int | None = None) -> np.ndarray:
    """Column indices of one row's contributions, largest |contribution| first, ties in column order; the
    first k (all when k is None)."""
    c = np.asarray(contributions, dtype=float)
    order = np.argsort(-np.abs(c), kind="stable")
    return order if k is None else order[:max(0, min(k, len(c)))]
