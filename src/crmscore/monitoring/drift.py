"""Drift of a model's inputs and scores against its training reference (crmscore.models.reference).

Per feature: the population stability index (PSI) with the reference's own bins, missing values a bin
of their own, so a feature is always measured on the same scale; plus a test suited to its type,
two-sample Kolmogorov-Smirnov for numbers (against the reference's sample) and chi-square for
categories (counts rebuilt from the reference's shares and rows). The status comes from PSI and the
missing-rate change (thresholds in config `monitoring`); the p-value is reported beside it, not used
for the status: with thousands of customers a shift too small to matter is still significant.

PSI = sum over bins of (now - ref) * ln(now / ref), shares floored at 1e-4 so an empty bin is finite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from crmscore.config import MonitoringConfig
from crmscore.models.reference import bin_shares, level_shares

FLOOR = 1e-4
STATUS_ORDER = {"ok": 0, "watch": 1, "act": 2}


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.clip(np.asarray(expected, float), FLOOR, None)
    a = np.clip(np.asarray(actual, float), FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical | score | segment
    psi: float
    test: str  # ks | chi2
    statistic: float
    p_value: float
    missing_ref: float
    missing_now: float
    status: str  # ok | watch | act
    detail: str = ""  # new levels, the largest moved bin

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in asdict(self).items()}


def status_of(value: float, missing_change: float, cfg: MonitoringConfig) -> str:
    if value >= cfg.psi_act:
        return "act"
    if value >= cfg.psi_watch or missing_change >= cfg.missing_shift:
        return "watch"
    return "ok"


def numeric_drift(name: str, ref: dict[str, Any], now: pd.Series, cfg: MonitoringConfig,
                  kind: str = "numeric") -> FeatureDrift:
    values = pd.to_numeric(now, errors="coerce").to_numpy(float)
    miss_ref, miss_now = float(ref.get("missing", 0.0)), float(np.mean(~np.isfinite(values))) if values.size else 0.0
    edges = ref["edges"]
    e = np.append(np.asarray(ref["shares"], float) * (1 - miss_ref), miss_ref)
    a = np.append(np.asarray(bin_shares(values, edges)) * (1 - miss_now), miss_now)
    value = psi(e, a)
    finite = values[np.isfinite(values)]
    sample = np.asarray(ref.get("sample", []), float)
    if finite.size and sample.size:
        if finite.size > sample.size:  # the same power on both sides, fixed seed
            finite = np.random.default_rng(0).choice(finite, sample.size, replace=False)
        ks = stats.ks_2samp(sample, finite, method="asymp")  # the exact method is slow and needless here
        statistic, p = float(ks.statistic), float(ks.pvalue)
    else:
        statistic, p = float("nan"), float("nan")
    moved = int(np.argmax(np.abs(a - e)))
    where = "missing" if moved == len(e) - 1 else _bin_label(edges, moved)
    detail = f"largest move: {where} {e[moved]:.1%} -> {a[moved]:.1%}"
    return FeatureDrift(name, kind, value, "ks", statistic, p, miss_ref, miss_now,
                        status_of(value, abs(miss_now - miss_ref), cfg), detail)


def _bin_label(edges: list[float], i: int) -> str:
    lo = "-inf" if i == 0 else f"{edges[i - 1]:.4g}"
    hi = "inf" if i == len(edges) else f"{edges[i]:.4g}"
    return f"({lo}, {hi}]"


def categorical_drift(name: str, ref: dict[str, Any], now: pd.Series, cfg: MonitoringConfig, rows_ref: int,
                      kind: str = "categorical") -> FeatureDrift:
    miss_ref = float(ref.get("missing", 0.0))
    miss_now = float(now.isna().mean()) if len(now) else 0.0
    ref_levels: dict[str, float] = ref["levels"]
    now_levels = level_shares(now)
    levels = sorted(set(ref_levels) | set(now_levels))
    e = np.array([ref_levels.get(k, 0.0) * (1 - miss_ref) for k in levels] + [miss_ref])
    a = np.array([now_levels.get(k, 0.0) * (1 - miss_now) for k in levels] + [miss_now])
    value = psi(e, a)
    n_now = len(now)
    table = np.vstack([e * max(rows_ref, 1), a * max(n_now, 1)])
    table = table[:, table.sum(0) > 0]
    if table.shape[1] > 1 and n_now:
        chi = stats.chi2_contingency(table)
        statistic, p = float(chi.statistic), float(chi.pvalue)
    else:
        statistic, p = 0.0, 1.0
    new = [k for k in now_levels if k not in ref_levels]
    names = [*levels, "missing"]
    moved = int(np.argmax(np.abs(a - e)))
    detail = f"largest move: {names[moved]} {e[moved]:.1%} -> {a[moved]:.1%}"
    if new:
        detail += f"; new levels: {new[:5]}"
    return FeatureDrift(name, kind, value, "chi2", statistic, p, miss_ref, miss_now,
                        status_of(value, abs(miss_now - miss_ref), cfg), detail)


def feature_drift(reference: dict[str, Any], frame: pd.DataFrame, cfg: MonitoringConfig) -> list[FeatureDrift]:
    """Every feature of the reference measured on `frame` (the model's population at a later cutoff).
    A feature the frame lacks is reported as missing everywhere (status act)."""
    out = []
    rows_ref = int(reference.get("rows", 0))
    for name, ref in reference["features"].items():
        col = frame[name] if name in frame else pd.Series([np.nan] * len(frame), dtype=float)
        if ref["kind"] == "numeric":
            out.append(numeric_drift(name, ref, col, cfg))
        else:
            out.append(categorical_drift(name, ref, col, cfg, rows_ref))
    return out


def score_drift(reference: dict[str, Any], scores: np.ndarray, cfg: MonitoringConfig) -> FeatureDrift:
    ref = {"missing": 0.0, **reference["score"]}
    return numeric_drift("score", ref, pd.Series(scores), cfg, kind="score")


def segment_drift(reference: dict[str, Any], frame: pd.DataFrame, cfg: MonitoringConfig) -> list[FeatureDrift]:
    """Shares of RFM segments and lifecycle stages now against the training rows'."""
    out = []
    for col, shares in reference.get("segments", {}).items():
        if col in frame:
            out.append(categorical_drift(col, {"missing": 0.0, "levels": shares}, frame[col], cfg,
                                         int(reference.get("rows", 0)), kind="segment"))
    return out


def worst_status(rows: list[FeatureDrift]) -> str:
    return max((r.status for r in rows), key=STATUS_ORDER.__getitem__, default="ok")


def migration(previous: pd.DataFrame | None, current: pd.DataFrame, column: str) -> dict[str, Any] | None:
    """Movement of customers between the levels of `column` (rfm_segment or lifecycle_stage) from one
    snapshot to the next: counts now and before, and the transition matrix as {from: {to: customers}}
    ("(new)" for customers absent before, "(gone)" for those absent now)."""
    if previous is None or column not in current or column not in previous:
        return None
    both = current[["customer_id", column]].astype({"customer_id": str}).merge(
        previous[["customer_id", column]].astype({"customer_id": str}), on="customer_id", how="outer",
        suffixes=("_to", "_from"))
    frm = both[f"{column}_from"].astype(object).where(both[f"{column}_from"].notna(), "(new)")
    to = both[f"{column}_to"].astype(object).where(both[f"{column}_to"].notna(), "(gone)")
    matrix: dict[str, dict[str, int]] = {}
    for (a, b), n in pd.crosstab(frm, to).stack().items():
        if n:
            matrix.setdefault(str(a), {})[str(b)] = int(n)
    stayed = int(sum(matrix.get(k, {}).get(k, 0) for k in matrix))
    known = int((both[f"{column}_from"].notna() & both[f"{column}_to"].notna()).sum())
    return {"column": column, "now": {str(k): int(v) for k, v in current[column].value_counts().items()},
            "before": {str(k): int(v) for k, v in previous[column].value_counts().items()},
            "transitions": matrix, "stayed_share": stayed / known if known else None}
