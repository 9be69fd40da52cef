"""Point-in-time feature tables: one row per customer known before `as_of`, computed only from data
strictly before `as_of` (midnight at the start of that day, in the config's timezone).

A customer is known before `as_of` when they have an order line before it (a purchase, or a refund), or a
`signup_ts` before it (when the customers table has one). A purchase is an order with a positive net amount:
recency, frequency, gaps and order values count purchases only; refund-only orders feed the refund features.
The SQL is assembled from the declarations in crmscore.features.definitions; DuckDB runs it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence

import pandas as pd
import pyarrow as pa

from crmscore.data.loader import CustomerData
from crmscore.features.definitions import Feature, FeatureSet, Vocabulary, declare
from crmscore.features.dialect import DIALECTS, DUCKDB, Dialect

log = logging.getLogger(__name__)

AsOf = str | dt.date | dt.datetime | pd.Timestamp
_ZERO_UNITS = ("orders", "count", "currency")


def as_of_timestamp(as_of: AsOf) -> pd.Timestamp:
    """A cutoff as a naive local timestamp at midnight (dates) or as given (timestamps)."""
    ts = pd.Timestamp(as_of)
    if ts.tzinfo is not None:
        raise ValueError(f"as_of {as_of!r} must be a local date such as 2017-10-01, without a timezone")
    return ts


# engine name -> (data, as_of, fs, segments) -> the feature table, for data another engine holds; registered by
# that engine's module (crmscore.features.spark), so this module never imports it
ENGINE_BUILDERS: dict[str, Callable[[object, AsOf, FeatureSet, bool], pd.DataFrame]] = {}


def dialect_of(data: CustomerData) -> Dialect:
    """The SQL dialect of the engine holding data's canonical tables (DuckDB unless it says otherwise)."""
    return DIALECTS[getattr(data, "engine", "duckdb")]


def discover_vocabulary(data: CustomerData, as_of: AsOf) -> Vocabulary:
    """Categories, channels and event types to give their own features, chosen from data before as_of."""
    cfg = data.config.features
    cut = dialect_of(data).timestamp(as_of_timestamp(as_of))

    def top(table: str, col: str, n: int, weight: str) -> tuple[str, ...]:
        if n == 0 or not data.has(table, col):
            return ()
        rows = data.rows(
            f"SELECT {col} FROM {table} WHERE ts < {cut} AND {col} IS NOT NULL AND {col} <> 'unknown' "
            f"GROUP BY 1 ORDER BY {weight} DESC, 1 LIMIT {n}")
        return tuple(r[0] for r in rows)

    spend = "SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END)"
    if cfg.categories is None and cfg.top_categories and cfg.top_channels and data.has("lines", "category") \
            and data.has("lines", "channel"):
        categories, channels = _top_categories_and_channels(data, cut, spend, cfg.top_categories, cfg.top_channels)
    else:
        categories = tuple(cfg.categories) if cfg.categories is not None else top(
            "lines", "category", cfg.top_categories, spend)
        channels = top("lines", "channel", cfg.top_channels, "COUNT(*)")
    event_types = top("events", "event_type", cfg.top_event_types, "COUNT(*)")
    attributes = tuple(sorted(data.attributes.items()))
    return Vocabulary(categories, channels, event_types, attributes, tuple(sorted(data.history_attributes.items())))


