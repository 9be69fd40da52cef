"""Explained batch scoring on Spark: the features of crmscore.features.spark, then `mapInPandas` running the same
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


def _score_batch(bundle: TrainedModel, batch: pd.DataFrame, top_k: int, version: str) -> pd.DataFrame:
    """One Arrow batch of features -> the rows `crmscore score` writes for them."""
    from crmscore.scoring.batch import score_frame

    pop = batch[PopulationRule.of_model(bundle).admits(batch["recency_days"])].reset_index(drop=True)
    if pop.empty:
        return pd.DataFrame()
    scores = score_frame(bundle, pop, top_k=top_k, version=version).rename(columns={"rfm_segment": "segment"})
    if "reasons" in scores:  # write_scores' form: a reason's value as text
        scores["reasons"] = [[{**r, "value": None if r["value"] is None else str(r["value"])} for r in rs]
                             for rs in scores["reasons"]]
    return scores


def score_on_spark(bundle: TrainedModel, data: SparkCustomerData, as_of: object, *, top_k: int = 5,
                   version: str = "") -> DataFrame:
    """Scores and reasons of the model's population at as_of, as a Spark DataFrame (lazy, unordered)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import from_arrow_schema

    cut = as_of_timestamp(as_of)
    version = version or str(bundle.info.get("version", ""))
    feats = spark_features(data, cut, bundle.feature_set, scorer=bundle.rfm_scorer())
    # the output schema from a few real rows scored on the driver (reasons' fields depend on the model kind)
    sample = _score_batch(bundle, feats.limit(200).toPandas(), top_k, version)
    if sample.empty:
        raise ValueError(f"no customer of {bundle.task}'s population in the first 200 rows at {cut.date()}")
    schema = from_arrow_schema(pa.Schema.from_pandas(sample, preserve_index=False))
    payload = bundle_bytes(bundle)
    digest = hashlib.sha256(payload).hexdigest()[:16]

    def score_partition(batches):  # on the workers
        model = worker_bundle(payload, digest)
        for batch in batches:
            out = _score_batch(model, batch, top_k, version)
            if len(out):
                yield out[sample.columns]

    return feats.mapInPandas(score_partition, schema)


def write_spark_scores(scores: DataFrame, out: str | Path) -> None:
    """A folder of Parquet files (one a partition), readable by pandas.read_parquet and Spark alike."""
    scores.write.mode("overwrite").parquet(str(out))
