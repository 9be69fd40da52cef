"""Ready feature tables (subscriptions, banks): one row per customer, an id and a label column.

At training each column is typed once and every decision is logged: numbers stay numbers; text that is
(almost) all numbers becomes a number, blanks missing (Telco's `TotalCharges`); other text becomes a
category with the levels it has; identifier-like columns (a row number, a whole number different on
every row) and free text (names, comments: on average fewer than MIN_ROWS_PER_LEVEL rows per distinct
value) are left out with the reason, unless the config lists them under `keep`.

That typing is the model's: a `TableSchema` saved with it and applied unchanged at scoring. A scoring
file is never re-typed by its own contents (a smaller file has more distinct values per row, so the
same surname column would otherwise be judged free text and dropped); a level unseen in training
becomes missing and is counted in the log.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from crmscore.config import FeatureTableConfig, ProjectConfig
from crmscore.errors import DataContractError
from crmscore.features.definitions import Feature, FeatureSet, Vocabulary

log = logging.getLogger(__name__)
NUMERIC_TEXT_SHARE = 0.95
MIN_ROWS_PER_LEVEL = 5  # text with fewer rows per distinct value on average: names or free text, not a category
MIN_EXPECTED_COLLISIONS = 10.0  # whole numbers unique per row although ~10 repeats were due by chance: an id
MIN_ROWS_FOR_ROW_NUMBER = 20
ColumnKind = Literal["number", "boolean", "number_text", "category"]
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


@dataclass(frozen=True)
class ColumnType:
    """How one feature column is read: as a number, a 0/1 boolean, numbers stored as text, or a category
    with the levels seen in training (`levels`, sorted)."""

    name: str
    kind: ColumnKind
    levels: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSchema:
    """The typing decided at training: feature columns in order, and columns left out with the reason."""

    columns: tuple[ColumnType, ...]
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict:
        return {"columns": [{**asdict(c), "levels": list(c.levels)} for c in self.columns],
                "left_out": dict(self.left_out)}

    @classmethod
    def from_dict(cls, d: dict) -> TableSchema:
        return cls(tuple(ColumnType(c["name"], c["kind"], tuple(c.get("levels") or ())) for c in d["columns"]),
                   dict(d.get("left_out", {})))

    def apply(self, raw: pd.DataFrame, source: str = "features") -> pd.DataFrame:
        """The feature columns of raw, typed as in training. A missing column is a DataContractError; a value
        that does not fit (an unseen level, text in a number column) becomes missing and is counted in the log."""
        missing = [c.name for c in self.columns if c.name not in raw.columns]
        if missing:
            raise DataContractError(
                f"features.{missing[0]}: the model was trained with column '{missing[0]}' but {source} has no such "
                f"column{f' (also missing: {missing[1:]})' if len(missing) > 1 else ''}; score a file with the "
                f"training file's columns")
        out = {}
        for col in self.columns:
            values, unfit = _typed(raw[col.name], col)
            if unfit.any():
                examples = list(dict.fromkeys(raw[col.name][unfit].astype(str).tolist()))[:3]
                what = "levels not seen in training" if col.kind == "category" else f"values that are not {col.kind}s"
                log.warning("features.%s: %s of %s rows have %s (e.g. %s): scored as missing", col.name,
                            f"{int(unfit.sum()):,}", f"{len(raw):,}", what, examples)
            out[col.name] = values
        return pd.DataFrame(out, index=raw.index)


def _text(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(stripped text with blanks as NA, blank mask)."""
    if pd.api.types.is_float_dtype(s):  # 2261.0 read back as text keeps its integer form
        s = s.map(lambda v: v if pd.isna(v) else (str(int(v)) if float(v).is_integer() else str(v)))
    text = s.astype("string").str.strip()
    blank = text.isna() | (text == "")
    return text.where(~blank), blank


