"""Batch scoring: every customer in a task's population at a cutoff, scored and explained, vectorised.

`score_next_purchase` combines the next-purchase models that are given (purchase probability with days to
next purchase; expected spend and next categories when those models exist) into one row per customer.
`score_audience` scores a lookalike audience's non-seed customers by similarity.
"""

from __future__ import annotations

import logging

from typing import Any

import pandas as pd

from crmscore.data.loader import CustomerData
from crmscore.features.build import as_of_timestamp, build_features
from crmscore.models import lookalike
from crmscore.models.bundle import TrainedModel
from crmscore.models.population import PopulationRule
from crmscore.scoring.explained import score_with_reasons
from crmscore.features.segments import add_segments

log = logging.getLogger(__name__)
CHUNK = 20_000


def score_frame(bundle: TrainedModel, features: pd.DataFrame, *, top_k: int = 5, version: str | None = None,
                progress: bool = False, **options: Any) -> pd.DataFrame:
    """Score a feature frame in chunks; adds model_version and reason_1..k text columns. options go to
    crmscore.scoring.explained.score_with_reasons (multilabel: keep_regular, max_targets)."""
    from crmscore.progress import track

    parts = []
    chunks = range(0, len(features), CHUNK)
    for start in track(chunks, f"scoring {bundle.task}", enabled=progress, total=len(chunks)):
        parts.append(score_with_reasons(bundle, features.iloc[start:start + CHUNK], explain=top_k > 0, top_k=top_k,
                                        **options))
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
    for col in ("reasons", "spend_reasons", "category_reasons"):
        if col in frame:
            frame[col] = [[{**r, "value": None if r["value"] is None else str(r["value"])} for r in rs]
                          for rs in frame[col]]
    frame.to_parquet(out, index=False)


def model_features(bundle: TrainedModel, data: CustomerData, as_of: object) -> pd.DataFrame:
    """Features at as_of with the model's feature set and its RFM scale, for every customer known before it."""
    cut = as_of_timestamp(as_of)
    feats = build_features(data, cut, bundle.feature_set, segments=False)
    return add_segments(feats, data.config.segments, bundle.rfm_scorer())


def transactional_population(bundle: TrainedModel, data: CustomerData, as_of: object) -> pd.DataFrame:
    """Features at as_of, with the model's feature set, for the customers of the population it was trained on
    (crmscore.models.population)."""
    cut = as_of_timestamp(as_of)
    feats = model_features(bundle, data, cut)
    rule = PopulationRule.of_model(bundle)
    pop = feats[rule.admits(feats["recency_days"])].reset_index(drop=True)
    log.info("population at %s: %s customers (%s)", cut.date(), f"{len(pop):,}", rule.describe())
    return pop


NEXT_PURCHASE_MODELS = ("next-purchase", "expected-spend", "next-category")


