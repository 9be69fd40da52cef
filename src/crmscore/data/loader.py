"""Load source files into canonical DuckDB tables, checking the data contract on the way.

Each configured source is read by DuckDB, its columns mapped to canonical names (a mapping value is a
source column or an SQL expression over source columns), cast to the contract's types, and checked:
a missing required column stops loading at once; a row with a null id, an unparseable timestamp, a
non-numeric amount, or a duplicate key goes to `<quarantine_dir>/<table>.parquet` with the column and
the reason. When a table's share of bad rows exceeds `validation.max_bad_share`, loading fails with a
message naming the table, the column, the count and example rows.
"""

from __future__ import annotations

import logging
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from crmscore.config import ProjectConfig, SourceConfig
from crmscore.data.contracts import CONTRACTS, ColumnSpec, TableContract
from crmscore.errors import ConfigError, DataContractError

log = logging.getLogger(__name__)

_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL")
_OFFSET_RE = r"([+-][0-9]{2}(:?[0-9]{2})?|Z)$"


@dataclass
class Issue:
    """One kind of problem in one column of one table."""

    table: str
    column: str
    problem: str
    rows: int
    examples: list[tuple[int, str | None]]

    def message(self, total_rows: int) -> str:
        share = self.rows / total_rows if total_rows else 0.0
        shown = ", ".join(f"row {r}: {v!r}" for r, v in self.examples)
        return (f"{self.table}.{self.column}: {self.rows:,} of {total_rows:,} rows ({share:.2%}) "
                f"{self.problem}; e.g. {shown}")


@dataclass
class TableReport:
    table: str
    source: str
    rows_read: int = 0
    rows_bad: int = 0
    issues: list[Issue] = field(default_factory=list)
    quarantine_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def bad_share(self) -> float:
        return self.rows_bad / self.rows_read if self.rows_read else 0.0


