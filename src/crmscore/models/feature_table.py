"""Ready feature tables (subscriptions, banks): one row per customer, an id and a label column.

Columns are typed automatically and every decision is logged: numbers stay numbers; text that is
(almost) all numbers becomes a number, blanks missing (Telco's `TotalCharges`); other text with few
distinct values becomes a category; text with nearly one value per row (free text, ids) is left out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from crmscore.config import FeatureTableConfig, ProjectConfig
from crmscore.errors import DataContractError
from crmscore.features.definitions import Feature, FeatureSet, Vocabulary

log = logging.getLogger(__name__)
NUMERIC_TEXT_SHARE = 0.95
MAX_CATEGORY_SHARE = 0.5  # distinct values / rows above this: an identifier or free text, not a category


@dataclass
class FeatureTable:
    frame: pd.DataFrame  # customer_id, features..., label (when configured)
    feature_set: FeatureSet
    decisions: dict[str, str]


def _read(cfg: ProjectConfig, ft: FeatureTableConfig) -> pd.DataFrame:
    path = cfg.resolve(ft.path)
    fmt = ft.format or ("parquet" if path.lower().endswith((".parquet", ".parq")) else "csv")
    reader = "read_parquet" if fmt == "parquet" else "read_csv_auto"
    try:
        return duckdb.sql(f"SELECT * FROM {reader}('{path.replace(chr(39), chr(39) * 2)}')").df()
    except duckdb.Error as exc:
        raise DataContractError(f"features: cannot read {path}: {str(exc).splitlines()[0]}") from exc


def type_columns(df: pd.DataFrame, exclude: set[str]) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """(typed frame, decision per column, categorical column names)."""
    out, decisions, cats = {}, {}, []
    n = max(len(df), 1)
    for col in df.columns:
        if col in exclude:
            continue
        s = df[col]
        if pd.api.types.is_bool_dtype(s):
            out[col] = s.astype(float)
            decisions[col] = "boolean -> number (0/1)"
        elif pd.api.types.is_numeric_dtype(s):
            out[col] = s.astype(float)
            decisions[col] = "number"
        else:
            text = s.astype("string").str.strip()
            blank = text.isna() | (text == "")
            parsed = pd.to_numeric(text.where(~blank), errors="coerce")
            filled = (~blank).sum()
            share = parsed.notna().sum() / filled if filled else 0.0
            if filled and share >= NUMERIC_TEXT_SHARE:
                out[col] = parsed.astype(float)
                decisions[col] = (f"text holding numbers ({share:.1%} parse) -> number; "
                                  f"{int(blank.sum())} blank and {int(filled - parsed.notna().sum())} other values "
                                  f"-> missing")
            elif text.nunique() / n > MAX_CATEGORY_SHARE:
                decisions[col] = f"text with {text.nunique():,} distinct values in {n:,} rows -> left out (id/free text)"
            else:
                out[col] = text.where(~blank).astype("string")
                cats.append(col)
                decisions[col] = f"text -> category ({text.nunique()} levels)"
    return pd.DataFrame(out, index=df.index), decisions, cats


def load_feature_table(cfg: ProjectConfig, *, require_label: bool = True) -> FeatureTable:
    ft = cfg.data.features
    if ft is None:
        raise DataContractError("data.features is not configured")
    raw = _read(cfg, ft)
    for col, what in ((ft.id, "id"), (ft.label, "label")):
        if col is not None and col not in raw.columns:
            raise DataContractError(f"features: the {what} column '{col}' is not in {ft.path} "
                                    f"(columns: {', '.join(raw.columns)})")
    if require_label and ft.label is None:
        raise DataContractError("features: training needs data.features.label (and positive)")
    ids = raw[ft.id].astype("string").str.strip()
    bad = ids.isna() | (ids == "")
    if bad.any():
        raise DataContractError(f"features.{ft.id}: {int(bad.sum())} rows have no id, e.g. rows "
                                f"{list(np.flatnonzero(bad)[:3] + 1)}")
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].unique()[:3].tolist()
        raise DataContractError(f"features.{ft.id}: {int(ids.duplicated().sum())} duplicate ids, e.g. {dup}")
    exclude = {ft.id, *(ft.exclude or [])} | ({ft.label} if ft.label else set())
    typed, decisions, cats = type_columns(raw, exclude)
    for col, decision in decisions.items():
        log.info("feature table column %s: %s", col, decision)
    frame = pd.concat([ids.rename("customer_id"), typed], axis=1)
    if ft.label is not None:
        lab = raw[ft.label]
        positive = ft.positive
        frame["label"] = (lab.astype(str).str.strip() == str(positive)).astype(np.int64)
        if frame["label"].sum() == 0:
            values = ", ".join(map(repr, lab.dropna().unique()[:5]))
            raise DataContractError(f"features.{ft.label}: no row equals positive={positive!r} (values: {values})")
    feats = tuple(
        Feature(col, "category" if col in cats else "float", "table", col, col, "" if col in cats else "value",
                None, "table")
        for col in typed.columns)
    return FeatureTable(frame, FeatureSet(feats, Vocabulary(), (0,)), decisions)
