"""Canonical tables on Apache Spark: the same sources, column mapping, data contract and quarantine as the
DuckDB loader (crmscore.data.loader), for data that lives in a lakehouse or does not fit on one machine.

The session always runs in time zone UTC and every canonical timestamp is a TIMESTAMP_NTZ holding the local
wall time of the config's `timezone` (the contract's timezone rule), so the feature SQL means the same on both
engines. Rows are numbered with `monotonically_increasing_id()` (never an unpartitioned `row_number() OVER ()`,
which funnels every row through one task), so a quarantined row's `_row` identifies it but is not its line
number in the file. Sources: Parquet, CSV (read as text, then cast by the contract), a Delta table's folder
(`format: delta`, with delta-spark installed) or a catalog table (`format: table`, path = its name).

PySpark is optional (`pip install "crmscore[spark]"`, Java 17); nothing here is imported without it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import unicodedata
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from crmscore.config import ProjectConfig, SourceConfig
from crmscore.data.contracts import ColumnSpec, TableContract
from crmscore.data.loader import (CANONICAL_TABLES, CanonicalTables, Issue, TableReport, _problem, chosen_attributes,
                                  load_tables, map_source_columns, require_columns, too_many_bad_rows)
from crmscore.errors import ConfigError, DataContractError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_OFFSET_RE = r"([+-][0-9]{2}(:?[0-9]{2})?|Z)$"
# Arrow batches of about 10,000 rows to and from Python workers (mapInPandas, toPandas)
ARROW_BATCH_ROWS = 10_000
_STRPTIME_TO_JAVA = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss", "%f": "SSSSSS",
                     "%y": "yy", "%b": "MMM", "%B": "MMMM", "%I": "hh", "%p": "a", "%z": "XX", "%Z": "z", "%j": "DDD",
                     "%%": "%"}


def spark_session(master: str = "local[2]", conf: dict[str, str] | None = None,
                  session: SparkSession | None = None) -> SparkSession:
    """A Spark session for crmscore: the caller's own `session` (a Databricks or notebook session), a Spark
    Connect session for an `sc://` master, or a classic one for any other master URL. Whichever it is, its
    session time zone is set to UTC (canonical timestamps are naive local times; a zone would shift them).

    A local master binds the driver to 127.0.0.1 (nothing listens on the machine's public addresses).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError("engine spark needs PySpark: pip install 'crmscore[spark]' (and Java 17)") from exc
    if session is None:
        builder = SparkSession.builder
        if master.startswith("sc://"):
            builder = builder.remote(master)
        else:
            builder = builder.master(master).appName("crmscore")
            if master.startswith("local"):
                builder = (builder.config("spark.driver.host", "127.0.0.1")
                           .config("spark.driver.bindAddress", "127.0.0.1")
                           .config("spark.ui.enabled", "false")
                           .config("spark.sql.shuffle.partitions", "8"))
                # Python workers run this interpreter (its venv has crmscore, pandas, LightGBM); PySpark reads
                # the variable, not spark.pyspark.python, when it starts the context
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            builder = builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
        for key, value in (conf or {}).items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
    session.conf.set("spark.sql.session.timeZone", "UTC")
    session.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_BATCH_ROWS))
    return session


def session_for(cfg: ProjectConfig, session: SparkSession | None = None) -> SparkSession:
    """The session the config's `spark` section describes (or the caller's own)."""
    return spark_session(cfg.spark.master, cfg.spark.conf, session)


@dataclass
class SparkCustomerData(CanonicalTables):
    """Canonical tables as temporary views of a Spark session; the same interface as CustomerData for feature
    building (`rows`, `has`, `columns`, `attributes`), with `engine = 'spark'` selecting the Spark dialect."""

    spark: SparkSession
    config: ProjectConfig
    tables: set[str]
    reports: dict[str, TableReport]
    attributes: dict[str, str] = field(default_factory=dict)
    columns: dict[str, set[str]] = field(default_factory=dict)
    history_attributes: dict[str, str] = field(default_factory=dict)
    engine: str = "spark"

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.spark.sql(sql).collect()]

    def frame(self, sql: str) -> pd.DataFrame:
        """A query's result on the driver, through Arrow (labels, populations: one row per customer)."""
        return self.spark.sql(sql).toPandas()

    def sql(self, sql: str) -> DataFrame:
        return self.spark.sql(sql)


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# the characters DuckDB's TRIM strips (Unicode's space separators, category Zs: ' ', U+00A0, U+2000-U+200A,
# U+3000, ...); Spark's TRIM strips only the ASCII space, so an id padded with U+00A0 would be another customer here
_SPACES = "".join(ch for ch in map(chr, range(0x3001)) if unicodedata.category(ch) == "Zs")


