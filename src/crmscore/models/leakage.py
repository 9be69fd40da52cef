"""The leakage alarm: before fitting, each feature alone is measured against the label on the validation
rows. A single column that nearly separates the label by itself is almost always recorded after the
cutoff (a status or closing date exported today, a lifetime value) or a copy of the label; no honest
customer feature predicts the future that well.

Strength of one feature (its "own validation ROC-AUC"): max(auc, 1 - auc) of the column's values as a
score on the validation rows. Missing values are ranked below, then above, every value, and the larger
is kept (a column filled only for churned customers separates them either way). A category is scored by
its level's positive rate on the training rows (levels unseen there, and missing values, as their own
level), so a label-copying category shows up and a mere high cardinality does not.

By kind of task:
- binary: that ROC-AUC, against `leakage.refuse_above` (0.98) and `leakage.warn_above` (0.90);
- regression: the normalised Gini of the column alone (|gini|), which is 2 x AUC - 1 for a 0/1 label, so
  the same thresholds on that scale (0.96 and 0.80);
- multilabel: the ROC-AUC against each target's label; a feature's strength is its highest over targets,
  reported with that target.
A label (or target) with fewer than 30 positive or negative validation rows is not measured: with two
positives, one of a few hundred features separates them by chance (Complete Journey's rarest next-category
target reached 0.997 that way).
Features the config names under `leakage.allow` are measured and logged, never refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from crmscore.config import LeakageConfig
from crmscore.errors import CrmscoreError

log = logging.getLogger(__name__)
MAX_ROWS = 100_000  # validation rows measured (a seeded sample above this): enough to tell 0.98 from 0.90
MIN_CLASS_ROWS = 30  # fewer positive (or negative) validation rows: chance alone reaches 0.98 among many features


class LeakageError(CrmscoreError):
    """A feature alone predicts the label too well: it is very likely recorded after the cutoff."""


@dataclass(frozen=True)
class FeatureStrength:
    feature: str
    value: float  # ROC-AUC (binary, multilabel) or |normalised Gini| (regression)
    metric: str
    target: str | None = None

    def describe(self) -> str:
        on = f" for target {self.target!r}" if self.target is not None else ""
        return f"{self.feature} alone reaches validation {self.metric} {self.value:.3f}{on}"


def _auc_from_ranks(ranks: np.ndarray, pos: np.ndarray) -> float:
    """ROC-AUC from the scores' ranks (ties averaged, so they count half) and the positive mask."""
    n_pos = int(pos.sum())
    n_neg = len(pos) - n_pos
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _filled(x: np.ndarray) -> list[np.ndarray]:
    """x with missing values below every value, and above every value."""
    if not np.isnan(x).any():
        return [x]
    finite = x[~np.isnan(x)]
    lo, hi = (finite.min() - 1, finite.max() + 1) if len(finite) else (-1.0, 1.0)
    return [np.where(np.isnan(x), lo, x), np.where(np.isnan(x), hi, x)]


def _category_rates(train: pd.Series, train_y: np.ndarray, valid: pd.Series) -> np.ndarray:
    """Validation values of a category as its level's positive rate (mean label) on the training rows;
    missing is a level of its own, and levels unseen in training are missing."""
    rates = pd.Series(train_y).groupby(train.astype("string").fillna("<missing>").to_numpy()).mean()
    return valid.astype("string").fillna("<missing>").map(rates).to_numpy(float)


def _is_number(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype)


def measure_features(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], labels: dict[str | None, str],
                     regression: bool, seed: int = 17) -> list[FeatureStrength]:
    """Each feature's strength, strongest first. labels: {target name (None for a single label): label column}.
    A label with fewer than MIN_CLASS_ROWS positive (or negative) validation rows is not measured: with a
    handful of positives some feature separates them by chance."""
    if len(valid) > MAX_ROWS:
        valid = valid.sample(MAX_ROWS, random_state=seed)
    if len(train) > MAX_ROWS:
        train = train.sample(MAX_ROWS, random_state=seed)
    metric = "normalised Gini" if regression else "ROC-AUC"
    ys: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}
    for target, col in labels.items():
        ty, vy = train[col].to_numpy(float), valid[col].to_numpy(float)
        if not regression:
            ty, vy = (ty > 0).astype(float), (vy > 0).astype(float)
        positives = int((vy > 0).sum())
        if min(positives, len(vy) - positives) < MIN_CLASS_ROWS:
            log.info("leakage check: %s has %d positive of %d validation rows: not measured",
                     "the label" if target is None else f"target {target!r}", positives, len(vy))
            continue
        ys[target] = (ty, vy)
    out = []
    for f in features:
        best: FeatureStrength | None = None
        numeric = _is_number(valid[f])
        shared = [rankdata(x) for x in _filled(valid[f].to_numpy(float))] if numeric and not regression else None
        for target, (ty, vy) in ys.items():
            if regression:
                from crmscore.models.evaluation import normalized_gini

                x = valid[f].to_numpy(float) if numeric else _category_rates(train[f], ty, valid[f])
                v = max(abs(normalized_gini(vy, filled)) for filled in _filled(x))
            else:
                ranks = shared or [rankdata(x) for x in _filled(_category_rates(train[f], ty, valid[f]))]
                pos = vy > 0
                v = max(max(a, 1 - a) for a in (_auc_from_ranks(r, pos) for r in ranks))
            if np.isfinite(v) and (best is None or v > best.value):
                best = FeatureStrength(f, float(v), metric, target)
        if best is not None:
            out.append(best)
    return sorted(out, key=lambda s: -s.value)


def thresholds(cfg: LeakageConfig, regression: bool) -> tuple[float, float]:
    """(refuse, warn) on the task's scale: ROC-AUC, or normalised Gini = 2 x AUC - 1 for regression."""
    if regression:
        return 2 * cfg.refuse_above - 1, 2 * cfg.warn_above - 1
    return cfg.refuse_above, cfg.warn_above


def check_leakage(strengths: list[FeatureStrength], cfg: LeakageConfig, regression: bool) -> None:
    """Refuse (LeakageError) when a feature not allowed by name is above the refuse threshold; warn above the
    warn threshold. The message names every refused feature."""
    refuse, warn = thresholds(cfg, regression)
    allowed = set(cfg.allow)
    refused = [s for s in strengths if s.value > refuse and s.feature not in allowed]
    for s in strengths:
        if s.value > warn and s not in refused:
            note = " (allowed by leakage.allow)" if s.feature in allowed else ""
            log.warning("leakage alarm: %s (above %.2f): is it known before the cutoff?%s", s.describe(), warn, note)
    if refused:
        first, others = refused[0], refused[1:]
        more = f"; also {', '.join(f'{s.feature} ({s.value:.3f})' for s in others)}" if others else ""
        raise LeakageError(
            f"leakage alarm: feature {first.describe()} (above {refuse:.2f}){more}: it almost certainly holds "
            f"information from after the cutoff or the label itself. Remove that column (data.customers.attributes, "
            f"data.features.exclude), or, if it is truly known in advance, allow it by name under leakage.allow")
    if strengths:
        log.info("leakage check: strongest single features %s", ", ".join(
            f"{s.feature} {s.value:.3f}" for s in strengths[:3]))