def _typed(s: pd.Series, col: ColumnType) -> tuple[pd.Series, pd.Series]:
    """(values typed as `col`, mask of filled values that do not fit and became missing)."""
    if col.kind == "category":
        text, _ = _text(s)
        known = text.isin(col.levels)
        return text.where(known).astype("string"), text.notna() & ~known
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.astype(float), pd.Series(False, index=s.index)
    text, blank = _text(s)
    if col.kind == "boolean":
        low = text.str.lower()
        values = pd.Series(np.where(low.isin(_TRUE), 1.0, np.where(low.isin(_FALSE), 0.0, np.nan)), index=s.index)
    else:
        values = pd.to_numeric(text, errors="coerce").astype(float)
    return values, ~blank & values.isna()


def _read(cfg: ProjectConfig, ft: FeatureTableConfig) -> pd.DataFrame:
    path = cfg.resolve(ft.path)
    fmt = ft.format or ("parquet" if path.lower().endswith((".parquet", ".parq")) else "csv")
    reader = "read_parquet" if fmt == "parquet" else "read_csv_auto"
    try:
        df = duckdb.sql(f"SELECT * FROM {reader}('{path.replace(chr(39), chr(39) * 2)}')").df()
    except duckdb.Error as exc:
        raise DataContractError(f"features: cannot read {path}: {str(exc).splitlines()[0]}; check "
                                f"data.features.path") from exc
    if df.empty:
        raise DataContractError(f"features: {path} has no rows; point data.features.path at the customer table")
    return df


def _identifier_like(s: pd.Series) -> str | None:
    """Why a numeric column looks like an identifier rather than a measurement, or None."""
    n = len(s)
    if n < MIN_ROWS_FOR_ROW_NUMBER or s.isna().any() or pd.api.types.is_bool_dtype(s):
        return None
    v = s.astype(float).to_numpy()
    if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)) or len(np.unique(v)) < n:
        return None
    span = float(v.max() - v.min() + 1)
    if span == n:
        return f"consecutive whole numbers {int(v.min())}..{int(v.max())}, one per row: a row number"
    if n * n / (2 * span) >= MIN_EXPECTED_COLLISIONS:  # random values over that span would repeat many times
        return f"a different whole number on every one of {n:,} rows: an identifier"
    return None


def infer_schema(df: pd.DataFrame, exclude: set[str],
                 keep: set[str] = frozenset()) -> tuple[TableSchema, dict[str, str]]:
    """The typing of a training table and the decision per column (for the log). Columns in `keep` are never
    left out as identifiers or free text."""
    cols: list[ColumnType] = []
    decisions: dict[str, str] = {}
    left_out: dict[str, str] = {}
    n = max(len(df), 1)
    for name in df.columns:
        if name in exclude:
            continue
        s = df[name]
        if pd.api.types.is_bool_dtype(s):
            cols.append(ColumnType(name, "boolean"))
            decisions[name] = "boolean -> number (0/1)"
            continue
        if pd.api.types.is_numeric_dtype(s):
            why = None if name in keep else _identifier_like(s)
            if why:
                left_out[name] = why
                decisions[name] = f"left out: {why} (list it under data.features.keep to use it)"
            else:
                cols.append(ColumnType(name, "number"))
                decisions[name] = "number"
            continue
        text, blank = _text(s)
        parsed = pd.to_numeric(text, errors="coerce")
        filled = int((~blank).sum())
        share = parsed.notna().sum() / filled if filled else 0.0
        if filled and share >= NUMERIC_TEXT_SHARE:
            why = None if name in keep else _identifier_like(parsed)
            if why:
                left_out[name] = why
                decisions[name] = f"left out: {why} (list it under data.features.keep to use it)"
                continue
            cols.append(ColumnType(name, "number_text"))
            decisions[name] = (f"text holding numbers ({share:.1%} parse) -> number; {int(blank.sum())} blank and "
                               f"{int(filled - parsed.notna().sum())} other values -> missing")
            continue
        levels = sorted(text.dropna().unique().tolist())
        if name not in keep and len(levels) * MIN_ROWS_PER_LEVEL > n:
            why = (f"text with {len(levels):,} distinct values in {n:,} rows (fewer than {MIN_ROWS_PER_LEVEL} rows "
                   f"a value): an identifier, a name or free text")
            left_out[name] = why
            decisions[name] = f"left out: {why} (list it under data.features.keep to use it as a category)"
            continue
        cols.append(ColumnType(name, "category", tuple(levels)))
        decisions[name] = f"text -> category ({len(levels)} levels)"
    return TableSchema(tuple(cols), left_out), decisions


