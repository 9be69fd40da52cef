"""Batch scoring: every customer in a task's population at a cutoff, scored and explained, vectorised.

`score_next_purchase` combines the next-purchase models that are given (purchase probability with days to
next purchase; expected spend and next categories when those models exist) into one row per customer.
`score_audience` scores a lookalike audience's non-seed customers by similarity.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from crmscore.data.loader import CustomerData
from crmscore.features.build import as_of_timestamp, build_features
from crmscore.models import lookalike
from crmscore.models.bundle import TrainedModel
from crmscore.models.population import PopulationRule
from crmscore.scoring.explained import score_with_reasons
from crmscore.features.segments import add_segments

log = logging.getLogger(__name__)
CHUNK = 20_000


def score_chunks(bundle: TrainedModel, features: pd.DataFrame, *, top_k: int = 5, version: str | None = None,
                 progress: bool = False, chunk_rows: int = CHUNK, reasons: str = "arrow",
                 **options: Any) -> Iterator[pd.DataFrame]:
    """The scores of a feature frame, chunk_rows customers at a time, in the frame's order: customer_id,
    score, decile, segment columns, base_value, reasons (reasons='arrow': an Arrow list<struct> column,
    values as text; 'records': lists of dicts; multilabel models always give records), model_version and
    reason_1..k text columns. options go to crmscore.scoring.explained.score_with_reasons (multilabel:
    keep_regular, max_targets)."""
    from crmscore.progress import track

    chunks = range(0, len(features), chunk_rows)
    for start in track(chunks, f"scoring {bundle.task}", enabled=progress, total=len(chunks)):
        part = score_with_reasons(bundle, features.iloc[start:start + chunk_rows], explain=top_k > 0, top_k=top_k,
                                  reasons=reasons, **options)
        at = part.columns.get_loc("reasons") + 1 if "reasons" in part else len(part.columns)
        part.insert(at, "model_version", version or bundle.info.get("version", ""))
        if top_k > 0 and "reason_1" not in part:  # records (multilabel): the sentences from the lists
            for j in range(top_k):
                part[f"reason_{j + 1}"] = [r[j]["text"] if len(r) > j else None for r in part["reasons"]]
        yield part


def score_frame(bundle: TrainedModel, features: pd.DataFrame, *, top_k: int = 5, version: str | None = None,
                progress: bool = False, reasons: str = "arrow", **options: Any) -> pd.DataFrame:
    """Every row of a feature frame scored, in one frame (score_chunks' columns). For a file of a whole
    base use stream_scores, whose memory does not grow with the base."""
    parts = list(score_chunks(bundle, features, top_k=top_k, version=version, progress=progress, reasons=reasons,
                              **options))
    if not parts:
        return pd.DataFrame(columns=["customer_id", "score", "model_version"])
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def stream_scores(bundle: TrainedModel, features: pd.DataFrame, out: str | Path, *, top_k: int = 5,
                  version: str | None = None, progress: bool = False, chunk_rows: int = CHUNK,
                  rename: dict[str, str] | None = None, constants: dict[str, Any] | None = None) -> int:
    """Score a feature frame chunk by chunk into one Parquet file (write_scores' layout), columns renamed by
    `rename` and the `constants` columns (name: one value for every row) added last; returns the rows
    written. Each chunk is written by a second thread while the next one is explained (LightGBM and Parquet
    release the GIL), and only two chunks of scores are alive at a time: memory does not grow with the base."""
    import pyarrow.parquet as pq

    writer = None
    pending: Future | None = None
    rows = 0
    with ThreadPoolExecutor(1, thread_name_prefix="crmscore-write") as pool:
        try:
            for part in score_chunks(bundle, features, top_k=top_k, version=version, progress=progress,
                                     chunk_rows=chunk_rows):
                part = part.rename(columns=rename or {})
                for name, value in (constants or {}).items():
                    part[name] = value
                table = scores_table(part)
                if pending is not None:
                    pending.result()
                if writer is None:
                    writer = pq.ParquetWriter(str(out), table.schema)
                elif table.schema != writer.schema:  # a chunk where a column is all missing (type null)
                    table = table.cast(writer.schema)
                pending = pool.submit(writer.write_table, table)
                rows += len(table)
            if pending is not None:
                pending.result()
        finally:
            if writer is not None:
                writer.close()
    if writer is None:  # no customer: an empty file with the columns
        empty = score_frame(bundle, features, top_k=top_k, version=version).rename(columns=rename or {})
        for name, value in (constants or {}).items():
            empty[name] = value
        write_scores(empty, out)
    return rows


def scores_table(scores: pd.DataFrame) -> pa.Table:
    """Scores as the Arrow table batch files hold: reasons as a list of structs with each reason's value as
    text (values mix numbers and categories across features); Arrow-backed columns (score_chunks' reasons
    and sentences) are taken as they are, without a Python-object round trip."""
    frame = scores
    records = [c for c in ("reasons", "spend_reasons", "category_reasons")
               if c in frame and not isinstance(frame[c].dtype, pd.ArrowDtype)]
    if records:
        frame = frame.copy()
        for col in records:
            frame[col] = [[{**r, "value": None if r["value"] is None else str(r["value"])} for r in rs]
                          for rs in frame[col]]
    arrow = [c for c in frame.columns if isinstance(frame[c].dtype, pd.ArrowDtype)]
    table = pa.Table.from_pandas(frame.drop(columns=arrow), preserve_index=False)
    for col in arrow:
        table = table.append_column(col, pa.array(frame[col].array))
    return table.select([str(c) for c in frame.columns])


def write_scores(scores: pd.DataFrame, out: object) -> None:
    """Parquet with `reasons` as a list of structs; a reason's value is stored as text (scores_table)."""
    import pyarrow.parquet as pq

    pq.write_table(scores_table(scores), out)


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
        frame = frames[key]
        at = pd.Index(frame["customer_id"]).get_indexer(ids)  # a take by position: no index rebuilt and re-inserted
        if (at < 0).any():
            raise KeyError(f"customers without {bundle.task} features: {list(ids[at < 0][:5])}")
        frame = frame.iloc[at].reset_index(drop=True)
        return frame[PopulationRule.of_model(bundle).admits(frame["recency_days"])]

    pop = transactional_population(purchase, data, as_of)
    frames[purchase.feature_set.version] = pop
    out = score_frame(purchase, pop, top_k=top_k, version=version, progress=progress, reasons="records")
    ids = out["customer_id"]
    missing = [name for name in NEXT_PURCHASE_MODELS[1:] if name not in models]
    if missing:
        log.debug("next-purchase scores without %s (no model given): %s left out", " and ".join(missing),
                 "their columns are" if len(missing) > 1 else "its columns are")

    if "expected-spend" in models:
        spend, spend_version = models["expected-spend"]
        frame = features(spend, ids)
        scored = score_frame(spend, frame, top_k=top_k, progress=progress, reasons="records").set_index("customer_id")
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
