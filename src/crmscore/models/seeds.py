"""Seed audiences: who the lookalike model should find more of.

Three kinds, each resolved to a list of customer ids:
- file: one id a line (a first line `customer_id` is a header), or a CSV/Parquet file with a
  `customer_id` column (or the feature table's id column);
- query: a predicate over the feature table at the cutoff, e.g.
  `monetary_365d >= 500 and category_share_baby > 0.2`. It is parsed by DuckDB, checked against an
  allow-list of expression kinds and functions (no subqueries, no table functions, no files), and run on
  a connection with external access disabled. Unknown columns are named, with the closest known ones.
  The features it reads are the seed's *defining features*, left out of the model;
- campaign: the customers with a response to a campaign, from the source configured as
  `tasks.lookalike.campaign_responses` (a file with customer id and campaign columns, optionally a
  timestamp so only responses before the cutoff count, and a filter).
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from crmscore.errors import CrmscoreError
from crmscore.features.definitions import FeatureSet

log = logging.getLogger(__name__)
SeedKind = Literal["file", "query", "campaign"]


class SeedError(CrmscoreError):
    """A seed cannot be read or evaluated; the message says what to fix."""


class CampaignResponses(BaseModel):
    """Where campaign responses are: one row per (customer, campaign) response.

    columns maps `customer_id`, `campaign` and optionally `ts` to source columns or SQL expressions.
    where: an optional SQL filter over source columns (e.g. only redemptions, or `Churn = 'Yes'` with
    `campaign: "'churned'"` to use a label column as a campaign).
    """

    model_config = ConfigDict(extra="forbid")

    path: str
    format: Literal["csv", "parquet"] | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    where: str | None = None


@dataclass
class Seed:
    """A resolved seed.

    kind / definition: how it was given (a path, a query, a campaign id).
    ids: the seed's customer ids (unique, as text).
    defining_features: feature-table columns the seed is defined by (a query's columns).
    """

    kind: SeedKind
    definition: str
    ids: list[str]
    defining_features: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "definition": self.definition, "size": len(self.ids),
                "defining_features": self.defining_features}


# -- files -----------------------------------------------------------------------------------------
def read_seed_file(path: str | Path, id_columns: Iterable[str] = ("customer_id",)) -> Seed:
    """Ids from a file: Parquet or delimited text with an id column, or one id a line."""
    path = Path(path)
    if not path.is_file():
        raise SeedError(f"seed file {path} does not exist")
    id_columns = list(dict.fromkeys(id_columns))
    if path.suffix.lower() in (".parquet", ".parq"):
        frame = pd.read_parquet(path)
        ids = _id_column(frame, id_columns, path)
    else:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8-sig").splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines:
            raise SeedError(f"seed file {path} is empty")
        delimiter = next((d for d in (",", ";", "\t", "|") if d in lines[0]), None)
        if delimiter is not None:
            frame = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False)
            ids = _id_column(frame, id_columns, path)
        else:
            if lines[0].strip("\"'") in id_columns:
                lines = lines[1:]
            ids = pd.Series([ln.strip("\"'") for ln in lines], dtype="string")
    ids = ids.astype("string").str.strip()
    ids = ids[ids.notna() & (ids != "")]
    unique = list(dict.fromkeys(ids.tolist()))
    if len(unique) < len(ids):
        log.info("seed file %s: %d duplicate ids ignored", path, len(ids) - len(unique))
    return Seed("file", str(path), unique)


def _id_column(frame: pd.DataFrame, id_columns: list[str], path: Path) -> pd.Series:
    for col in id_columns:
        if col in frame.columns:
            return frame[col]
    raise SeedError(f"seed file {path} has columns {list(frame.columns)[:10]} but none named "
                    f"{' or '.join(repr(c) for c in id_columns)}: name the id column customer_id, or give one id "
                    f"a line")


# -- queries ---------------------------------------------------------------------------------------
_ALLOWED_CLASSES = {"COLUMN_REF", "CONSTANT", "COMPARISON", "CONJUNCTION", "OPERATOR", "BETWEEN", "FUNCTION",
                    "CASE", "CAST", "TYPE"}
_ALLOWED_FUNCTIONS = {
    "+", "-", "*", "/", "//", "%", "**", "^", "abs", "ln", "log", "log10", "log2", "sqrt", "exp", "round",
    "floor", "ceil", "ceiling", "greatest", "least", "coalesce", "ifnull", "nullif", "lower", "upper", "trim",
    "length", "contains", "starts_with", "ends_with", "prefix", "suffix", "~~", "!~~", "~~*", "!~~*",
    "like_escape", "regexp_matches", "isnan", "isfinite", "sign",
}
_TABLE = "features"


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "class" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def query_columns(query: str) -> list[str]:
    """The columns a seed predicate reads, in order of appearance; raises SeedError when the text is not
    one plain predicate (a second statement, a subquery, a table function, a function not allowed)."""
    if not query or not query.strip():
        raise SeedError("the seed query is empty: give a predicate such as \"monetary_365d >= 500\"")
    sql = f"SELECT * FROM {_TABLE} WHERE ({query})"
    raw = duckdb.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
    tree = json.loads(raw)
    if tree.get("error"):
        msg = str(tree.get("error_message", "syntax error")).splitlines()[0]
        raise SeedError(f"seed query {query!r} is not a valid predicate: {msg}")
    statements = tree.get("statements", [])
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    from_table = node.get("from_table") or {}
    plain = (node.get("type") == "SELECT_NODE" and from_table.get("type") == "BASE_TABLE"
             and from_table.get("table_name") == _TABLE and not node.get("modifiers")
             and not node.get("group_expressions") and node.get("having") is None and node.get("qualify") is None
             and node.get("where_clause") is not None)
    if not plain:
        raise SeedError(f"seed query {query!r} must be a single predicate over the feature table's columns "
                        f"(comparisons joined by and/or), not a statement")
    columns: list[str] = []
    for expr in _walk(node["where_clause"]):
        cls = expr.get("class")
        if cls not in _ALLOWED_CLASSES:
            raise SeedError(f"seed query {query!r}: {str(cls).lower()} expressions are not allowed; use "
                            f"comparisons, arithmetic and and/or/not over the feature table's columns")
        if cls == "FUNCTION" and str(expr.get("function_name", "")).lower() not in _ALLOWED_FUNCTIONS:
            raise SeedError(f"seed query {query!r}: function {expr.get('function_name')!r} is not allowed; allowed: "
                            f"{', '.join(sorted(f for f in _ALLOWED_FUNCTIONS if f[0].isalpha()))}")
        if cls == "COLUMN_REF":
            name = expr["column_names"][-1]
            if name not in columns:
                columns.append(name)
    return columns


def query_seed(frame: pd.DataFrame, query: str) -> Seed:
    """Customers of a feature frame (with `customer_id`) that satisfy the predicate."""
    referenced = query_columns(query)
    by_lower = {c.lower(): c for c in frame.columns}
    unknown = [c for c in referenced if c.lower() not in by_lower]
    if unknown:
        hints = []
        for c in unknown:
            close = difflib.get_close_matches(c.lower(), list(by_lower), n=3, cutoff=0.6)
            alternatives = ", ".join(repr(by_lower[x]) for x in close)
            hints.append(f"'{c}'" + (f" (did you mean {alternatives}?)" if close else ""))
        raise SeedError(f"seed query {query!r}: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                        f"the feature table's columns are listed by `crmscore features list` (or: "
                        f"{', '.join(list(frame.columns)[:12])}, ...)")
    con = duckdb.connect(config={"enable_external_access": False, "lock_configuration": True})
    try:
        con.register(_TABLE, frame)
        ids = con.execute(f"SELECT CAST(customer_id AS VARCHAR) FROM {_TABLE} WHERE ({query})").fetchall()
    except duckdb.Error as exc:
        raise SeedError(f"seed query {query!r} failed: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
    return Seed("query", query, [r[0] for r in ids], [by_lower[c.lower()] for c in referenced])


# -- campaigns -------------------------------------------------------------------------------------
def campaign_seed(source: CampaignResponses | None, campaign: str, base_dir: Path, as_of: pd.Timestamp | None) -> Seed:
    """Customers with a response to `campaign` (before as_of when the source maps `ts`)."""
    if source is None:
        raise SeedError("--seed-campaign needs campaign responses in the config: add "
                        "tasks.lookalike.campaign_responses with path and columns {customer_id: ..., campaign: ..., "
                        "ts: ...} (see the README's 'Lookalike audiences' section)")
    path = Path(source.path).expanduser()
    if not path.is_absolute() and not path.exists():
        path = base_dir / path
    fmt = source.format or ("parquet" if str(path).lower().endswith((".parquet", ".parq")) else "csv")
    reader = "read_parquet" if fmt == "parquet" else "read_csv_auto"
    cols = {"customer_id": "customer_id", "campaign": "campaign", **source.columns}
    where = [f"CAST({cols['campaign']} AS VARCHAR) = ?"]
    params: list[Any] = [str(campaign)]
    if source.where:
        where.append(f"({source.where})")
    if "ts" in source.columns and as_of is not None:
        where.append(f"CAST({cols['ts']} AS TIMESTAMP) < ?")
        params.append(as_of.to_pydatetime())
    sql = (f"SELECT DISTINCT CAST({cols['customer_id']} AS VARCHAR) FROM {reader}('{_sql_text(str(path))}') "
           f"WHERE {' AND '.join(where)}")
    try:
        rows = duckdb.execute(sql, params).fetchall()
        if not rows:
            known = duckdb.execute(f"SELECT DISTINCT CAST({cols['campaign']} AS VARCHAR) AS c FROM "
                                   f"{reader}('{_sql_text(str(path))}') ORDER BY c LIMIT 30").fetchall()
            before = f" before {as_of.date()}" if as_of is not None and "ts" in source.columns else ""
            raise SeedError(f"campaign {campaign!r} has no responses in {path}{before}; "
                            f"campaigns there: {', '.join(r[0] for r in known if r[0] is not None)}")
    except duckdb.Error as exc:
        raise SeedError(f"campaign responses {path}: {str(exc).splitlines()[0]}") from exc
    return Seed("campaign", str(campaign), sorted(r[0] for r in rows if r[0] is not None))


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


# -- excluded features -----------------------------------------------------------------------------
def segment_sources(rfm_window_days: int) -> dict[str, list[str]]:
    """The features each segment column is computed from (crmscore.features.segments)."""
    r, f, m = "recency_days", f"frequency_{rfm_window_days}d", f"monetary_{rfm_window_days}d"
    life = ["recency_days", "first_purchase_days", "recency_gap_ratio"]
    return {"rfm_r": [r], "rfm_f": [f], "rfm_m": [m], "rfm_score": [r, f, m], "rfm_segment": [r, f, m],
            "lifecycle_stage": life}


def excluded_features(fs: FeatureSet, defining: Iterable[str], patterns: Iterable[str] = (),
                      rfm_window_days: int = 365) -> dict[str, str]:
    """Features to leave out of a lookalike model, each with why.

    - the seed's defining features (a query's columns), through segment columns to their sources;
    - for a category feature (`category_share_<c>`), every feature of that category;
    - derived features computed from an excluded one (e.g. avg_order_value_365d from monetary_365d);
    - configured names or glob patterns (`category_share_*`).
    """
    names = fs.names
    out: dict[str, str] = {}
    sources = segment_sources(rfm_window_days)
    for col in defining:
        for name in sources.get(col, [col]):
            if name in names:
                out.setdefault(name, "defines the seed" if name == col else f"defines the seed (through {col})")
    for name in list(out):
        feature = fs.get(name)
        if feature is not None and feature.group == "categories":
            m = re.fullmatch(r"category_share_(.+)", name)
            if m:  # today one feature per category; any later `category_<stat>_<c>` goes with it
                for other in fs.features:
                    if other.group == "categories" and other.name != name and other.name.endswith("_" + m.group(1)):
                        out.setdefault(other.name, f"same category as {name}")
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            log.warning("exclude %r matches no feature", pattern)
        for n in hits:
            out.setdefault(n, "excluded by configuration")
    changed = True
    while changed:  # derived features read other features by name in their SQL
        changed = False
        for feature in fs.features:
            if feature.stage == "derived" and feature.name not in out:
                used = [n for n in out if re.search(rf"\b{re.escape(n)}\b", feature.sql)]
                if used:
                    out[feature.name] = f"computed from {used[0]}"
                    changed = True
    return out