class CanonicalTables:
    """What every engine's canonical tables answer alike (CustomerData on DuckDB, SparkCustomerData on Spark),
    written once over the engine's own `rows()` query."""

    tables: set[str]
    columns: dict[str, set[str]]
    reports: dict[str, TableReport]
    config: ProjectConfig

    def rows(self, sql: str) -> list[tuple]:
        raise NotImplementedError

    def has(self, table: str, column: str | None = None) -> bool:
        if table not in self.tables:
            return False
        return column is None or column in self.columns.get(table, set())

    def line_category(self, null_text: str) -> tuple[str, str]:
        """A line's category as SQL over transactions `t` (before the 'unknown' default): its own category, else
        its product's; and the join that brings the product (empty without products). `null_text` is the engine's
        typed text NULL. The `lines` view of either engine and the vocabulary's line totals read it from here."""
        cols = self.columns["transactions"]
        has_cat = "category" in cols
        if self.has("products") and "product_id" in cols:
            own_or_product = "COALESCE(t.category, p.category)" if has_cat else "p.category"
            return own_or_product, "LEFT JOIN products p USING (product_id)"
        return ("t.category" if has_cat else null_text), ""

    def ts_range(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        lo, hi = self.rows("SELECT min(ts), max(ts) FROM transactions")[0]
        return pd.Timestamp(lo), pd.Timestamp(hi)

    def default_as_of(self) -> pd.Timestamp:
        """The cutoff used when none is given: midnight after the last transaction's day ("today")."""
        return self.ts_range()[1].normalize() + pd.Timedelta(days=1)

    @property
    def bad_tables(self) -> list[TableReport]:
        limit = self.config.validation.max_bad_share
        return [r for r in self.reports.values() if r.bad_share > limit]


@dataclass
class CustomerData(CanonicalTables):
    """Canonical tables in an embedded DuckDB connection.

    Tables: `transactions` (always; with `category` joined from products and an `order_key`),
    and `customers`, `attribute_history`, `events`, `products`, `treatments` when configured. `attributes` maps each
    static customer attribute column (listed under data.customers.attributes) to 'number' or 'text';
    `history_attributes` the same for the columns of attribute_history, joined point-in-time.
    """

    con: duckdb.DuckDBPyConnection
    config: ProjectConfig
    tables: set[str]
    reports: dict[str, TableReport]
    attributes: dict[str, str] = field(default_factory=dict)
    columns: dict[str, set[str]] = field(default_factory=dict)
    history_attributes: dict[str, str] = field(default_factory=dict)

    def rows(self, sql: str) -> list[tuple]:
        """The rows of a query over the canonical tables (the same call answers on Spark: SparkCustomerData)."""
        return self.con.execute(sql).fetchall()

    def frame(self, sql: str) -> pd.DataFrame:
        """A query's result as a pandas frame (SparkCustomerData.frame collects a Spark result the same way)."""
        return self.con.execute(sql).df()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def map_source_columns(table: str, contract: TableContract, source: SourceConfig, source_types: dict[str, str],
                       quote: Callable[[str], str]) -> dict[str, str]:
    """canonical name -> SQL over the source's columns, for every contract column the source has: the config's
    mapping (a column name, matched case-insensitively, or an SQL expression) first, then same-named columns.
    `quote` is the engine's identifier quoting (DuckDB and Spark share these rules)."""
    lower = {c.lower(): c for c in source_types}
    mapping: dict[str, str] = {}
    for name, expr in source.columns.items():
        if contract.column(name) is None and not contract.keep_extra_columns:
            known = ", ".join(c.name for c in contract.columns)
            raise DataContractError(f"{table}: '{name}' in data.{table}.columns is not a column of "
                                    f"the {table} contract (known: {known})")
        if expr in source_types:
            mapping[name] = quote(expr)
        elif expr.lower() in lower:
            mapping[name] = quote(lower[expr.lower()])
        else:
            mapping[name] = f"({expr})"
    for spec in contract.columns:
        if spec.name not in mapping and spec.name.lower() in lower:
            mapping[spec.name] = quote(lower[spec.name.lower()])
    return mapping


def require_columns(table: str, contract: TableContract, path: str, mapping: dict[str, str], available: str) -> None:
    """A one-line error naming the table's required columns that the mapping leaves out, and how to map them."""
    missing = [c for c in contract.required if c not in mapping]
    if missing:
        cols = ", ".join(f"'{c}'" for c in missing)
        raise DataContractError(
            f"{table}: required column {cols} is missing in {path}; map it under "
            f"data.{table}.columns, e.g. {{{missing[0]}: <source column>}} (source columns: {available})")


def chosen_attributes(table: str, source: SourceConfig, path: str, extra: list[str]) -> list[str]:
    """The columns of `extra` (a source's columns outside the contract) that the config makes features, for
    either engine: a list names them; 'all' takes every one not excluded, with a warning naming each (a column
    exported today leaks into past snapshots). `path` is the source as the messages name it."""
    listed = getattr(source, "attributes", [])
    where = f"data.{table}.attributes"
    if listed == "all":
        excluded = set(getattr(source, "exclude_attributes", []))
        chosen = [c for c in extra if c not in excluded]
        if chosen:
            log.warning("%s: every column but %s becomes a feature: %s. Each must be known before every "
                        "cutoff (a status, tier or value exported today leaks the label into past snapshots); "
                        "list the safe ones under %s to silence this", table, sorted(excluded) or "none",
                        ", ".join(chosen), where)
        return chosen
    unknown = [c for c in listed if c not in extra]
    if unknown:
        raise DataContractError(
            f"{table}.{unknown[0]}: listed under {where} but not an attribute column of {path} "
            f"(attribute columns: {', '.join(extra) or 'none'}); fix the name or remove it")
    unused = [c for c in extra if c not in listed]
    if unused:
        log.info("%s: columns %s are not features (list them under %s to use them)", table, ", ".join(unused), where)
    return list(listed)


def _reader_sql(source: SourceConfig, path: str, text_columns: tuple[str, ...] = ()) -> str:
    fmt = source.format or ("parquet" if re.search(r"\.parq(uet)?$", path, re.I) else "csv")
    if fmt in ("delta", "table"):
        raise ConfigError(f"{path}: format {fmt!r} is read on Spark only; set engine: spark (or --engine spark), "
                          f"or export the table to Parquet")
    if fmt == "parquet":
        return f"read_parquet({_literal(path)}, union_by_name=true)"
    opts = {"auto_detect": "true", "header": "true", "sample_size": "-1", "union_by_name": "true"}
    for key, value in source.csv_options.items():
        opts[key] = _literal(value) if isinstance(value, str) else str(value).lower()
    if text_columns:
        opts["types"] = "{" + ", ".join(f"{_literal(c)}: 'VARCHAR'" for c in text_columns) + "}"
    return f"read_csv({_literal(path)}, " + ", ".join(f"{k}={v}" for k, v in opts.items()) + ")"


def _typed_expr(spec: ColumnSpec, raw: str, source_type: str, tz: str, fmt: str | None) -> str:
    """SQL casting a raw mapped value to the contract type; NULL where it cannot be cast."""
    st = source_type.upper()
    if spec.kind in ("id", "text"):
        if st.startswith(("DOUBLE", "FLOAT", "DECIMAL", "REAL")):
            # 2261.0 -> '2261': ids stored as floats keep their integer form
            raw = f"CASE WHEN {raw} = floor({raw}) THEN CAST(CAST({raw} AS BIGINT) AS VARCHAR) ELSE CAST({raw} AS VARCHAR) END"
        return _trimmed_text(raw) if st.startswith("VARCHAR") else f"NULLIF(TRIM(CAST({raw} AS VARCHAR)), '')"
    if spec.kind == "number":
        if st.startswith(_NUMERIC_TYPES):
            return f"CAST({raw} AS DOUBLE)"
        return f"TRY_CAST(REPLACE(TRIM(CAST({raw} AS VARCHAR)), ',', '') AS DOUBLE)"
    # timestamps: see the timezone rule in crmscore.data.contracts
    zone = _literal(tz)
    if st.startswith("TIMESTAMP WITH TIME ZONE") or st == "TIMESTAMPTZ":
        return f"timezone({zone}, {raw})"
    if st.startswith(("TIMESTAMP", "DATE")):
        return f"CAST({raw} AS TIMESTAMP)"
    if st.startswith(_NUMERIC_TYPES):
        return f"timezone({zone}, to_timestamp(CAST({raw} AS DOUBLE)))"
    text = f"TRIM(CAST({raw} AS VARCHAR))"
    if fmt:
        if "%z" in fmt or "%Z" in fmt:
            return f"timezone({zone}, try_strptime({text}, {_literal(fmt)}))"
        return f"CAST(try_strptime({text}, {_literal(fmt)}) AS TIMESTAMP)"
    return (f"CASE WHEN regexp_matches({text}, {_literal(_OFFSET_RE)}) "
            f"THEN timezone({zone}, TRY_CAST({text} AS TIMESTAMPTZ)) "
            f"ELSE TRY_CAST({text} AS TIMESTAMP) END")


def _trimmed_text(raw: str) -> str:
    """NULLIF(TRIM(raw), '') of a VARCHAR, with TRIM only where it can change the value.

    DuckDB's TRIM strips Unicode space separators (category Zs: ' ', U+00A0, U+2000-U+200A, U+3000, ...) and
    walks every character of the string through utf8proc to find them, the dearest part of typing a table (five
    text columns of 10M lines: 1.7-2.4 of the 4-5 CPU s of typing them). An ASCII-only value (its byte length
    equals its character count) can hold only the ASCII space among those, so one that neither starts nor ends
    with it and is not empty is already its own trimmed value; every other value takes TRIM as before, so the
    result is the same for every string (typing those lines: 4.5-4.8 -> 3.8-4.0 CPU s)."""
    plain = (f"{raw} <> '' AND NOT starts_with({raw}, ' ') AND NOT ends_with({raw}, ' ') "
             f"AND strlen({raw}) = length({raw})")
    return f"CASE WHEN {plain} THEN {raw} ELSE NULLIF(TRIM({raw}), '') END"


def _problem(spec: ColumnSpec) -> str:
    return {"id": "are empty", "text": "are empty", "number": "are not numbers",
            "timestamp": "are not parseable timestamps"}[spec.kind]


class _TableLoader:
    """Loads one table; kept as a class so each step reads as one method."""

    def __init__(self, con: duckdb.DuckDBPyConnection, cfg: ProjectConfig, contract: TableContract,
                 source: SourceConfig):
        self.con, self.cfg, self.contract, self.source = con, cfg, contract, source
        self.name = contract.name
        self.path = cfg.resolve(source.path)
        self.report = TableReport(self.name, self.path)

    def load(self) -> tuple[TableReport, dict[str, str]]:
        src = f"src_{self.name}"
        try:
            self.reader = _reader_sql(self.source, self.path)
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {src} AS SELECT *, row_number() OVER () AS __row "
                             f"FROM {self.reader}")
            described = self.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
            text_ts = self._iso_text_timestamps(src, described)
            if text_ts:
                self.reader = _reader_sql(self.source, self.path, text_ts)
                self.con.execute(f"CREATE OR REPLACE TEMP VIEW {src} AS SELECT *, row_number() OVER () AS __row "
                                 f"FROM {self.reader}")
                described = self.con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
        except duckdb.Error as exc:
            raise DataContractError(f"{self.name}: cannot read {self.path}: {str(exc).splitlines()[0]}") from exc
        source_types = {row[0]: row[1] for row in described if row[0] != "__row"}
        mapping = self._mapping(source_types)
        attrs = self._attributes(mapping, source_types)
        self._build(src, mapping, source_types, attrs)
        return self.report, attrs

    def _iso_text_timestamps(self, src: str, described: list) -> tuple[str, ...]:
        """CSV columns DuckDB's sniffer typed as timestamps although they are ISO text, to be read as text.

        The sniffer types a whole column: TIMESTAMPTZ when some values carry a UTC offset (then the naive
        values in it are taken as UTC instants and shift), TIMESTAMP otherwise (then an offset met later is
        dropped). Read as text, each value follows the contract's rule on its own (crmscore.data.contracts:
        an offset is converted to the data's zone, a naive wall time stays as written), as on Spark. Only
        columns whose every value parses as ISO text are re-read, so sniffed formats such as `12/1/2010 8:26`
        keep working."""
        if (self.source.format or "csv") != "csv" or re.search(r"\.parq(uet)?$", self.path, re.I):
            return ()
        found = []
        for column, kind, *_ in described:
            if column == "__row" or not str(kind).upper().startswith("TIMESTAMP"):
                continue
            text = f"TRIM({_quote(column)})"
            bad = self.con.execute(
                f"SELECT count(*) FROM {_reader_sql(self.source, self.path, (column,))} WHERE {text} <> '' AND "
                f"TRY_CAST({text} AS TIMESTAMP) IS NULL AND TRY_CAST({text} AS TIMESTAMPTZ) IS NULL").fetchone()[0]
            if bad == 0:
                found.append(column)
        return tuple(found)

    def _mapping(self, source_types: dict[str, str]) -> dict[str, str]:
        """canonical name -> SQL over source columns, for every column present; errors if required missing."""
        mapping = map_source_columns(self.name, self.contract, self.source, source_types, _quote)
        available = ", ".join(source_types)
        for name, sql in mapping.items():
            try:
                self.con.execute(f"DESCRIBE SELECT {sql} FROM src_{self.name}")
            except duckdb.Error as exc:
                detail = str(exc).splitlines()[0]
                m = re.search(r'column "?([^"\s]+)"? not found', detail, re.I)
                what = f"column '{m.group(1)}' is not in the source" if m else detail
                raise DataContractError(
                    f"{self.name}.{name}: the mapping {self.source.columns.get(name, name)!r} cannot be read "
                    f"from {self.path}: {what} (source columns: {available})") from exc
        require_columns(self.name, self.contract, self.path, mapping, available)
        return mapping

    def _attributes(self, mapping: dict[str, str], source_types: dict[str, str]) -> dict[str, str]:
        """Attribute columns (customers, attribute_history): the source columns not mapped to the contract
        that the config lists under `attributes`, as 'number' or 'text'."""
        if not self.contract.keep_extra_columns:
            return {}
        used = {m.strip('"') for m in mapping.values()}
        extra = [col for col, typ in source_types.items()
                 if not (col in used and col not in mapping) and self.contract.column(col) is None]
        attrs: dict[str, str] = {}
        for col in chosen_attributes(self.name, self.source, self.path, extra):
            if col not in mapping:
                mapping[col] = _quote(col)
            typ = source_types[col].upper()
            attrs[col] = "number" if typ.startswith(_NUMERIC_TYPES) and not typ.startswith("BOOLEAN") else "text"
        return attrs

    def _build(self, src: str, mapping: dict[str, str], source_types: dict[str, str],
               attrs: dict[str, str]) -> None:
        tz = self.cfg.timezone
        typed_cols, raw_cols, checks, fast_cols, fast_bad = [], [], [], [], []
        for name, sql in mapping.items():
            spec = self.contract.column(name) or ColumnSpec(
                name, "number" if attrs.get(name) == "number" else "text", False, "attribute")
            st = self.con.execute(f"DESCRIBE SELECT {sql} AS x FROM {src}").fetchone()[1]
            fmt = self.source.timestamp_format if spec.kind == "timestamp" else None
            typed, raw = _quote(name), _quote("raw__" + name)
            typed_cols.append(f"{_typed_expr(spec, sql, st, tz, fmt)} AS {typed}")
            raw_cols.append(f"CAST({sql} AS VARCHAR) AS {raw}")
            if spec.required:
                checks.append((name, f"{typed} IS NULL AND {raw} IS NULL", "are missing (null)"))
            if spec.kind in ("number", "timestamp") or spec.required:
                checks.append((name, f"{typed} IS NULL AND {raw} IS NOT NULL", _problem(spec)))
            # the same checks in one pass: a required value that is null after typing (missing or not castable),
            # or an optional number or timestamp that is null after typing although its source value is not
            fast_cols.append(typed_cols[-1])
            if spec.required:
                fast_bad.append(f"{typed} IS NULL")
            elif spec.kind in ("number", "timestamp"):
                fast_cols.append(f"({sql}) IS NOT NULL AS {_quote('given__' + name)}")
                fast_bad.append(f"({typed} IS NULL AND {_quote('given__' + name)})")
        if self._load_if_clean(mapping, fast_cols, fast_bad):
            return
        typed_view = f"typed_{self.name}"
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {typed_view} AS SELECT __row, {', '.join(typed_cols)}, "
                         f"{', '.join(raw_cols)} FROM {src}")
        unions = [
            f"SELECT __row, {_literal(col)} AS _column, {_literal(problem)} AS _reason, "
            f"{_quote('raw__' + col)} AS _value FROM {typed_view} WHERE {cond}"
            for col, cond, problem in checks
        ]
        key = self.contract.unique_key
        if key:
            unions.append(
                f"SELECT __row, {_literal(key)}, 'are duplicate ids', {_quote(key)} FROM "
                f"(SELECT __row, {_quote(key)}, count(*) OVER (PARTITION BY {_quote(key)}) AS n "
                f"FROM {typed_view} WHERE {_quote(key)} IS NOT NULL) WHERE n > 1")
        bad = f"bad_{self.name}"
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {bad} AS " + " UNION ALL ".join(unions))
        canonical = ", ".join(_quote(n) for n in mapping)
        self.con.execute(
            f"CREATE OR REPLACE TABLE {self.name} AS SELECT {canonical} FROM {typed_view} t "
            f"WHERE NOT EXISTS (SELECT 1 FROM {bad} b WHERE b.__row = t.__row)")
        self.report.rows_read = self.con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
        self.report.rows_bad = self.con.execute(f"SELECT count(DISTINCT __row) FROM {bad}").fetchone()[0]
        self._collect_issues(bad)
        self._quarantine(src, bad)

    def _load_if_clean(self, mapping: dict[str, str], typed_cols: list[str], bad_conditions: list[str]) -> bool:
        """Type the source into the canonical table in one pass, with a flag per row for the contract checks and
        no row numbers, then count the flags (and duplicate keys) in that table: True when none is set, and the
        table is final. Otherwise the table is dropped and False returned: the caller finds, numbers and
        quarantines the bad rows (a second read of the source, only for data that has some).

        Why: numbering the rows (a window over the whole source), listing bad rows check by check and filtering
        them out afterwards read the source once per check plus twice; this reads it once, and bad data is the
        exception."""
        canonical = ", ".join(_quote(n) for n in mapping)
        flag = " OR ".join(bad_conditions) or "false"
        self.con.execute(f"CREATE OR REPLACE TABLE {self.name} AS SELECT {canonical}, ({flag}) AS __bad "
                         f"FROM (SELECT {', '.join(typed_cols)} FROM {self.reader})")
        key = self.contract.unique_key
        dupes = f"count({_quote(key)}) - count(DISTINCT {_quote(key)})" if key else "0"
        rows, bad, duplicates = self.con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE __bad), {dupes} FROM {self.name}").fetchone()
        if bad or duplicates:
            self.con.execute(f"DROP TABLE {self.name}")
            return False
        self.con.execute(f"ALTER TABLE {self.name} DROP COLUMN __bad")
        self.report.rows_read = rows
        self._quarantine_path().unlink(missing_ok=True)  # a stale file from an earlier run would contradict this report
        return True

    def _collect_issues(self, bad: str) -> None:
        rows = self.con.execute(
            f"SELECT _column, _reason, count(*) AS n, "
            f"list({{'row': __row, 'value': _value}} ORDER BY __row)[1:3] AS ex "
            f"FROM {bad} GROUP BY 1, 2 ORDER BY n DESC").fetchall()
        for column, reason, n, examples in rows:
            self.report.issues.append(
                Issue(self.name, column, reason, n, [(e["row"], e["value"]) for e in examples]))

    def _quarantine_path(self) -> Path:
        return Path(self.cfg.validation.quarantine_dir) / f"{self.name}.parquet"

    def _quarantine(self, src: str, bad: str) -> None:
        out = self._quarantine_path()
        if self.report.rows_bad == 0:
            out.unlink(missing_ok=True)  # a stale file from an earlier run would contradict this report
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        self.con.execute(
            f"COPY (SELECT b.__row AS _row, b._column, b._reason, b._value, s.* EXCLUDE (__row) "
            f"FROM {bad} b JOIN {src} s USING (__row) ORDER BY _row) TO {_literal(str(out))} (FORMAT parquet)")
        self.report.quarantine_path = out
        log.warning("%s: %d bad rows quarantined to %s", self.name, self.report.rows_bad, out)


