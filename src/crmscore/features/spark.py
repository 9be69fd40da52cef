"""Point-in-time feature tables on Spark: the declarations' SQL in the Spark dialect, then the parts that are
not SQL (buy-till-you-die fits, the RFM scale, declared dtypes) the same way as crmscore.features.build.

Where the work runs: the SQL (the heavy part: every receipt line) is distributed. The BTYD models and the RFM
quintile edges are fitted on the driver from five columns of the customer table (recency, first purchase,
orders, spend and the RFM window's orders and spend: about 50 bytes a customer, 1 GB for 20 million), then
applied per partition. Nothing else is collected.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from crmscore.features.build import ENGINE_BUILDERS, AsOf, LabelFn, _cast, as_of_timestamp, feature_set_for, feature_sql
from crmscore.features.definitions import FeatureSet
from crmscore.features.segments import SEGMENT_COLUMNS, RFMScorer, add_segments

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    from crmscore.data.spark import SparkCustomerData

log = logging.getLogger(__name__)


def feature_schema(fs: FeatureSet, segments: bool) -> StructType:
    """The Spark schema of a feature table: customer_id, the declared features, the segment columns."""
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    kind = {"float": DoubleType(), "int": LongType(), "category": StringType()}
    fields = [StructField("customer_id", StringType())]
    fields += [StructField(f.name, kind[f.dtype]) for f in fs.features]
    if segments:
        fields += [StructField(c, LongType() if c in ("rfm_r", "rfm_f", "rfm_m") else StringType())
                   for c in SEGMENT_COLUMNS]
    return StructType(fields)


def spark_features(data: SparkCustomerData, as_of: AsOf, fs: FeatureSet | None = None, *, segments: bool = True,
                   scorer: RFMScorer | None = None) -> DataFrame:
    """The feature table at as_of as a Spark DataFrame (lazy, unordered): the columns of
    crmscore.features.build.build_features. scorer: the RFM scale (a model's); default: fitted on this table."""
    return spark_features_and_scale(data, as_of, fs, segments=segments, scorer=scorer)[0]


def spark_features_and_scale(data: SparkCustomerData, as_of: AsOf, fs: FeatureSet | None = None, *,
                             segments: bool = True, scorer: RFMScorer | None = None
                             ) -> tuple[DataFrame, RFMScorer | None]:
    """spark_features and the RFM scale its segments use (the one given, or the one fitted on the driver),
    which a published snapshot records in its meta."""
    from crmscore.features.btyd import INPUT_COLUMNS, btyd_frame

    fs = fs or feature_set_for(data, as_of)
    sdf = data.sql(feature_sql(data, as_of, fs))
    btyd = [f.name for f in fs.features if f.stage == "btyd"]
    fit_scorer = segments and scorer is None
    needed = list(INPUT_COLUMNS) if btyd else []
    if fit_scorer:
        cols = RFMScorer(data.config.segments.rfm_window_days).columns.values()
        needed += [c for c in cols if c not in needed]
    if needed:
        from pyspark import StorageLevel

        # the SQL runs once: the driver's columns and the table returned both read this copy (without it the collect
        # ran the SQL and the returned table ran it again: Spark prunes only the events from the collect's plan, so
        # every receipt line was aggregated twice). It stays cached, spilling to disk, until the session ends or
        # Spark evicts it (least recently used first) for memory
        sdf = sdf.persist(StorageLevel.MEMORY_AND_DISK)
        small = sdf.select("customer_id", *needed).toPandas()
        if btyd:
            horizons = tuple(int(f.sql.split("(")[1].rstrip(")")) for f in fs.features
                             if f.sql.startswith("BGNBD_EXPECTED_ORDERS("))
            fitted = btyd_frame(small, horizons)[btyd]
            fitted.insert(0, "customer_id", small["customer_id"].astype(str))
            sdf = sdf.join(data.spark.createDataFrame(fitted), "customer_id", "left")
        if fit_scorer:
            scorer = RFMScorer(data.config.segments.rfm_window_days)
            if small["recency_days"].notna().any():
                scorer.fit(small)
            else:
                scorer.edges_ = {k: [0.0] * 4 for k in ("r", "f", "m")}
    sdf = sdf.select("customer_id", *fs.names)
    cfg = data.config.segments

    def finish(batches):  # per partition, on the workers
        for batch in batches:
            out = _cast(batch, fs)
            if segments:
                out = add_segments(out, cfg, scorer)
                for c in ("rfm_r", "rfm_f", "rfm_m"):
                    out[c] = out[c].astype("int64")
            yield out

    return sdf.mapInPandas(finish, feature_schema(fs, segments)), scorer


def collect_features(frame: DataFrame) -> pd.DataFrame:
    """A Spark feature table on the driver, ordered by customer_id like the DuckDB build, with its dtypes."""
    df = frame.toPandas().sort_values("customer_id", kind="stable").reset_index(drop=True)
    df["customer_id"] = df["customer_id"].astype("string")
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].astype("string")
        elif df[c].dtype == np.int32:
            df[c] = df[c].astype("int64")
    return df


ENGINE_BUILDERS["spark"] = lambda data, as_of, fs, segments: collect_features(
    spark_features(data, as_of, fs, segments=segments))


def spark_training_set(data: SparkCustomerData, as_of_dates: list[AsOf], label_fn: LabelFn,
                       fs: FeatureSet | None = None) -> DataFrame:
    """crmscore.features.build.build_training_set on Spark, as a lazy DataFrame: every cutoff's features (computed
    on the cluster) inner-joined with its labels, stacked, with the `as_of` column (TIMESTAMP_NTZ). The same
    columns in the same order as the DuckDB frame.

    What passes through the driver: each cutoff's labels (label_fn returns pandas: the customer id and a label or
    two, about 30 bytes a customer of the population: 600 MB for 20 million a cutoff) and the BTYD and RFM
    inputs of spark_features. The feature rows, the wide part, stay on the cluster."""
    import functools

    from pyspark.sql import functions as F

    from crmscore.features.dialect import SPARK

    cutoffs = sorted(as_of_timestamp(a) for a in as_of_dates)
    if not cutoffs:
        raise ValueError("spark_training_set needs at least one as_of date")
    fs = fs or feature_set_for(data, cutoffs[0])
    parts = []
    for cut in cutoffs:
        feats = spark_features(data, cut, fs)
        labels = label_fn(data, cut)
        labels = labels.astype({c: object for c in labels.columns if str(labels[c].dtype) == "string"})
        labels = labels.astype({"customer_id": str})
        joined = feats.join(data.spark.createDataFrame(labels), "customer_id", "inner")
        cols = [c for c in joined.columns if c != "customer_id"]
        parts.append(joined.select("customer_id", F.expr(SPARK.timestamp(cut)).alias("as_of"), *cols))
    return functools.reduce(lambda a, b: a.unionByName(b), parts)


def write_table(frame: DataFrame, out: str, fmt: str = "parquet") -> None:
    """A Spark table written where the cluster writes, never through the driver: a Parquet folder (readable by
    pandas.read_parquet) or a Delta table (needs delta-spark and a session configured for it)."""
    import importlib.util

    from crmscore.errors import ConfigError

    if fmt not in ("parquet", "delta"):
        raise ConfigError(f"--format {fmt!r}: use parquet or delta")
    if fmt == "delta" and importlib.util.find_spec("delta") is None:
        raise ConfigError("--format delta needs delta-spark (pip install delta-spark, matching the Spark version, "
                          "and a session with its extension); or write --format parquet")
    frame.write.mode("overwrite").format(fmt).save(str(out))