def _trimmed(text: str) -> str:
    """Spark SQL: the text value without leading and trailing spaces of every kind DuckDB's TRIM strips."""
    return f"TRIM(BOTH {_literal(_SPACES)} FROM {text})"


def java_datetime_pattern(strptime_format: str) -> str:
    """A strptime format ('%d/%m/%Y %H:%M') as Spark's datetime pattern ('dd/MM/yyyy HH:mm')."""
    out, i = [], 0
    while i < len(strptime_format):
        tok = strptime_format[i:i + 2]
        if tok.startswith("%"):
            if tok not in _STRPTIME_TO_JAVA:
                raise ConfigError(f"timestamp_format {strptime_format!r}: {tok} has no Spark equivalent here; use "
                                  f"{', '.join(k for k in _STRPTIME_TO_JAVA if k != '%%')}")
            out.append(_STRPTIME_TO_JAVA[tok])
            i += 2
            continue
        ch = strptime_format[i]
        out.append(f"'{ch}'" if ch.isalpha() else "''" if ch == "'" else ch)
        i += 1
    return "".join(out)


def _typed_expr(spec: ColumnSpec, raw: str, source_type: str, tz: str, fmt: str | None) -> str:
    """Spark SQL casting a raw mapped value to the contract type; NULL where it cannot be cast (the DuckDB
    loader's rules, crmscore.data.loader._typed_expr). Naive text stays as written, as the DuckDB loader reads
    a timestamp column of ISO text (each value by its own rule)."""
    st = source_type.lower()
    numeric = st.startswith(("tinyint", "smallint", "int", "bigint", "float", "double", "decimal", "byte", "short",
                             "long", "real"))
    if spec.kind in ("id", "text"):
        if st.startswith(("double", "float", "decimal", "real")):
            raw = (f"CASE WHEN {raw} = floor({raw}) THEN CAST(CAST({raw} AS BIGINT) AS STRING) "
                   f"ELSE CAST({raw} AS STRING) END")
        return f"NULLIF({_trimmed(f'CAST({raw} AS STRING)')}, '')"
    if spec.kind == "number":
        if numeric:
            return f"CAST({raw} AS DOUBLE)"
        return f"try_cast(regexp_replace({_trimmed(f'CAST({raw} AS STRING)')}, ',', '') AS DOUBLE)"
    zone = _literal(tz)

    def local(instant: str) -> str:  # an instant (TIMESTAMP, session UTC) as the zone's wall time
        return f"CAST(from_utc_timestamp({instant}, {zone}) AS TIMESTAMP_NTZ)"

    if st == "timestamp":
        return local(raw)
    if st.startswith(("timestamp_ntz", "date")):
        return f"CAST({raw} AS TIMESTAMP_NTZ)"
    if numeric:
        return local(f"timestamp_micros(CAST(CAST({raw} AS DOUBLE) * 1000000 AS BIGINT))")
    text = _trimmed(f"CAST({raw} AS STRING)")
    if fmt:
        parsed = f"try_to_timestamp({text}, {_literal(java_datetime_pattern(fmt))})"
        return local(parsed) if ("%z" in fmt or "%Z" in fmt) else f"CAST({parsed} AS TIMESTAMP_NTZ)"
    naive = f"try_cast(replace({text}, 'T', ' ') AS TIMESTAMP_NTZ)"
    return f"CASE WHEN {text} RLIKE {_literal(_OFFSET_RE)} THEN {local(f'try_cast({text} AS TIMESTAMP)')} ELSE {naive} END"


def _read(spark: SparkSession, source: SourceConfig, path: str) -> DataFrame:
    fmt = source.format or ("parquet" if re.search(r"\.parq(uet)?$", path, re.I) else "csv")
    if fmt == "table":
        return spark.table(source.path)
    if fmt == "delta":
        return spark.read.format("delta").load(path)
    if fmt == "parquet":
        return spark.read.option("mergeSchema", "true").parquet(path)
    reader = spark.read.option("header", "true").option("inferSchema", "false")  # text: the contract casts it
    for key, value in source.csv_options.items():
        reader = reader.option({"delim": "sep", "delimiter": "sep"}.get(key, key), str(value))
    return reader.csv(path)