@dataclass
class FeatureTable:
    frame: pd.DataFrame  # customer_id, features..., label (when configured)
    feature_set: FeatureSet
    decisions: dict[str, str]
    schema: TableSchema


def load_feature_table(cfg: ProjectConfig, *, require_label: bool = True,
                       schema: TableSchema | None = None) -> FeatureTable:
    """The configured feature table, typed by `schema` (a trained model's: scoring) or by a new inference
    (training; every decision logged)."""
    ft = cfg.data.features
    if ft is None:
        raise DataContractError("data.features is not configured")
    raw = _read(cfg, ft)
    label = ft.label if require_label or schema is None else None  # scoring files need no label
    for col, what in ((ft.id, "id"), (label, "label")):
        if col is not None and col not in raw.columns:
            raise DataContractError(f"features.{col}: the {what} column '{col}' is not in {ft.path} "
                                    f"(columns: {', '.join(raw.columns)}); set data.features.{what}")
    if require_label and ft.label is None:
        raise DataContractError("features: training needs data.features.label (and positive)")
    unknown = [c for c in ft.keep if c not in raw.columns]
    if unknown and schema is None:
        raise DataContractError(f"features.{unknown[0]}: listed under data.features.keep but not in {ft.path} "
                                f"(columns: {', '.join(raw.columns)})")
    ids = _text(raw[ft.id])[0]
    bad = ids.isna()
    if bad.all():
        raise DataContractError(f"features.{ft.id}: every row has an empty id; check data.features.id")
    if bad.any():
        raise DataContractError(f"features.{ft.id}: {int(bad.sum())} rows have no id, e.g. rows "
                                f"{list(np.flatnonzero(bad)[:3] + 1)}; fill or remove them")
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].unique()[:3].tolist()
        raise DataContractError(f"features.{ft.id}: {int(ids.duplicated().sum())} duplicate ids, e.g. {dup}; keep "
                                f"one row per customer")
    if schema is None:
        exclude = {ft.id, *(ft.exclude or [])} | ({ft.label} if ft.label else set()) | \
            ({ft.treatment} if ft.treatment else set())
        schema, decisions = infer_schema(raw, exclude, set(ft.keep))
        for col, decision in decisions.items():
            log.info("feature table column %s: %s", col, decision)
        if not schema.columns:
            raise DataContractError(f"features: no column of {ft.path} is usable as a feature "
                                    f"({'; '.join(f'{k}: {v}' for k, v in schema.left_out.items())})")
    else:
        decisions = {c.name: f"{c.kind} (the model's typing)" for c in schema.columns}
    typed = schema.apply(raw, ft.path)
    frame = pd.concat([ids.rename("customer_id"), typed], axis=1)
    if label is not None:
        lab = raw[label]
        positive = ft.positive
        frame["label"] = (lab.astype(str).str.strip() == str(positive)).astype(np.int64)
        if frame["label"].sum() == 0:
            values = ", ".join(repr(str(v)) for v in lab.dropna().unique()[:5])
            raise DataContractError(f"features.{label}: no row equals positive={positive!r} (values: {values}); "
                                    f"set data.features.positive")
    if ft.treatment is not None and ft.treatment in raw.columns:  # an experiment table (uplift): never a feature
        frame["treated"] = (raw[ft.treatment].astype(str).str.strip() == str(ft.treated_value)).astype(np.int64)
        if frame["treated"].nunique() < 2:
            raise DataContractError(f"features.{ft.treatment}: every row is {'treated' if frame['treated'].all() else 'control'}"
                                    f" with treated_value={ft.treated_value!r}; set data.features.treated_value")
    feats = tuple(
        Feature(c.name, "category" if c.kind == "category" else "float", "table", c.name, c.name,
                "" if c.kind == "category" else "value", None, "table")
        for c in schema.columns)
    return FeatureTable(frame, FeatureSet(feats, Vocabulary(), (0,)), decisions, schema)