def _top_categories_and_channels(data: CustomerData, cut: str, spend: str, n_categories: int,
                                 n_channels: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The top categories by purchase spend and the top channels by lines, in one pass over the lines (two
    grouping sets) instead of one scan each; the same order as discover_vocabulary's queries (weight, then
    name), with the same exclusions (null, 'unknown').

    The lines are first summed by what decides their category (their product and own category) and channel, a
    few thousand groups, and the category is resolved on those sums: resolving it on every line (the `lines`
    view joins products per line) was half the cost at 10M lines."""
    category, join = data.line_category("NULL")
    keys = [c for c in ("product_id", "category", "channel") if c in data.columns["transactions"]]
    totals = (f"SELECT {', '.join(keys)}, {spend} AS spend, COUNT(*) AS n FROM transactions WHERE ts < {cut} "
              f"GROUP BY {', '.join(keys)}")
    rows = data.rows(f"SELECT GROUPING(category) AS by_channel, category, channel, SUM(spend) AS spend, SUM(n) AS n "
                     f"FROM (SELECT COALESCE({category}, 'unknown') AS category, t.channel, t.spend, t.n "
                     f"FROM ({totals}) t {join}) GROUP BY GROUPING SETS ((category), (channel))")
    cats = sorted(((-r[3], r[1]) for r in rows if r[0] == 0 and r[1] is not None and r[1] != "unknown"))
    chans = sorted(((-r[4], r[2]) for r in rows if r[0] == 1 and r[2] is not None and r[2] != "unknown"))
    return tuple(c for _, c in cats[:n_categories]), tuple(c for _, c in chans[:n_channels])


def feature_set_for(data: CustomerData, as_of: AsOf) -> FeatureSet:
    """The feature set this data supports, with vocabularies fixed from data before as_of."""
    cfg = data.config.features
    vocab = discover_vocabulary(data, as_of)
    feats = [f for f in declare(cfg.windows, vocab, cfg.evening_hour, cfg.btyd_horizons) if _available(data, f)]
    return FeatureSet(tuple(feats), vocab, tuple(cfg.windows), cfg.evening_hour)


def _available(data: CustomerData, f: Feature) -> bool:
    for req in f.requires:
        table, col = req.split(".")
        if not data.has(table, col):
            return False
    return True


def feature_sql(data: CustomerData, as_of: AsOf, fs: FeatureSet, dialect: Dialect | None = None) -> str:
    """The one SQL statement that computes the feature table at as_of, in the dialect of data's engine
    (or the one given)."""
    dialect = dialect or dialect_of(data)
    cut = dialect.timestamp(as_of_timestamp(as_of))
    by_stage: dict[str, list[Feature]] = {}
    for f in fs.features:
        by_stage.setdefault(f.stage, []).append(f)
    sql_features = [f for f in fs.features if f.stage != "btyd"]  # btyd: fitted in Python afterwards
    w_share = max(fs.windows)
    has = data.columns["lines"]
    extra = "".join(f", MIN({c}) AS {c}" for c in ("channel", "store_id") if c in has)
    ctes = [
        f"l AS (SELECT customer_id, order_key, ts, amount, category{''.join(', ' + c for c in ('channel', 'store_id') if c in has)}, "
        f"{dialect.age_days('ts', cut)} AS age_days FROM lines WHERE ts < {cut})",
        # every order (a customer with any line is known), then the purchases: orders with a positive net amount.
        # Recency, frequency, gaps, order values, habits, channels and stores read purchases only (a refund is
        # not a purchase); the refund features read the refund lines (stage categories, from l)
        # an order's age is its first line's: age_days falls as ts rises, so the age of MIN(ts) is the lines'
        # MAX(age_days), computed once per order instead of aggregated over every line
        f"oa AS (SELECT customer_id, order_key, MIN(ts) AS ts, SUM(amount) AS amount{extra} "
        f"FROM l GROUP BY customer_id, order_key)",
        f"o1 AS (SELECT *, {dialect.age_days('ts', cut)} AS age_days FROM oa WHERE amount > 0)",
        # the gap to the previous purchase: ordering by ts gives the same sorted ages as ordering by age_days
        # descending, and ties (equal ages) give equal gaps whatever their order, so no tie-breaking key is
        # needed; one 8-byte key sorts cheaper than a double and a text. (A window over the purchases' customer,
        # ts and age alone, its gaps grouped and joined apart, spares the sort the orders' channel and store text
        # but holds more at once: the same CPU without a memory limit, 20% slower under the batch's 1.5GB.)
        f"o AS (SELECT *, LAG(age_days) OVER (PARTITION BY customer_id ORDER BY ts) - age_days "
        f"AS gap_days, {dialect.is_weekend('ts')} AS is_weekend, {dialect.hour('ts')} AS hour FROM o1)",
    ]
    parts = ["SELECT customer_id, " + _aggs(by_stage["orders"]) + " FROM o GROUP BY customer_id"]
    stage_ctes = {"orders": "s_orders"}
    ctes.append(f"s_orders AS ({parts[0]})")
    if by_stage.get("categories"):
        ctes.append(
            f"c AS (SELECT customer_id, category, SUM(CASE WHEN amount > 0 THEN amount ELSE 0 END) AS spend, "
            f"SUM(CASE WHEN amount < 0 THEN -amount ELSE 0 END) AS refund FROM l WHERE age_days < {w_share} "
            f"GROUP BY customer_id, category)")
        ctes.append(f"s_categories AS (SELECT customer_id, {_aggs(by_stage['categories'])} FROM c GROUP BY customer_id)")
        stage_ctes["categories"] = "s_categories"
    if by_stage.get("category_orders"):
        # one row per customer, category and purchase order with a positive line of it, at the order's age
        ctes.append("oc AS (SELECT DISTINCT l.customer_id, l.category, l.order_key, o1.age_days FROM l "
                    "JOIN o1 ON l.customer_id = o1.customer_id AND l.order_key = o1.order_key WHERE l.amount > 0)")
        ctes.append(f"s_category_orders AS (SELECT customer_id, {_aggs(by_stage['category_orders'])} FROM oc "
                    f"GROUP BY customer_id)")
        stage_ctes["category_orders"] = "s_category_orders"
    if by_stage.get("stores"):
        ctes.append(f"st AS (SELECT customer_id, store_id, COUNT(*) AS n FROM o WHERE age_days < {w_share} "
                    f"AND store_id IS NOT NULL GROUP BY customer_id, store_id)")
        ctes.append(f"s_stores AS (SELECT customer_id, {_aggs(by_stage['stores'])} FROM st GROUP BY customer_id)")
        stage_ctes["stores"] = "s_stores"
    if by_stage.get("events"):
        ctes.append(f"e AS (SELECT customer_id, event_type, {dialect.age_days('ts', cut)} AS age_days FROM events "
                    f"WHERE ts < {cut})")
        ctes.append(f"s_events AS (SELECT customer_id, {_aggs(by_stage['events'])} FROM e GROUP BY customer_id)")
        stage_ctes["events"] = "s_events"
    has_signup = data.has("customers", "signup_ts")
    if data.has("customers"):
        signup = (f"CASE WHEN signup_ts < {cut} THEN {dialect.age_days('signup_ts', cut)} END" if has_signup
                  else "CAST(NULL AS DOUBLE)")
        cust_cols = "".join(f", {dialect.quote(attribute_column(f))} AS {f.name}"
                            for f in by_stage.get("customers", []))
        ctes.append(f"s_customers AS (SELECT customer_id, {signup} AS signup_days{cust_cols} FROM customers)")
    if by_stage.get("attribute_history"):
        ctes.append(_attribute_history_cte(by_stage["attribute_history"], cut, dialect))
        stage_ctes["attribute_history"] = "s_attribute_history"
    # every customer with an order: the purchasers s_orders already grouped, and those with a refund-only order
    # (a few), instead of a second grouping of every order
    population = "SELECT customer_id FROM s_orders UNION SELECT customer_id FROM oa WHERE amount <= 0"
    if has_signup:
        population += f" UNION SELECT customer_id FROM customers WHERE signup_ts < {cut}"
    ctes.append(f"pop AS ({population})")
    joins = "".join(f" LEFT JOIN {cte} USING (customer_id)" for cte in stage_ctes.values())
    if data.has("customers"):
        joins += " LEFT JOIN s_customers USING (customer_id)"
    base_cols = []
    for f in sql_features:
        if f.stage == "derived":
            continue
        if f.unit in _ZERO_UNITS:
            zero = f"COALESCE({f.name}, 0)"
            # SUM over integers is HUGEINT in DuckDB: slow to fetch; counts fit BIGINT
            base_cols.append(f"CAST({zero} AS BIGINT) AS {f.name}" if f.dtype == "int" else f"{zero} AS {f.name}")
        else:
            base_cols.append(f.name)
    signup_col = "signup_days" if data.has("customers") else "CAST(NULL AS DOUBLE) AS signup_days"
    ctes.append(f"base AS (SELECT customer_id, {', '.join(base_cols)}, {signup_col} FROM pop{joins})")
    final = ", ".join(f"{f.sql} AS {f.name}" if f.stage == "derived" else f.name for f in sql_features)
    return "WITH " + ",\n".join(ctes) + f"\nSELECT customer_id, {final} FROM base{dialect.order_by('customer_id')}"


def attribute_column(f: Feature) -> str:
    """The source column of an attribute feature: its bare name (feature sets saved before the dialect held
    it double-quoted, `"tier"` or `h."tier"`)."""
    sql = f.sql.removeprefix("h.")
    if len(sql) >= 2 and sql[0] == sql[-1] == '"':
        sql = sql[1:-1].replace('""', '"')
    return sql


def _attribute_history_cte(feats: list[Feature], cut: str, dialect: Dialect) -> str:
    """Each customer's attributes as they were at the cutoff: the row with the latest valid_from strictly
    before it (ties broken by the values, so the choice is repeatable); none when every row is later."""
    cols = ", ".join(f"h.{dialect.quote(attribute_column(f))} AS {f.name}" for f in feats)
    ties = "".join(f", {dialect.quote(attribute_column(f))}" for f in feats)
    return (f"s_attribute_history AS (SELECT customer_id, {cols} FROM (SELECT *, row_number() OVER "
            f"(PARTITION BY customer_id ORDER BY valid_from DESC{ties}) AS _rank FROM attribute_history "
            f"WHERE valid_from < {cut}) h WHERE _rank = 1)")


def _aggs(feats: Iterable[Feature]) -> str:
    return ", ".join(f"{f.sql} AS {f.name}" for f in feats)


def build_features(data: CustomerData, as_of: AsOf, fs: FeatureSet | None = None,
                   *, segments: bool = True) -> pd.DataFrame:
    """The feature table at as_of: `customer_id`, every feature of fs (columns in declaration order),
    and, with segments=True, the RFM and lifecycle columns of crmscore.features.segments.

    fs: the feature set to build (a trained model's); default: discovered from data before as_of.
    """
    from crmscore.features.segments import add_segments

    fs = fs or feature_set_for(data, as_of)
    engine = getattr(data, "engine", "duckdb")
    if engine != "duckdb":  # computed on that engine, collected (crmscore.features.spark registers 'spark')
        return ENGINE_BUILDERS[engine](data, as_of, fs, segments)
    df = _fetch(data, feature_sql(data, as_of, fs))
    df = _with_btyd(df, fs)
    df = _cast(df, fs)
    if segments:
        df = add_segments(df, data.config.segments)
    return df


def _fetch(data: CustomerData, sql: str) -> pd.DataFrame:
    """A query's result as pandas through Arrow: the customer ids stay Arrow strings (DuckDB's `df()` builds a
    Python string per id, two thirds of its fetch time), and each Arrow column is freed once converted
    (self_destruct), so the table and the frame are not both held whole. The same dtypes as `df()` after _cast."""
    return data.con.sql(sql).to_arrow_table().to_pandas(split_blocks=True, self_destruct=True,
                                                        memory_pool=pa.system_memory_pool())


def _with_btyd(df: pd.DataFrame, fs: FeatureSet) -> pd.DataFrame:
    """The btyd-stage features, fitted on this table's customers (their history before as_of), in declaration
    order. They need the all-history order features (recency, first purchase, orders, spend)."""
    from crmscore.features.btyd import INPUT_COLUMNS, btyd_frame

    wanted = [f.name for f in fs.features if f.stage == "btyd"]
    if not wanted:
        return df
    missing = [c for c in INPUT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"feature set {fs.version}: the btyd features need {missing}, which it lacks")
    horizons = tuple(int(f.sql.split("(")[1].rstrip(")")) for f in fs.features
                     if f.sql.startswith("BGNBD_EXPECTED_ORDERS("))
    fitted = btyd_frame(df, horizons)
    columns = {c: fitted[c] for c in wanted if c in fitted.columns}
    order = ["customer_id", *fs.names, *[c for c in df.columns if c != "customer_id" and c not in fs.names]]
    # the same columns without copying them (a concat and a reordering each copied the whole table; _cast makes
    # the one consolidated copy)
    return pd.DataFrame({c: columns[c] if c in columns else df[c] for c in order}, index=df.index, copy=False)


def _cast(df: pd.DataFrame, fs: FeatureSet) -> pd.DataFrame:
    """The declared dtypes, in one new frame (column by column would fragment a frame of hundreds of columns),
    built from the columns without copying them: a column already of its dtype is shared, not copied (a
    consolidating copy of a 1M-customer table cost 0.45 GB of peak memory)."""
    cols = {"customer_id": df["customer_id"].astype("string")}
    for f in fs.features:
        s = df[f.name]
        cols[f.name] = (s.astype("string") if f.dtype == "category" else
                        s.fillna(0).astype("int64") if f.dtype == "int" else s.astype("float64"))
    rest = [c for c in df.columns if c not in cols]
    cols.update({c: df[c] for c in rest})
    return pd.DataFrame({c: cols[c] for c in df.columns}, index=df.index, copy=False)


LabelFn = Callable[[CustomerData, pd.Timestamp], pd.DataFrame]


def build_training_set(data: CustomerData, as_of_dates: Sequence[AsOf], label_fn: LabelFn,
                       fs: FeatureSet | None = None, *, progress: bool = False) -> pd.DataFrame:
    """Stack feature snapshots with labels from the window after each as_of.

    label_fn(data, as_of) returns a frame with `customer_id` and label column(s) for the customers in
    the task's population at that cutoff; only those rows are kept (inner join). The result has an
    `as_of` column. The feature set is fixed from data before the earliest cutoff unless given, so
    every snapshot has the same columns.
    """
    from crmscore.progress import track

    cutoffs = sorted(as_of_timestamp(a) for a in as_of_dates)
    if not cutoffs:
        raise ValueError("build_training_set needs at least one as_of date")
    fs = fs or feature_set_for(data, cutoffs[0])
    frames = []
    for cut in track(cutoffs, "snapshots", enabled=progress):
        feats = build_features(data, cut, fs)
        labels = label_fn(data, cut)
        # one copy consolidates the merged columns (build_features shares them, one block each), so the
        # insert does not work on, and warn about, a frame of a hundred blocks
        snap = feats.merge(labels, on="customer_id", how="inner").copy()
        snap.insert(1, "as_of", cut)
        frames.append(snap)
        log.info("snapshot %s: %d customers", cut.date(), len(snap))
    return pd.concat(frames, ignore_index=True)
