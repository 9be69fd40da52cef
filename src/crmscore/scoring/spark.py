"""Explained batch scoring on Spark: the features of crmscore.features.spark, then `mapInArrow` running the same
batch scoring as `crmscore score` (crmscore.scoring.batch.score_frame) on every partition, in Arrow batches of about
10,000 customers.

The model bundle travels with the job as bytes (a tar of TrainedModel.save) and is unpacked and loaded once
per Python worker (workers are reused between tasks; a module-level cache keeps the loaded bundle), with
LightGBM at one thread: Spark already runs one task per core, and a second thread per task would fight them.
The output has one row per customer of the model's population: score, decile, the RFM columns, segment,
lifecycle_stage, base_value, reasons (a list of structs, values as text, as crmscore.scoring.batch.write_scores
writes them), model_version and reason_1..k.

Users who want scores and SHAP columns only, without reason texts, segments or deciles, can take MLflow's
route instead: `mlflow.pyfunc.spark_udf(spark, "models:/churn@champion", result_type=...)` on the registered
pyfunc model (crmscore.models.pyfunc) over a feature table built with crmscore.features.spark.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from crmscore.features.build import as_of_timestamp
from crmscore.features.spark import spark_features
from crmscore.models.bundle import TrainedModel
from crmscore.models.population import PopulationRule

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from crmscore.data.spark import SparkCustomerData

log = logging.getLogger(__name__)
_LOADED: dict[str, TrainedModel] = {}  # per Python worker: digest -> bundle


def bundle_bytes(bundle: TrainedModel) -> bytes:
    """The bundle as one tar archive (what a task carries to the workers)."""
    with tempfile.TemporaryDirectory(prefix="crmscore-bundle-") as tmp:
        bundle.save(Path(tmp) / "bundle")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(Path(tmp) / "bundle", arcname="bundle")
        return buf.getvalue()


def worker_bundle(payload: bytes, digest: str) -> TrainedModel:
    """The bundle in this Python worker: unpacked and loaded at its first task, then kept; one LightGBM thread."""
    if digest not in _LOADED:
        with tempfile.TemporaryDirectory(prefix="crmscore-bundle-") as tmp:
            with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
                tar.extractall(tmp, filter="data")
            bundle = TrainedModel.load(Path(tmp) / "bundle")
        # LightGBM predicts with OpenMP's default thread count (the saved num_threads is not used at prediction,
        # and Booster.reset_parameter crashes a booster loaded from text): one OpenMP thread for this worker
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="openmp")
        _LOADED.clear()  # one model per worker at a time: a long-lived worker does not pile them up
        _LOADED[digest] = bundle
    return _LOADED[digest]


def _scored_rows(bundle: TrainedModel, rows: pd.DataFrame, top_k: int, version: str) -> pa.Table:
    """Feature rows -> the rows `crmscore score` writes for them, as the Arrow table batch files hold
    (crmscore.scoring.batch.scores_table: the reasons column stays the Arrow array score_chunks built)."""
    from crmscore.scoring.batch import score_frame, scores_table

    scores = score_frame(bundle, rows, top_k=top_k, version=version).rename(columns={"rfm_segment": "segment"})
    return scores_table(scores)


def _score_batch(bundle: TrainedModel, batch: pd.DataFrame, top_k: int, version: str) -> pa.Table | None:
    """One batch of features -> the scores of the model's population in it (None when none is in it)."""
    pop = batch[PopulationRule.of_model(bundle).admits(batch["recency_days"])].reset_index(drop=True)
    if pop.empty:
        return None
    return _scored_rows(bundle, pop, top_k, version)


def placeholder_row(schema: pa.Schema) -> pd.DataFrame:
    """One made-up row of a frame with this Arrow schema: 0 for numbers, False for flags, "x" for text, missing
    otherwise. Scored, it gives the output's columns and types without computing a single real feature."""
    def value(field: pa.Field) -> pa.Array:
        t = field.type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
            return pa.array([0], t)
        if pa.types.is_boolean(t):
            return pa.array([False], t)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return pa.array(["x"], t)
        return pa.nulls(1, t)

    return pa.table({f.name: value(f) for f in schema}).to_pandas()


def score_on_spark(bundle: TrainedModel, data: SparkCustomerData, as_of: object, *, top_k: int = 5,
                   version: str = "") -> DataFrame:
    """Scores and reasons of the model's population at as_of, as a Spark DataFrame (lazy, unordered).

    The features are computed once, by the job: the output schema comes from scoring one placeholder row
    typed like the feature table (its schema is known without running it) on the driver, so the columns and
    types are exactly what the workers' scoring gives (they depend on the model's kind, companions and top_k).
    Workers get and give Arrow batches (mapInArrow): the reasons column goes out as built, with no Python
    object per reason."""
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    cut = as_of_timestamp(as_of)
    version = version or str(bundle.info.get("version", ""))
    feats = spark_features(data, cut, bundle.feature_set, scorer=bundle.rfm_scorer())
    out_schema = _scored_rows(bundle, placeholder_row(to_arrow_schema(feats.schema)), top_k, version).schema
    payload = bundle_bytes(bundle)
    digest = hashlib.sha256(payload).hexdigest()[:16]

    def score_partition(batches):  # on the workers
        model = worker_bundle(payload, digest)
        for batch in batches:
            out = _score_batch(model, batch.to_pandas(), top_k, version)
            if out is not None and out.num_rows:
                yield from out.cast(out_schema).to_batches()

    return feats.mapInArrow(score_partition, from_arrow_schema(out_schema))


def write_spark_scores(scores: DataFrame, out: str | Path) -> None:
    """A folder of Parquet files (one a partition), readable by pandas.read_parquet and Spark alike."""
    scores.write.mode("overwrite").parquet(str(out))
