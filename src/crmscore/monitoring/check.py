"""One monitoring check of a served model: drift at a cutoff, realised performance of written scores,
and the verdict the retraining loop acts on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import MonitoringConfig
from crmscore.data.loader import CustomerData
from crmscore.features.build import as_of_timestamp
from crmscore.models.bundle import TrainedModel
from crmscore.models.reference import score_vector
from crmscore.monitoring.drift import (
    FeatureDrift,
    feature_drift,
    migration,
    score_drift,
    segment_drift,
    worst_status,
)
from crmscore.monitoring.realised import Realised, realised_performance
from crmscore.scoring.batch import transactional_population

log = logging.getLogger(__name__)


@dataclass
class ModelCheck:
    """Everything monitoring found about one model version at one cutoff."""

    model: str
    version: str
    as_of: str
    rows: int
    reference: bool  # False: the model was trained before references were kept; no drift figures
    features: list[FeatureDrift] = field(default_factory=list)
    score: FeatureDrift | None = None
    segments: list[FeatureDrift] = field(default_factory=list)
    migration: list[dict[str, Any]] = field(default_factory=list)
    realised: Realised | None = None
    promised: dict[str, float] = field(default_factory=dict)
    verdict: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "as_of": self.as_of, "rows": self.rows,
                "reference": self.reference, "features": [f.to_dict() for f in self.features],
                "score": self.score.to_dict() if self.score else None,
                "segments": [s.to_dict() for s in self.segments], "migration": self.migration,
                "realised": self.realised.to_dict() if self.realised else None, "promised": self.promised,
                "verdict": self.verdict}


def promised_figures(bundle: TrainedModel) -> dict[str, float]:
    """The out-of-time test figures the model was registered (and promoted) on."""
    m = bundle.info.get("metrics", {})
    keys = ("roc_auc", "pr_auc", "ece", "brier", "lift_top10", "normalized_gini", "hit_rate_at_3")
    return {k: float(m[k]) for k in keys if k in m and m[k] is not None and np.isfinite(float(m[k]))}


def check_model(bundle: TrainedModel, version: str, data: CustomerData, as_of: Any, cfg: MonitoringConfig, *,
                scores: pd.DataFrame | None = None, model_settings: dict[str, dict[str, Any]] | None = None,
                promised: dict[str, dict[str, float]] | None = None,
                previous_segments: pd.DataFrame | None = None) -> ModelCheck:
    """Drift of the model's population at `as_of` against its reference, migration of segments from
    `previous_segments` (the previous published snapshot) to now, and, when `scores` are given, their
    realised performance. The verdict says whether to retrain and why."""
    cut = as_of_timestamp(as_of)
    frame = transactional_population(bundle, data, cut)
    ref = bundle.info.get("reference")
    check = ModelCheck(bundle.task, str(version), str(cut.date()), len(frame), ref is not None,
                       promised=promised_figures(bundle))
    if ref is None:
        log.warning("%s v%s has no training reference (trained before monitoring kept one): no drift figures; "
                    "retrain it to get them", bundle.task, version)
    else:
        check.features = feature_drift(ref, frame, cfg)
        if len(frame):
            check.score = score_drift(ref, score_vector(bundle, frame), cfg)
        check.segments = segment_drift(ref, frame, cfg)
    for col in ("rfm_segment", "lifecycle_stage"):
        moved = migration(previous_segments, frame, col) if previous_segments is not None else None
        if moved:
            check.migration.append(moved)
    if scores is not None and bundle.kind == "binary":
        check.realised = realised_performance(bundle.task, scores, data, model_settings or {str(version): bundle.settings},
                                              promised or {str(version): check.promised})
    check.verdict = verdict(check, cfg)
    return check


def verdict(check: ModelCheck, cfg: MonitoringConfig) -> dict[str, Any]:
    """Retrain when a feature or the score drifted past `psi_act`, or when the realised ROC-AUC of the
    version at its newest judged cutoff fell `performance_drop` below what it was promoted on."""
    reasons = []
    drifted = [f.feature for f in check.features if f.status == "act"]
    if drifted:
        reasons.append(f"features past PSI {cfg.psi_act}: {', '.join(drifted[:8])}")
    if check.score is not None and check.score.status == "act":
        reasons.append(f"score distribution PSI {check.score.psi:.3f}")
    drop = None
    if check.realised is not None:
        now = check.realised.latest(check.version)
        promised = check.promised.get("roc_auc")
        if now is not None and promised is not None and np.isfinite(now.get("roc_auc", np.nan)):
            drop = promised - now["roc_auc"]
            if drop >= cfg.performance_drop:
                reasons.append(f"realised ROC-AUC {now['roc_auc']:.3f} at {now['as_of']} is {drop:.3f} below the "
                               f"promoted {promised:.3f} ({int(now['rows']):,} customers)")
    status = worst_status([*check.features, *([check.score] if check.score else [])])
    return {"retrain": bool(reasons), "reasons": reasons, "drift_status": status,
            "watch": [f.feature for f in check.features if f.status == "watch"],
            "performance_drop": drop}
