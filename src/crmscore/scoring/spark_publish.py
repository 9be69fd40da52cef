"""Publishing the online feature snapshot from Spark to Redis, in partitions, for a fleet of service replicas.

The rows never reach the driver: each partition opens its own Redis client and writes its customers in pipelined
chunks under a new snapshot version, the one readers cannot see yet (crmscore.features.store.RedisStore's
versions). Only when every partition has written does the driver write the meta and switch the pointer, in one
SET, as `crmscore features publish` does (RedisStore.switch: the same rule, not a copy of it). A failed job
leaves the old snapshot served; its half-written version is deleted by the next publish.

What differs from the DuckDB publish (crmscore.scoring.publish): the SQLite store is not written (a fleet reads
Redis), purchase timelines are not published (the operations page shows none; timeline_days is 0), and the
segment summary has this snapshot's counts without the transitions from the previous one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crmscore.errors import ConfigError
from crmscore.features.build import as_of_timestamp, feature_set_for
from crmscore.features.spark import spark_features_and_scale
from crmscore.features.store import RedisStore, _version_keys
from crmscore.scoring.publish import merged, new_snapshot_meta, segment_summary, served_models

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from crmscore.data.spark import SparkCustomerData
    from crmscore.models.bundle import TrainedModel
    from crmscore.settings import Settings

log = logging.getLogger(__name__)
COUNTED = ("rfm_segment", "lifecycle_stage")  # what the snapshot's meta counts, per partition


@dataclass
class StagedSnapshot:
    """A version written to Redis that readers do not see yet: `switch` makes it the served one."""

    redis_url: str
    version: int
    rows: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # column -> value -> customers

    def switch(self, meta: dict[str, Any]) -> None:
        RedisStore(self.redis_url).switch(self.version, meta)


def stage_on_redis(frame: DataFrame, redis_url: str, *, chunk: int = 5000, timeout: float = 30.0) -> StagedSnapshot:
    """Write a feature table (customer_id and columns, as crmscore.features.spark builds it) to Redis under a new
    version, one client per partition, `chunk` rows to a pipeline round trip; count the segments on the way.
    timeout: seconds a pipeline may take (a bulk write, not a request's 1 s)."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    version = RedisStore(redis_url).new_version()
    prefix = _version_keys(version)[0]
    counted = [c for c in COUNTED if c in frame.columns]

    def write_partition(batches):  # on the workers: one client for the partition's batches
        from crmscore.features.store import rows_as_json

        store = RedisStore(redis_url, timeout=timeout)
        for batch in batches:
            n = store.write_rows(prefix, rows_as_json(batch), chunk=chunk)
            rows = [("__rows__", "", n)]
            for c in counted:
                rows += [(c, str(v), int(k)) for v, k in batch[c].astype(object).value_counts().items()]
            yield pd.DataFrame({"column": np.array([r[0] for r in rows], dtype=object),
                                "value": np.array([r[1] for r in rows], dtype=object),
                                "customers": np.array([r[2] for r in rows], dtype=np.int64)})

    schema = StructType([StructField("column", StringType()), StructField("value", StringType()),
                         StructField("customers", LongType())])
    summary = (frame.mapInPandas(write_partition, schema).groupBy("column", "value").sum("customers")
               .toDF("column", "value", "customers").collect())
    counts: dict[str, dict[str, int]] = {}
    for row in summary:
        counts.setdefault(row["column"], {})[row["value"]] = int(row["customers"])
    rows = counts.pop("__rows__", {}).get("", 0)
    return StagedSnapshot(redis_url, version, rows, counts)


def publish_snapshot_on_spark(data: SparkCustomerData, as_of: Any, settings: Settings, *,
                              served: list[tuple[str, str, TrainedModel]] | None = None) -> tuple[int, str]:
    """`crmscore features publish` on Spark: the feature snapshot at as_of (the config's feature set plus every
    served model's features) staged on Redis in partitions, then switched to. served: (name, version, model) of
    the models the service loads; default: read from the registry, as the DuckDB publish does.
    Returns (customers published, where)."""
    if not settings.redis_url:
        raise ConfigError("features publish --engine spark writes to Redis only: set CRMSCORE_REDIS_URL "
                          "(redis://host:6379/0), or publish on duckdb to the SQLite store")
    as_of = as_of_timestamp(as_of or data.default_as_of())
    served = served_models(settings) if served is None else served
    fs = merged(feature_set_for(data, as_of), [bundle.feature_set for _, _, bundle in served])
    frame, rfm = spark_features_and_scale(data, as_of, fs)
    staged = stage_on_redis(frame, settings.redis_url)
    meta = new_snapshot_meta(data.config.name, as_of, rfm, staged.rows, fs.definitions(fs.names), fs.windows,
                             served, engine="spark")
    summary = segment_summary(pd.DataFrame({"customer_id": [], **{c: [] for c in COUNTED}}), None, str(as_of),
                              None, None)
    summary["rfm"], summary["lifecycle"] = staged.counts.get("rfm_segment", {}), staged.counts.get("lifecycle_stage", {})
    meta["segments"], meta["timeline_days"] = summary, 0
    staged.switch(meta)
    log.info("published %s customers' features (version %d) from Spark to Redis", f"{staged.rows:,}", staged.version)
    return staged.rows, settings.redis_url
