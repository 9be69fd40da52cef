"""Every customer feature, declared once: name, type, window, unit, plain-language description and the
SQL that computes it.

The description is what operations staff read as the reason behind a score, so it is written for them
("days since the last purchase"), not for engineers. The SQL is an aggregate over one of the stages
(see crmscore.features.build): `orders` (one row per order, with `age_days` = days from the order to
`as_of`), `categories` (spend per customer and category), `category_orders` (one row per customer,
category and order with a purchase of it, with the order's `age_days`), `stores` (orders per customer and
store), `events`, `customers` (static attributes the config lists), `attribute_history` (each customer's
latest row valid before `as_of`, aliased `h`), or `derived` (an expression over features already computed). The
`btyd` stage is not SQL: buy-till-you-die models fitted on the snapshot's own history (crmscore.features.btyd)
after the SQL ran; their `sql` names the quantity. Only portable SQL is used here (CASE, SUM, COUNT, AVG,
STDDEV_SAMP, NULLIF, COALESCE, integer literals, every `/` over NULLIF); the dialect-specific pieces (day
arithmetic, weekday, hour, identifier quoting, timestamp literals) live in crmscore.features.dialect, so the
same declarations run on DuckDB and on Spark SQL (crmscore.features.dialect.lint_declaration checks them). The
`customers` and `attribute_history` stages' `sql` is the bare attribute column name; the build quotes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Literal

Stage = Literal["orders", "categories", "category_orders", "stores", "events", "customers", "attribute_history",
                "derived", "btyd"]
DType = Literal["float", "int", "category"]


@dataclass(frozen=True)
class Feature:
    """One declared feature.

    name: column name in the feature table.
    dtype: 'float', 'int' or 'category'.
    stage: where its SQL runs (see module docstring).
    sql: the aggregate (or derived) SQL expression.
    description: plain-language meaning, shown to operations as the reason for a score.
    unit: 'days', 'orders', 'currency', 'share' (0-1), 'ratio', 'count', 'hour' or '' (categorical).
    window_days: the look-back window, or None for all history before as_of.
    group: a family name for documentation and grouping of reasons.
    requires: canonical columns (table.column) the feature needs; it is left out when they are absent.
    """

    name: str
    dtype: DType
    stage: Stage
    sql: str
    description: str
    unit: str
    window_days: int | None = None
    group: str = ""
    requires: tuple[str, ...] = ()

    @property
    def definition_hash(self) -> str:
        """A digest of what the feature means: name, type, stage, SQL, window and unit (not the wording of
        its description, its group or the columns it needs to exist).

        Models record it for every feature they use and the online store for every feature it holds; the
        service serves a model only where both agree. The window is hashed on its own because several
        features (weekend_share, evening_share, mean_order_hour, category_share_*, channel_share_*) keep
        their name when `features.windows` changes their window, and category_share_*'s SQL does not
        show it (the window is applied in the `categories` stage)."""
        meaning = [self.name, self.dtype, self.stage, self.sql, self.window_days, self.unit]
        return "fd-" + hashlib.sha256(json.dumps(meaning).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Vocabulary:
    """Data-dependent parts of the feature set, fixed from data before the first cutoff."""

    categories: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()  # (column, 'number' | 'text')
    history_attributes: tuple[tuple[str, str], ...] = ()  # the same, from attribute_history (valid_from)


def slug(text: str) -> str:
    """A column-safe lowercase name for a category, channel or attribute value."""
    s = re.sub(r"[^0-9a-zA-Z]+", "_", str(text)).strip("_").lower()
    return s or "blank"


def _lit(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def declare(windows: list[int], vocab: Vocabulary, evening_hour: int = 17,
            btyd_horizons: list[int] | tuple[int, ...] = ()) -> list[Feature]:
    """All features for these windows and vocabularies, in a stable order; with btyd_horizons (days), the
    buy-till-you-die features (declare_btyd)."""
    w_share = max(windows)
    ws = f"{w_share}d"
    f: list[Feature] = [
        Feature("recency_days", "float", "orders", "MIN(age_days)",
                "days since the last purchase", "days", None, "recency"),
        Feature("first_purchase_days", "float", "orders", "MAX(age_days)",
                "days since the first purchase", "days", None, "tenure"),
        Feature("frequency_total", "int", "orders", "COUNT(*)",
                "orders placed, all time", "orders", None, "frequency"),
        Feature("monetary_total", "float", "orders", "SUM(amount)",
                "total spend, all time", "currency", None, "monetary"),
    ]
    for w in windows:
        f.append(Feature(f"frequency_{w}d", "int", "orders",
                         f"SUM(CASE WHEN age_days < {w} THEN 1 ELSE 0 END)",
                         f"orders in the last {w} days", "orders", w, "frequency"))
        f.append(Feature(f"monetary_{w}d", "float", "orders",
                         f"SUM(CASE WHEN age_days < {w} THEN amount ELSE 0 END)",
                         f"spend in the last {w} days", "currency", w, "monetary"))
    f += [
        Feature("frequency_prev_90d", "int", "orders",
                "SUM(CASE WHEN age_days >= 90 AND age_days < 180 THEN 1 ELSE 0 END)",
                "orders in the 90 days before the last 90", "orders", 180, "trend"),
        Feature("monetary_prev_90d", "float", "orders",
                "SUM(CASE WHEN age_days >= 90 AND age_days < 180 THEN amount ELSE 0 END)",
                "spend in the 90 days before the last 90", "currency", 180, "trend"),
        Feature("gap_mean_days", "float", "orders", "AVG(gap_days)",
                "usual number of days between purchases", "days", None, "rhythm"),
        Feature("gap_std_days", "float", "orders", "STDDEV_SAMP(gap_days)",
                "how irregular the days between purchases are (standard deviation)", "days", None, "rhythm"),
        Feature("weekend_share", "float", "orders",
                f"AVG(CASE WHEN age_days < {w_share} THEN CASE WHEN is_weekend THEN 1 ELSE 0 END END)",
                f"share of orders on Saturday or Sunday in the last {w_share} days", "share", w_share, "habits"),
        Feature("evening_share", "float", "orders",
                f"AVG(CASE WHEN age_days < {w_share} THEN CASE WHEN hour >= {evening_hour} THEN 1 ELSE 0 END END)",
                f"share of orders from {evening_hour}:00 on in the last {w_share} days", "share", w_share,
                "habits"),
        Feature("mean_order_hour", "float", "orders",
                f"AVG(CASE WHEN age_days < {w_share} THEN hour END)",
                f"usual hour of day of orders in the last {w_share} days", "hour", w_share, "habits"),
        # categories stage: spend and refunds per customer and category over the share window
        Feature(f"distinct_categories_{ws}", "int", "categories", "SUM(CASE WHEN spend > 0 THEN 1 ELSE 0 END)",
                f"number of different categories bought in the last {w_share} days", "count", w_share,
                "categories", ("lines.category",)),
        Feature(f"top_category_share_{ws}", "float", "categories", "MAX(spend) / NULLIF(SUM(spend), 0)",
                f"share of spend on the customer's main category in the last {w_share} days", "share",
                w_share, "categories", ("lines.category",)),
        Feature(f"refund_share_{ws}", "float", "categories", "SUM(refund) / NULLIF(SUM(spend), 0)",
                f"refunds as a share of spend in the last {w_share} days", "share", w_share, "refunds"),
    ]
    for cat in vocab.categories:
        f.append(Feature(f"category_share_{slug(cat)}", "float", "categories",
                         f"SUM(CASE WHEN category = {_lit(cat)} THEN spend ELSE 0 END) / NULLIF(SUM(spend), 0)",
                         f"share of spend on {cat} in the last {w_share} days", "share", w_share,
                         "categories", ("lines.category",)))
    for ch in vocab.channels:
        f.append(Feature(f"channel_share_{slug(ch)}", "float", "orders",
                         f"AVG(CASE WHEN age_days < {w_share} THEN CASE WHEN channel = {_lit(ch)} THEN 1 "
                         f"ELSE 0 END END)",
                         f"share of orders through {ch} in the last {w_share} days", "share", w_share,
                         "channels", ("lines.channel",)))
    f += [
        Feature(f"distinct_stores_{ws}", "int", "stores", "COUNT(*)",
                f"number of different stores used in the last {w_share} days", "count", w_share, "stores",
                ("lines.store_id",)),
        Feature(f"top_store_share_{ws}", "float", "stores", "MAX(n) / NULLIF(SUM(n), 0)",
                f"share of orders at the customer's usual store in the last {w_share} days", "share", w_share,
                "stores", ("lines.store_id",)),
        Feature("events_30d", "int", "events", "SUM(CASE WHEN age_days < 30 THEN 1 ELSE 0 END)",
                "interactions (visits, clicks, coupon use) in the last 30 days", "count", 30, "engagement",
                ("events.event_type",)),
        Feature("events_90d", "int", "events", "SUM(CASE WHEN age_days < 90 THEN 1 ELSE 0 END)",
                "interactions (visits, clicks, coupon use) in the last 90 days", "count", 90, "engagement",
                ("events.event_type",)),
        Feature("event_recency_days", "float", "events", "MIN(age_days)",
                "days since the last interaction (visit, click, coupon use)", "days", None, "engagement",
                ("events.event_type",)),
    ]
    for et in vocab.event_types:
        f.append(Feature(f"event_{slug(et)}_90d", "int", "events",
                         f"SUM(CASE WHEN age_days < 90 AND event_type = {_lit(et)} THEN 1 ELSE 0 END)",
                         f"{et.replace('_', ' ')} events in the last 90 days", "count", 90, "engagement",
                         ("events.event_type",)))
    f += [
        Feature("tenure_days", "float", "derived",
                "GREATEST(COALESCE(first_purchase_days, signup_days), COALESCE(signup_days, first_purchase_days))",
                "days since the customer became known (sign-up or first purchase)", "days", None, "tenure"),
        Feature(f"avg_order_value_{ws}", "float", "derived",
                f"monetary_{w_share}d / NULLIF(frequency_{w_share}d, 0)",
                f"average spend per order in the last {w_share} days", "currency", w_share, "monetary"),
        Feature("recency_gap_ratio", "float", "derived", "recency_days / NULLIF(gap_mean_days, 0)",
                "days since the last purchase divided by the usual gap between purchases", "ratio", None,
                "rhythm"),
        Feature("spend_trend_90d", "float", "derived",
                "(COALESCE(monetary_90d, 0) - monetary_prev_90d) / "
                "NULLIF(ABS(COALESCE(monetary_90d, 0)) + ABS(monetary_prev_90d), 0)",
                "spend trend: last 90 days against the 90 before (-1 all before, +1 all recent)", "ratio",
                180, "trend"),
        Feature("frequency_trend_90d", "float", "derived",
                "(COALESCE(frequency_90d, 0) - frequency_prev_90d) / "
                "NULLIF(COALESCE(frequency_90d, 0) + frequency_prev_90d, 0)",
                "order trend: last 90 days against the 90 before (-1 all before, +1 all recent)", "ratio", 180,
                "trend"),
    ]
    for col, kind in vocab.attributes:
        f.append(Feature(f"attr_{slug(col)}", "float" if kind == "number" else "category", "customers",
                         col, f"customer attribute '{col}'", "" if kind == "text" else "value", None,
                         "attributes", ("customers.customer_id",)))
    for col, kind in vocab.history_attributes:
        f.append(Feature(f"attr_{slug(col)}", "float" if kind == "number" else "category", "attribute_history",
                         col, f"customer attribute '{col}'", "" if kind == "text" else "value", None,
                         "attributes", ("attribute_history.customer_id",)))
    if 90 not in windows:  # trends need the 90-day window
        f = [x for x in f if x.group != "trend"]
    return f + declare_btyd(btyd_horizons)


BTYD_EXPECTED_ORDERS = "btyd_expected_orders_{h}d"


def declare_btyd(horizons: list[int] | tuple[int, ...]) -> list[Feature]:
    """Buy-till-you-die features, fitted per snapshot on the history before its cutoff (crmscore.features.btyd):
    BG/NBD expected orders in each horizon (days) and P(alive), Gamma-Gamma expected order value. None
    without horizons."""
    if not horizons:
        return []
    f = [Feature(BTYD_EXPECTED_ORDERS.format(h=h), "float", "btyd", f"BGNBD_EXPECTED_ORDERS({int(h)})",
                 f"expected orders in the next {int(h)} days, from the purchase rhythm of all customers",
                 "orders", None, "btyd") for h in sorted(set(horizons))]
    return f + [
        Feature("btyd_p_alive", "float", "btyd", "BGNBD_P_ALIVE",
                "chance the customer is still buying, from their purchase rhythm", "share", None, "btyd"),
        Feature("btyd_expected_order_value", "float", "btyd", "GAMMA_GAMMA_EXPECTED_ORDER_VALUE",
                "expected value of the next order, from their own and all customers' order values", "currency",
                None, "btyd"),
    ]


def category_orders_name(category: str, window: int) -> str:
    """The purchase-history feature counting the orders with `category` in the last `window` days."""
    return f"category_orders_{window}d_{slug(category)}"


def declare_category_history(categories: list[str] | tuple[str, ...], windows: list[int]) -> list[Feature]:
    """Each category's purchase rhythm: days since it was last bought, orders that included it in each of
    `windows` (days), and the share of the orders of the longest window that included it.

    A category is bought in an order with a positive line of it (a refund is not a purchase). The share
    divides by `frequency_<longest>d`, so the longest window must be one of the feature set's windows.
    Not part of the default set (`declare`): the next-category task adds these for its target categories.
    """
    longest = max(windows)
    f: list[Feature] = []
    for cat in categories:
        s, lit = slug(cat), _lit(cat)
        f.append(Feature(f"category_recency_{s}", "float", "category_orders",
                         f"MIN(CASE WHEN category = {lit} THEN age_days END)",
                         f"days since {cat} was last bought", "days", None, "category_history",
                         ("lines.category",)))
        for w in sorted(windows):
            f.append(Feature(category_orders_name(cat, w), "int", "category_orders",
                             f"SUM(CASE WHEN category = {lit} AND age_days < {w} THEN 1 ELSE 0 END)",
                             f"orders with {cat} in the last {w} days", "orders", w, "category_history",
                             ("lines.category",)))
        f.append(Feature(f"category_order_share_{s}", "float", "derived",
                         f"{category_orders_name(cat, longest)} / NULLIF(frequency_{longest}d, 0)",
                         f"share of orders with {cat} in the last {longest} days", "share", longest,
                         "category_history", ("lines.category",)))
    return f


@dataclass(frozen=True)
class FeatureSet:
    """The resolved features of one model: declarations plus the vocabulary they were built with.

    Saved next to every model, so scoring later builds exactly the same columns.
    """

    features: tuple[Feature, ...]
    vocabulary: Vocabulary
    windows: tuple[int, ...]
    evening_hour: int = 17
    version: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.version:  # windows included: a feature that keeps its name under another window is new
            digest = hashlib.sha256(json.dumps([x.definition_hash for x in self.features]).encode()).hexdigest()[:12]
            object.__setattr__(self, "version", f"fs-{digest}")

    @property
    def names(self) -> list[str]:
        return [x.name for x in self.features]

    def get(self, name: str) -> Feature | None:
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str, Feature]:  # get() runs once per reason served
        return {x.name: x for x in self.features}

    def definitions(self, names: list[str] | None = None) -> dict[str, str]:
        """{feature: definition hash} of `names` (default every feature); a name not declared here is left out."""
        wanted = self.names if names is None else names
        return {n: self._by_name[n].definition_hash for n in wanted if n in self._by_name}

    @property
    def categorical(self) -> list[str]:
        return [x.name for x in self.features if x.dtype == "category"]

    def to_dict(self) -> dict:
        return {"version": self.version, "windows": list(self.windows), "evening_hour": self.evening_hour,
                "vocabulary": asdict(self.vocabulary), "features": [asdict(x) for x in self.features]}

    @classmethod
    def from_dict(cls, d: dict) -> FeatureSet:
        v = d["vocabulary"]
        vocab = Vocabulary(tuple(v["categories"]), tuple(v["channels"]), tuple(v["event_types"]),
                           tuple(tuple(a) for a in v["attributes"]),
                           tuple(tuple(a) for a in v.get("history_attributes", ())))
        feats = tuple(Feature(**{**x, "requires": tuple(x["requires"])}) for x in d["features"])
        return cls(feats, vocab, tuple(d["windows"]), d.get("evening_hour", 17), d["version"])