class _SparkTableLoader:
    """Loads one table on Spark; the steps mirror crmscore.data.loader._TableLoader."""

    def __init__(self, spark: SparkSession, cfg: ProjectConfig, contract: TableContract, source: SourceConfig):
        self.spark, self.cfg, self.contract, self.source = spark, cfg, contract, source
        self.name = contract.name
        self.path = source.path if source.format == "table" else cfg.resolve(source.path)
        self.report = TableReport(self.name, self.path)

    def load(self) -> tuple[TableReport, dict[str, str]]:
        from pyspark.errors import PySparkException
        from pyspark.sql import functions as F

        try:
            src = _read(self.spark, self.source, self.path).withColumn("__row", F.monotonically_increasing_id())
            source_types = {f.name: f.dataType.simpleString() for f in src.schema.fields if f.name != "__row"}
        except PySparkException as exc:
            raise DataContractError(f"{self.name}: cannot read {self.path}: {str(exc).splitlines()[0]}") from exc
        src.createOrReplaceTempView(f"src_{self.name}")
        mapping = self._mapping(src, source_types)
        attrs = self._attributes(mapping, source_types)
        self._build(src, mapping, attrs)
        return self.report, attrs

    def _mapping(self, src: DataFrame, source_types: dict[str, str]) -> dict[str, str]:
        from pyspark.errors import PySparkException

        mapping = map_source_columns(self.name, self.contract, self.source, source_types, _quote)
        available = ", ".join(source_types)
        for name, sql in mapping.items():
            try:
                src.selectExpr(sql).schema  # noqa: B018 (analysis only: names and types, no job)
            except PySparkException as exc:
                raise DataContractError(
                    f"{self.name}.{name}: the mapping {self.source.columns.get(name, name)!r} cannot be read "
                    f"from {self.path}: {str(exc).splitlines()[0]} (source columns: {available})") from exc
        require_columns(self.name, self.contract, self.path, mapping, available)
        return mapping

    def _attributes(self, mapping: dict[str, str], source_types: dict[str, str]) -> dict[str, str]:
        if not self.contract.keep_extra_columns:
            return {}
        used = {m.strip("`") for m in mapping.values()}
        extra = [col for col, typ in source_types.items()
                 if not (col in used and col not in mapping) and self.contract.column(col) is None]
        chosen = chosen_attributes(self.name, self.source, self.path, extra)
        attrs: dict[str, str] = {}
        for col in chosen:
            mapping.setdefault(col, _quote(col))
            typ = source_types[col].lower()
            # CSV is read as text on Spark: an attribute is a number when every non-empty value parses as one,
            # as DuckDB's type detection decides
            attrs[col] = "number" if self._numeric(col, typ) else "text"
        return attrs

    def _numeric(self, col: str, typ: str) -> bool:
        if typ.startswith(("tinyint", "smallint", "int", "bigint", "float", "double", "decimal")):
            return True
        if typ != "string":
            return False
        c = _trimmed(_quote(col))
        bad, filled = self.spark.sql(
            f"SELECT count_if(try_cast({c} AS DOUBLE) IS NULL AND NULLIF({c}, '') IS NOT NULL), "
            f"count(NULLIF({c}, '')) FROM src_{self.name}").collect()[0]
        return filled > 0 and bad == 0

    def _build(self, src: DataFrame, mapping: dict[str, str], attrs: dict[str, str]) -> None:
        from pyspark import StorageLevel

        tz = self.cfg.timezone
        typed_cols, raw_cols, checks = [], [], []
        for name, sql in mapping.items():
            spec = self.contract.column(name) or ColumnSpec(
                name, "number" if attrs.get(name) == "number" else "text", False, "attribute")
            st = src.selectExpr(f"{sql} AS x").schema.fields[0].dataType.simpleString()
            fmt = self.source.timestamp_format if spec.kind == "timestamp" else None
            typed, raw = _quote(name), _quote("raw__" + name)
            typed_cols.append(f"{_typed_expr(spec, sql, st, tz, fmt)} AS {typed}")
            raw_cols.append(f"CAST({sql} AS STRING) AS {raw}")
            if spec.required:
                checks.append((name, f"{typed} IS NULL AND {raw} IS NULL", "are missing (null)"))
            if spec.kind in ("number", "timestamp") or spec.required:
                checks.append((name, f"{typed} IS NULL AND {raw} IS NOT NULL", _problem(spec)))
        typed_df = src.selectExpr("__row", *typed_cols, *raw_cols).persist(StorageLevel.MEMORY_AND_DISK)
        typed_view = f"typed_{self.name}"
        typed_df.createOrReplaceTempView(typed_view)
        unions = [f"SELECT __row, {_literal(col)} AS _column, {_literal(problem)} AS _reason, "
                  f"{_quote('raw__' + col)} AS _value FROM {typed_view} WHERE {cond}" for col, cond, problem in checks]
        key = self.contract.unique_key
        if key:
            unions.append(
                f"SELECT __row, {_literal(key)}, 'are duplicate ids', {_quote(key)} FROM "
                f"(SELECT __row, {_quote(key)}, count(*) OVER (PARTITION BY {_quote(key)}) AS n "
                f"FROM {typed_view} WHERE {_quote(key)} IS NOT NULL) WHERE n > 1")
        bad = self.spark.sql(" UNION ALL ".join(unions)).persist(StorageLevel.MEMORY_AND_DISK)
        bad.createOrReplaceTempView(f"bad_{self.name}")
        canonical = (typed_df.join(bad.select("__row").distinct(), "__row", "left_anti")
                     .selectExpr(*(_quote(n) for n in mapping)).persist(StorageLevel.MEMORY_AND_DISK))
        canonical.createOrReplaceTempView(self.name)
        self.report.rows_read = typed_df.count()
        self.report.rows_bad = bad.select("__row").distinct().count()
        self._collect_issues()
        self._quarantine(src, bad)
        canonical.count()  # materialised before its inputs go
        typed_df.unpersist()
        bad.unpersist()

    def _collect_issues(self) -> None:
        if not self.report.rows_bad:
            return
        rows = self.spark.sql(
            f"SELECT _column, _reason, count(*) AS n, min(struct(__row, _value)) AS ex FROM bad_{self.name} "
            f"GROUP BY 1, 2 ORDER BY n DESC").collect()
        for column, reason, n, ex in rows:
            self.report.issues.append(Issue(self.name, column, reason, n, [(ex[0], ex[1])]))

    def _quarantine(self, src: DataFrame, bad: DataFrame) -> None:
        out = Path(self.cfg.validation.quarantine_dir) / f"{self.name}.parquet"
        if out.exists():  # a stale file from an earlier run would contradict this report
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        if self.report.rows_bad == 0:
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        raw = src.select([src[c].cast("string").alias(c) if c != "__row" else src[c] for c in src.columns])
        (bad.withColumnRenamed("__row", "_row").join(raw.withColumnRenamed("__row", "_row"), "_row")
         .write.mode("overwrite").parquet(str(out)))
        self.report.quarantine_path = out
        log.warning("%s: %d bad rows quarantined to %s", self.name, self.report.rows_bad, out)


