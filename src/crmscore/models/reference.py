"""The training reference kept with a model: what its inputs and scores looked like when it was trained.

Drift is only meaningful against the distribution the model learnt from, measured the same way each
time. So at training the pipeline records, from the training and validation rows, per feature: the
decile bin edges of a number (PSI is computed later with exactly these bins, never re-binned on the new
data), each bin's share, the missing rate and a fixed-seed sample of values (for a Kolmogorov-Smirnov
test); per category feature the share of each level; the score's bins, shares and sample; and the share
of each RFM segment and lifecycle stage. It is a JSON-able dict saved in the bundle's `info["reference"]`
(and as `evaluation/reference.json` on the run). Models trained before it existed have none; monitoring
says so instead of guessing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

REFERENCE_VERSION = 1
BINS = 10
SAMPLE = 2000  # values kept per numeric feature for the KS test: enough for a p-value, small in the bundle


def numeric_edges(values: np.ndarray, bins: int = BINS) -> list[float]:
    """Inner bin edges at the reference's quantiles (unique); bins are (-inf, e1], (e1, e2], ..., (ek, inf)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return []
    return [float(x) for x in np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))]


def bin_shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """Share of the non-missing values in each bin of `edges` (len(edges) + 1 bins; zeros when none)."""
    finite = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(np.asarray(edges, float), finite, side="left"), minlength=len(edges) + 1)
    return [float(c) for c in counts / max(finite.size, 1)]


def level_shares(values: pd.Series) -> dict[str, float]:
    """Share of each level among the non-missing values."""
    present = values.dropna().astype(str)
    return {str(k): float(v) for k, v in present.value_counts(normalize=True).items()}


def _sample(values: np.ndarray, seed: int) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size > SAMPLE:
        finite = np.random.default_rng(seed).choice(finite, SAMPLE, replace=False)
    return [float(f"{x:.6g}") for x in finite]  # 6 digits: ~1 MB of JSON in the bundle for 55 features


def profile_feature(values: pd.Series, categorical: bool, seed: int = 0) -> dict[str, Any]:
    missing = float(values.isna().mean()) if len(values) else 0.0
    if categorical or not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
        return {"kind": "categorical", "missing": missing, "levels": level_shares(values)}
    arr = pd.to_numeric(values, errors="coerce").to_numpy(float)
    edges = numeric_edges(arr)
    return {"kind": "numeric", "missing": missing, "edges": edges, "shares": bin_shares(arr, edges),
            "sample": _sample(arr, seed)}


def score_vector(bundle: Any, frame: pd.DataFrame) -> np.ndarray:
    """One number per row: the probability (binary), the amount (regression), the top category's
    probability (multilabel)."""
    pred = np.asarray(bundle.predict(frame), float)
    return pred.max(axis=1) if pred.ndim == 2 else pred


def build_reference(bundle: Any, frame: pd.DataFrame, features: list[str], categorical: list[str],
                    seed: int = 0) -> dict[str, Any]:
    """The reference of a trained model from the rows it learnt from (training and validation snapshots)."""
    scores = score_vector(bundle, frame)
    edges = numeric_edges(scores)
    ref: dict[str, Any] = {
        "version": REFERENCE_VERSION, "rows": int(len(frame)),
        "cutoffs": sorted({str(pd.Timestamp(c).date()) for c in frame["as_of"].unique()}) if "as_of" in frame else [],
        "features": {f: profile_feature(frame[f], f in categorical, seed) for f in features},
        "score": {"edges": edges, "shares": bin_shares(scores, edges), "sample": _sample(scores, seed),
                  "mean": float(np.mean(scores)) if scores.size else float("nan")},
        "segments": {c: level_shares(frame[c]) for c in ("rfm_segment", "lifecycle_stage") if c in frame},
    }
    return ref
