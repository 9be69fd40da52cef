"""Batch scoring: every customer in a task's population at a cutoff, scored and explained, vectorised."""

from __future__ import annotations

import logging

import pandas as pd

from crmscore.data.loader import CustomerData
from crmscore.features.build import as_of_timestamp, build_features
from crmscore.models.bundle import TrainedModel
from crmscore.segments import add_segments

log = logging.getLogger(__name__)
CHUNK = 20_000


def score_frame(bundle: TrainedModel, features: pd.DataFrame, *, top_k: int = 5, version: str | None = None,
                progress: bool = False) -> pd.DataFrame:
    """Score a feature frame in chunks; adds model_version and reason_1..k text columns."""
    from crmscore.progress import track

    parts = []
    chunks = range(0, len(features), CHUNK)
    for start in track(chunks, "scoring", enabled=progress, total=len(chunks)):
        parts.append(bundle.score(features.iloc[start:start + CHUNK], explain=top_k > 0, top_k=top_k))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["customer_id", "score"])
    out["model_version"] = version or bundle.info.get("version", "")
    if top_k > 0:
        for j in range(top_k):
            out[f"reason_{j + 1}"] = [r[j]["text"] if len(r) > j else None for r in out["reasons"]]
    return out


def write_scores(scores: pd.DataFrame, out: object) -> None:
    """Parquet with `reasons` as a list of structs; a reason's value is stored as text (values mix numbers
    and categories across features)."""
    frame = scores.copy()
    if "reasons" in frame:
        frame["reasons"] = [[{**r, "value": None if r["value"] is None else str(r["value"])} for r in rs]
                            for rs in frame["reasons"]]
    frame.to_parquet(out, index=False)


def transactional_population(bundle: TrainedModel, data: CustomerData, as_of: object) -> pd.DataFrame:
    """Features at as_of, with the model's feature set, for customers active within the lookback."""
    cut = as_of_timestamp(as_of)
    feats = build_features(data, cut, bundle.feature_set, segments=False)
    scorer = bundle.rfm_scorer()
    feats = add_segments(feats, data.config.segments, scorer)
    lookback = bundle.settings.get("lookback_days", 365)
    pop = feats[feats["recency_days"] < lookback].reset_index(drop=True)
    log.info("population at %s: %s customers with a purchase in the last %d days", cut.date(), f"{len(pop):,}",
             lookback)
    return pop