def score_next_purchase(models: dict[str, tuple[TrainedModel, str]], data: CustomerData, as_of: object, *,
                        top_k: int = 5, keep_regular: bool = False, max_categories: int = 5,
                        progress: bool = False) -> pd.DataFrame:
    """One row per customer of next-purchase's population at as_of, from the models given
    {name: (bundle, version)}: next-purchase is needed; expected-spend and next-category add their columns
    when given (each model scores on its own: a history without categories has no next-category model).

    next-purchase: customer_id, score (purchase probability in the horizon), decile, segment columns,
    days_to_next, days_to_next_low, days_to_next_high (days, if they buy within the horizon), reasons and
    reason_1..k, model_version. expected-spend: expected_spend (currency), spend_base_value and spend_reasons
    (with top_k > 0; log of the amount, crmscore.explain.effects), spend_model_version.
    next-category: top_category, top_category_probability, next_categories (list of {category,
    probability}, highest first, regular categories left out unless keep_regular), category_base_value,
    category_reasons and category_reason_1..k (top category), category_model_version. A customer outside a
    model's own population (next-category: customers with a purchase) gets no value from it.
    """
    purchase, version = models["next-purchase"]
    frames: dict[str, pd.DataFrame] = {}

    def features(bundle: TrainedModel, ids: pd.Series) -> pd.DataFrame:
        """The model's features of the customers `ids` in its own population, in the order of ids."""
        key = bundle.feature_set.version
        if key not in frames:
            frames[key] = model_features(bundle, data, as_of)
        frame = frames[key].set_index("customer_id").loc[ids].reset_index()
        return frame[PopulationRule.of_model(bundle).admits(frame["recency_days"])]

    pop = transactional_population(purchase, data, as_of)
    frames[purchase.feature_set.version] = pop
    out = score_frame(purchase, pop, top_k=top_k, version=version, progress=progress)
    ids = out["customer_id"]
    missing = [name for name in NEXT_PURCHASE_MODELS[1:] if name not in models]
    if missing:
        log.debug("next-purchase scores without %s (no model given): %s left out", " and ".join(missing),
                 "their columns are" if len(missing) > 1 else "its columns are")

    if "expected-spend" in models:
        spend, spend_version = models["expected-spend"]
        frame = features(spend, ids)
        scored = score_frame(spend, frame, top_k=top_k, progress=progress).set_index("customer_id")
        out["expected_spend"] = ids.map(scored["score"]).astype("float64").to_numpy()
        if top_k > 0:
            out["spend_base_value"] = ids.map(scored["base_value"]).astype("float64").to_numpy()
            out["spend_reasons"] = _lists(ids.map(scored["reasons"]))
        out["spend_model_version"] = spend_version

    if "next-category" in models:
        category, category_version = models["next-category"]
        frame = features(category, ids)
        cat = score_frame(category, frame, top_k=top_k, progress=progress, keep_regular=keep_regular,
                          max_targets=max_categories).set_index("customer_id")
        out["top_category"] = ids.map(cat["top_category"]).to_numpy()
        out["top_category_probability"] = ids.map(cat["score"]).astype("float64").to_numpy()
        out["next_categories"] = _lists(ids.map(cat["next_categories"]))
        if top_k > 0:
            out["category_base_value"] = ids.map(cat["base_value"]).astype("float64").to_numpy()
            out["category_reasons"] = _lists(ids.map(cat["reasons"]))
            for j in range(top_k):
                out[f"category_reason_{j + 1}"] = ids.map(cat[f"reason_{j + 1}"]).to_numpy()
        out["category_model_version"] = category_version
    return out


def _lists(values: pd.Series) -> list:
    """Lists per customer, an empty list where the model gave none (outside its population)."""
    return [v if isinstance(v, list | tuple) or hasattr(v, "__array__") else [] for v in values]


def score_audience(bundle: TrainedModel, frame: pd.DataFrame, *, top_k: int = 5, version: str | None = None,
                   progress: bool = False) -> pd.DataFrame:
    """Every non-seed customer of a feature frame: customer_id, similarity, percentile, band, segment columns
    present in the frame, and with top_k > 0 base_value and the reasons (list of dicts; calibrated log-odds,
    crmscore.explain.effects) and reason_1..k sentences.
    Sorted by similarity, most similar first."""
    seed = lookalike.seed_ids(bundle)
    keep = ~frame["customer_id"].astype(str).isin(seed)
    out = score_frame(bundle, frame[keep].reset_index(drop=True), top_k=top_k, version=version, progress=progress)
    out = out.rename(columns={"score": "similarity"}).drop(columns=["decile"], errors="ignore")
    sim = out["similarity"].to_numpy()
    out.insert(2, "percentile", lookalike.similarity_percentile(bundle, sim))
    out.insert(3, "band", lookalike.similarity_band(sim))
    out.insert(1, "audience", bundle.info.get("audience", {}).get("name"))
    return out.sort_values("similarity", ascending=False, kind="stable").reset_index(drop=True)
