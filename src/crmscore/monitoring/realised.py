"""Realised performance: the scores that were written, joined point-in-time to what customers then did.

A score written at cutoff T by a model with horizon H is judged once T + H has passed in the data: its
outcome is the task's own label at T (the same function training used, so "churned" means exactly what
the model was trained to predict), for the customers of the model's population at T. Scores whose
horizon has not passed yet are counted as waiting, never judged early.

Sources: batch score files (`crmscore score ... --out F.parquet`: customer_id, score, model_version,
as_of, segment) and the service's prediction log (crmscore.scoring.predlog: a served score's cutoff is
the day before it was served, as the features published then describe the customer at that day).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from crmscore.data.loader import CustomerData
from crmscore.models.evaluation import expected_calibration_error, lift_and_capture
from crmscore.models.tasks import get_task

log = logging.getLogger(__name__)
RELIABILITY_BINS = 10


@dataclass
class Realised:
    """Realised figures of one task's scores; `groups` has one row per (model_version, segment) with
    segment "all" for the version as a whole."""

    task: str
    judged: int
    waiting: int
    waiting_until: str | None
    groups: list[dict[str, Any]] = field(default_factory=list)
    reliability: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # version -> bins
    promised: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> the test figures it was promoted on
    by_cutoff: list[dict[str, Any]] = field(default_factory=list)  # per version and cutoff, every customer

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "judged": self.judged, "waiting": self.waiting,
                "waiting_until": self.waiting_until, "groups": self.groups, "reliability": self.reliability,
                "promised": self.promised, "by_cutoff": self.by_cutoff}

    def latest(self, version: str) -> dict[str, Any] | None:
        """The version's figures at its newest judged cutoff: the freshest evidence of how it does now."""
        rows = [g for g in self.by_cutoff if g["model_version"] == version]
        return max(rows, key=lambda g: g["as_of"]) if rows else None

    def overall(self, version: str | None = None) -> dict[str, Any] | None:
        rows = [g for g in self.groups if g["segment"] == "all" and (version is None or g["model_version"] == version)]
        return rows[-1] if rows else None


def scores_from_log(rows: list[dict[str, Any]], model: str, timezone: str = "UTC") -> pd.DataFrame:
    """Prediction-log rows of `model` as scores: customer_id, score, model_version, as_of (the serving day)."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["customer_id", "score", "model_version", "as_of"])
    frame = frame[(frame["model"] == model) & frame["score"].notna() & frame["error"].isna()]
    served = pd.to_datetime(frame["ts"], unit="s", utc=True).dt.tz_convert(timezone).dt.tz_localize(None)
    return pd.DataFrame({"customer_id": frame["customer_id"].astype(str), "score": frame["score"].astype(float),
                         "model_version": frame["version"].astype(str), "as_of": served.dt.normalize()})


def read_score_files(paths: list[Any]) -> pd.DataFrame:
    """Batch score files stacked; each needs customer_id, score, model_version and as_of."""
    frames = []
    for p in paths:
        df = pd.read_parquet(p)
        missing = [c for c in ("customer_id", "score", "model_version", "as_of") if c not in df]
        if missing:
            from crmscore.errors import DataContractError

            raise DataContractError(f"scores {p}: column {missing[0]} is missing; write the file with `crmscore "
                                    f"score` of this version (it records as_of and model_version)")
        keep = [c for c in ("customer_id", "score", "model_version", "as_of", "model", "segment", "lifecycle_stage")
                if c in df]
        frames.append(df[keep])
    if not frames:
        return pd.DataFrame(columns=["customer_id", "score", "model_version", "as_of"])
    out = pd.concat(frames, ignore_index=True)
    out["as_of"] = pd.to_datetime(out["as_of"])
    out["customer_id"] = out["customer_id"].astype(str)
    out["model_version"] = out["model_version"].astype(str)
    return out


def binary_figures(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, ECE, lift and capture of the top 10%, positive rate and mean score."""
    out: dict[str, float] = {"rows": float(len(y)), "positive_rate": float(np.mean(y)) if len(y) else float("nan"),
                             "mean_score": float(np.mean(p)) if len(p) else float("nan")}
    if len(np.unique(y)) < 2:
        return {**out, "roc_auc": float("nan"), "pr_auc": float("nan"), "ece": float("nan"),
                "lift_top10": float("nan")}
    lift, capture = lift_and_capture(y, p, 0.1)
    return {**out, "roc_auc": float(skm.roc_auc_score(y, p)), "pr_auc": float(skm.average_precision_score(y, p)),
            "ece": float(expected_calibration_error(y, p, RELIABILITY_BINS)), "lift_top10": float(lift),
            "capture_top10": float(capture)}


