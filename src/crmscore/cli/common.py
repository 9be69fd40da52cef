"""Helpers shared by CLI commands: loading config and data with progress."""

from __future__ import annotations

import logging
from pathlib import Path

from crmscore.config import ProjectConfig, load_config
from crmscore.data.loader import CustomerData, load_customer_data
from crmscore.progress import Steps

log = logging.getLogger("crmscore")


def load_data(config: Path | ProjectConfig, *, strict: bool = True,
              max_bad_share: float | None = None) -> CustomerData:
    cfg = config if isinstance(config, ProjectConfig) else load_config(config)
    if max_bad_share is not None:
        cfg.validation.max_bad_share = max_bad_share
    n = sum(getattr(cfg.data, t) is not None for t in ("transactions", "products", "customers", "attribute_history",
                                                            "events", "treatments"))
    with Steps(n, "loading data") as steps:
        data = load_customer_data(cfg, strict=strict, progress=steps.step)
    for rep in data.reports.values():
        log.info("%s: %s rows from %s", rep.table, f"{rep.rows_read:,}", rep.source)
        for note in rep.notes:
            log.warning("%s: %s", rep.table, note)
    return data


def engine_of(cfg: ProjectConfig, engine: str | None) -> str:
    """The engine a command runs on: --engine when given, else the config's `engine` (duckdb by default)."""
    from crmscore.errors import ConfigError

    chosen = engine or cfg.engine
    if chosen not in ("duckdb", "spark"):
        raise ConfigError(f"--engine {chosen!r}: use duckdb or spark")
    return chosen


def load_spark_data(cfg: ProjectConfig):  # noqa: ANN201 (SparkCustomerData; PySpark is optional)
    """Canonical tables on Spark (the config's spark.master, or sc:// for Spark Connect), with progress."""
    from crmscore.data.spark import load_customer_data_spark

    n = sum(getattr(cfg.data, t) is not None for t in ("transactions", "products", "customers", "attribute_history",
                                                            "events"))
    with Steps(n, "loading data on Spark") as steps:
        data = load_customer_data_spark(cfg, strict=True, progress=steps.step)
    for rep in data.reports.values():
        log.info("%s: %s rows from %s", rep.table, f"{rep.rows_read:,}", rep.source)
    return data