CANONICAL_TABLES = ("products", "customers", "attribute_history", "events", "treatments", "transactions")


def load_tables(cfg: ProjectConfig, load: Callable[[TableContract, SourceConfig], tuple[TableReport, dict[str, str]]],
                progress: Callable[[str], None] | None = None, names: tuple[str, ...] = CANONICAL_TABLES,
                engine: str = "") -> tuple[set[str], dict[str, TableReport], dict[str, str], dict[str, str]]:
    """Load every configured canonical table with the engine's table loader `load` (transactions last: it
    joins products), and check what holds across tables: an attribute listed in one place only, and
    transactions that are not empty. Returns the tables, their reports, the static and the history attributes."""
    reports: dict[str, TableReport] = {}
    attributes: dict[str, str] = {}
    history_attributes: dict[str, str] = {}
    tables: set[str] = set()
    for name in names:
        source = getattr(cfg.data, name)
        if source is None:
            continue
        if progress:
            progress(f"loading {name}{engine}")
        report, attrs = load(CONTRACTS[name], source)
        reports[name] = report
        (history_attributes if name == "attribute_history" else attributes).update(attrs)
        tables.add(name)
    both = sorted(set(attributes) & set(history_attributes))
    if both:
        raise ConfigError(f"customers.{both[0]}: listed under both data.customers.attributes and "
                          f"data.attribute_history.attributes; keep it in one (the history, if it changes)")
    if reports["transactions"].rows_read == 0:
        raise DataContractError(f"transactions: {reports['transactions'].source} has no rows; point "
                                f"data.transactions.path at the purchase lines")
    return tables, reports, attributes, history_attributes