def reliability_curve(y: np.ndarray, p: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict[str, float]]:
    """Equal-width bins of the predicted probability: mean predicted, observed rate and rows per bin."""
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"bin": b, "predicted": float(p[m].mean()), "observed": float(y[m].mean()), "rows": int(m.sum())})
    return out


def outcomes(task_name: str, data: CustomerData, as_of: pd.Timestamp, settings: dict[str, Any]) -> pd.DataFrame:
    """customer_id and label at `as_of` by the task's own label function and the model's settings."""
    task = get_task(task_name)
    s = task.settings_model(**{k: v for k, v in settings.items() if k in task.settings_model.model_fields})
    labels = task.label_fn(data, as_of, s)
    return labels[["customer_id", "label"]].astype({"customer_id": str})


def realised_performance(task_name: str, scores: pd.DataFrame, data: CustomerData,
                         model_settings: dict[str, dict[str, Any]],
                         promised: dict[str, dict[str, float]] | None = None) -> Realised:
    """Judge every score whose horizon has passed in `data`; count the others as waiting.

    scores: customer_id, score, model_version, as_of (and segment when present). model_settings maps a
    version to its training settings (horizon_days, population...). Binary tasks only (churn,
    next-purchase): the figures are those of a probability.
    """
    data_end = data.ts_range()[1].normalize() + pd.Timedelta(days=1)  # the first day without data
    judged_parts, waiting, waiting_until = [], 0, None
    for (version, as_of), part in scores.groupby(["model_version", "as_of"], sort=True):
        settings = model_settings.get(str(version))
        if settings is None:
            log.warning("%s: no settings for model version %s; its %d scores are left out", task_name, version, len(part))
            continue
        due = pd.Timestamp(as_of) + pd.Timedelta(days=int(settings["horizon_days"]))
        if due > data_end:
            waiting += len(part)
            waiting_until = str(max(pd.Timestamp(waiting_until), due).date()) if waiting_until else str(due.date())
            continue
        truth = outcomes(task_name, data, pd.Timestamp(as_of), settings)
        joined = part.merge(truth, on="customer_id", how="inner")
        if len(joined) < len(part):
            log.info("%s v%s at %s: %d of %d scored customers are outside the population then", task_name, version,
                     pd.Timestamp(as_of).date(), len(part) - len(joined), len(part))
        judged_parts.append(joined)
    result = Realised(task_name, 0, waiting, waiting_until, promised=promised or {})
    if not judged_parts:
        return result
    judged = pd.concat(judged_parts, ignore_index=True)
    result.judged = len(judged)
    for version, part in judged.groupby("model_version", sort=True):
        y, p = part["label"].to_numpy(int), part["score"].to_numpy(float)
        cutoffs = ", ".join(sorted({str(pd.Timestamp(c).date()) for c in part["as_of"]}))
        result.groups.append({"model_version": str(version), "segment": "all", "cutoffs": cutoffs,
                              **binary_figures(y, p)})
        result.reliability[str(version)] = reliability_curve(y, p)
        for as_of, cp in part.groupby("as_of", sort=True):
            result.by_cutoff.append({"model_version": str(version), "as_of": str(pd.Timestamp(as_of).date()),
                                     **binary_figures(cp["label"].to_numpy(int), cp["score"].to_numpy(float))})
        if "segment" in part:
            for seg, sp in part.groupby("segment", sort=True):
                result.groups.append({"model_version": str(version), "segment": str(seg), "cutoffs": cutoffs,
                                      **binary_figures(sp["label"].to_numpy(int), sp["score"].to_numpy(float))})
    return result