def load_customer_data_spark(cfg: ProjectConfig, spark: SparkSession | None = None, *, strict: bool = True,
                             progress: Callable[[str], None] | None = None) -> SparkCustomerData:
    """Every configured source as a canonical table (a temporary view) in a Spark session; the same checks,
    quarantine and errors as crmscore.data.loader.load_customer_data."""
    try:
        zoneinfo.ZoneInfo(cfg.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"timezone {cfg.timezone!r} is not an IANA zone name such as 'UTC' or "
                          f"'America/New_York'") from exc
    if cfg.data.transactions is None:
        raise ConfigError("data.transactions is required for transactional features")
    spark = session_for(cfg, spark)
    # treatments (uplift campaigns) are read on DuckDB only for now
    tables, reports, attributes, history_attributes = load_tables(
        cfg, lambda contract, source: _SparkTableLoader(spark, cfg, contract, source).load(), progress,
        names=tuple(n for n in CANONICAL_TABLES if n != "treatments"), engine=" on Spark")
    columns = {t: set(spark.table(t).columns) for t in tables}
    data = SparkCustomerData(spark, cfg, tables, reports, attributes, columns, history_attributes)
    _enrich_transactions(data)
    if strict and data.bad_tables:
        raise DataContractError(too_many_bad_rows(data))  # type: ignore[arg-type]
    return data


def _enrich_transactions(data: SparkCustomerData) -> None:
    """The `lines` view: transactions with `category` (from products when missing) and `order_key`."""
    cols = data.columns["transactions"]
    cat, join = data.line_category("CAST(NULL AS STRING)")
    second = "date_format(t.ts, 'yyyyMMddHHmmss')"
    order = f"COALESCE(t.order_id, {second})" if "order_id" in cols else second
    extra = "".join(f", t.{c}" for c in ("channel", "store_id", "quantity", "product_id") if c in cols)
    data.spark.sql(f"CREATE OR REPLACE TEMP VIEW lines AS SELECT t.customer_id, t.ts, t.amount, {order} AS order_key, "
                   f"COALESCE({cat}, 'unknown') AS category{extra} FROM transactions t {join}")
    data.tables.add("lines")
    data.columns["lines"] = set(data.spark.table("lines").columns)