def load_customer_data(cfg: ProjectConfig, *, strict: bool = True,
                       progress: Callable[[str], None] | None = None,
                       con: duckdb.DuckDBPyConnection | None = None) -> CustomerData:
    """Load every configured source into canonical tables.

    strict: raise DataContractError when a table's bad-row share exceeds validation.max_bad_share
    (the quarantine files are written first, so nothing is lost either way).
    """
    try:
        zoneinfo.ZoneInfo(cfg.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"timezone {cfg.timezone!r} is not an IANA zone name such as 'UTC' or "
                          f"'America/New_York'") from exc
    if cfg.data.transactions is None:
        raise ConfigError("data.transactions is required for transactional features "
                          "(a config with only data.features is a ready feature table)")
    con = con or duckdb.connect()
    con.execute(f"SET TimeZone = {_literal(cfg.timezone)}")
    if cfg.duckdb.memory_limit:
        try:
            con.execute(f"SET memory_limit = {_literal(cfg.duckdb.memory_limit)}")
        except duckdb.Error as exc:
            raise ConfigError(f"duckdb.memory_limit {cfg.duckdb.memory_limit!r} is not a size DuckDB reads; write "
                              f"it as 1.5GB or 800MB") from exc
    tables, reports, attributes, history_attributes = load_tables(
        cfg, lambda contract, source: _TableLoader(con, cfg, contract, source).load(), progress)
    columns = {t: {r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()} for t in tables}
    data = CustomerData(con, cfg, tables, reports, attributes, columns, history_attributes)
    _enrich_transactions(data)
    if strict and data.bad_tables:
        raise DataContractError(too_many_bad_rows(data))
    return data


def _enrich_transactions(data: CustomerData) -> None:
    """Add `category` (from products when missing) and `order_key` (order_id, else the timestamp)."""
    con, cols = data.con, data.columns["transactions"]
    cat, join = data.line_category("NULL::VARCHAR")
    if join:
        # lines per product first (a few thousand groups), then the products not in the catalogue: half the
        # cost of probing the catalogue with every line
        unmatched = con.execute(
            "SELECT COALESCE(SUM(n), 0) FROM (SELECT product_id, count(*) AS n FROM transactions "
            "WHERE product_id IS NOT NULL GROUP BY product_id) t WHERE NOT EXISTS "
            "(SELECT 1 FROM products p WHERE p.product_id = t.product_id)").fetchone()[0]
        if unmatched:
            data.reports["transactions"].notes.append(
                f"{unmatched:,} lines have a product_id not in products (category unknown)")
    order = "COALESCE(t.order_id, strftime(t.ts, '%Y%m%d%H%M%S'))" if "order_id" in cols else \
        "strftime(t.ts, '%Y%m%d%H%M%S')"
    extra = [c for c in ("channel", "store_id", "quantity", "product_id") if c in cols]
    select_extra = "".join(f", t.{c}" for c in extra)
    con.execute(  # a view: a second 10M-row copy of transactions would cost ~1 GB and ~2 s to build
        f"CREATE OR REPLACE VIEW lines AS SELECT t.customer_id, t.ts, t.amount, {order} AS order_key, "
        f"COALESCE({cat}, 'unknown') AS category{select_extra} FROM transactions t {join}")
    data.tables.add("lines")
    data.columns["lines"] = {r[0] for r in con.execute("DESCRIBE lines").fetchall()}


def too_many_bad_rows(data: CustomerData) -> str:
    """One line for a failed load: the worst table's largest problem, its bad share against the limit, where
    the rows went and what to do (`crmscore data validate` lists every problem)."""
    limit = data.config.validation.max_bad_share
    rep = max(data.bad_tables, key=lambda r: r.bad_share)
    issue = max(rep.issues, key=lambda i: i.rows)
    more = len(rep.issues) - 1
    return (f"{issue.message(rep.rows_read)}{f' (and {more} more problems)' if more else ''}; {rep.rows_bad:,} bad "
            f"rows ({rep.bad_share:.2%}) are over validation.max_bad_share {limit:.2%}, quarantined to "
            f"{rep.quarantine_path}; fix the source or data.{rep.table}.columns (`crmscore data validate` lists "
            f"every problem)")


def validation_summary(data: CustomerData) -> str:
    """Human-readable list of every issue, worst first, with the quarantine location."""
    limit = data.config.validation.max_bad_share
    parts = []
    for rep in data.reports.values():
        for issue in rep.issues:
            parts.append(issue.message(rep.rows_read))
        if rep.rows_bad:
            verdict = "over" if rep.bad_share > limit else "within"
            parts.append(f"{rep.table}: {rep.rows_bad:,} bad rows ({rep.bad_share:.2%}) are {verdict} the "
                         f"allowed share {limit:.2%}; quarantined to {rep.quarantine_path}")
    return "\n".join(parts) if parts else "no contract violations"
