"""Next purchase: when, how much, and which category next. Three tasks on the shared training framework.

Population at a cutoff (see crmscore.models.population): next-purchase and expected-spend, every customer
known before it (a purchase or a sign-up), so the lapsed and those who never bought get a recall score;
next-category, every customer with a purchase before it (its forecast reads the purchase history). An
explicit `lookback_days` narrows each to customers with a purchase within that many days. Labels come from
the `horizon_days` after it (default 30):

- `next-purchase` (binary): 1 when the customer places an order in the horizon. Companion: days from
  the cutoff to that first order (`days_to_next`, median and 10-90% interval from quantile models fitted
  on the customers who did buy, so read it as "if they buy within the horizon").
- `expected-spend` (regression, LightGBM Tweedie): the amount spent in the horizon, refunds netted and
  floored at 0; zero for most customers.
- `next-category` (multilabel): for each of the `top_categories` largest categories by spend (or by
  customers, `rank_categories_by`) before the earliest training cutoff (default 20, or the configured
  `categories`), 1 when the customer buys it in the horizon (a positive amount). The feature set gets, for each of them, a spend-share feature
  and its purchase history (days since it was last bought, orders with it in 30, 90 and 365 days, share
  of orders with it; setting `history_windows`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from crmscore.data.loader import CustomerData
from crmscore.features.build import discover_vocabulary
from crmscore.features.definitions import FeatureSet, declare, declare_category_history
from crmscore.models import baselines
from crmscore.models.bundle import days_column, label_column
from crmscore.models.labels import buyers, future_activity, future_categories, top_categories
from crmscore.models.population import Default, customers_in, population_rule
from crmscore.models.tasks import Companion, Task, TaskSettings, register_task

DEFAULTS = {"horizon_days": 30}
PURCHASE_POPULATION: Default = "known"
CATEGORY_POPULATION: Default = "buyers"


def _population(data: CustomerData, as_of: pd.Timestamp, settings: TaskSettings, default: Default) -> pd.DataFrame:
    return customers_in(data, as_of, population_rule(default, settings.lookback_days, data.config.segments.lifecycle))


class NextCategorySettings(TaskSettings):
    """next-category's settings: which categories, and what "buys regularly" means for the cross-sell list."""

    top_categories: int = Field(default=20, ge=1, description="How many of the largest categories (by spend).")
    rank_categories_by: Literal["spend", "customers"] = Field(default="spend", description="Largest by spend, "
                                                              "or by the number of customers buying them.")
    categories: list[str] | None = Field(default=None, description="The categories to predict; default: the "
                                                                   "top_categories largest before the first cutoff.")
    regular_share: float = Field(default=0.2, ge=0, le=1, description="A category the customer spent at least this "
                                                                      "share on in the last 365 days ...")
    regular_min_orders: int = Field(default=3, ge=0, description="... in at least this many orders (orders "
                                     "with the category, in its longest purchase-history window) is bought "
                                     "regularly: left out of the cross-sell list.")
    cross_sell_lookback_days: int | None = Field(default=None, gt=0, description="When set, the cross-sell list "
                                                 "leaves out every category the customer bought in this many days "
                                                 "before the cutoff (needs history_windows); unset, it leaves out "
                                                 "the categories bought regularly (regular_share, "
                                                 "regular_min_orders).")
    copurchase_blend: float = Field(default=0.0, ge=0, le=1, description="Weight of the co-purchase rules' "
                                    "score (a confidence, a probability too) in the ranking: (1 - w) x the model's "
                                    "probability + w x the rules' score; 0 = the model alone. Choose on validation "
                                    "cutoffs: every run logs the metrics of the blends at BLEND_WEIGHTS.")
    repeat_blend: float = Field(default=0.0, ge=0, le=1, description="Weight of the customer's own repeat "
                                "rate per category (its share of their orders in the feature set's longest window, "
                                "crmscore.models.bundle.repeat_scores) in the ranking, applied after the co-purchase "
                                "blend: (1 - w) x that score + w x the repeat rate; 0 = none. It only lifts categories "
                                "the customer bought in that window, so with cross_sell_lookback_days at least the "
                                "window the cross-sell list keeps its order. Choose on validation cutoffs: every run "
                                "logs the metrics at REPEAT_WEIGHTS.")
    category_timing: bool = Field(default=False, description="Also fit the timing model (crmscore.models."
                                  "category_timing): days until each listed category is bought, 10-90% interval.")
    history_windows: list[int] = Field(default=[30, 90], description="Windows (days) of the per-category order "
                                       "counts, besides the feature set's longest window; [] leaves out the "
                                       "per-category purchase history (days since bought, orders, order share).")


def purchase_labels(data: CustomerData, as_of: pd.Timestamp, settings: TaskSettings) -> pd.DataFrame:
    """label: an order in the horizon (0/1); days_to_next: days from the cutoff to it (missing without one)."""
    pop = _population(data, as_of, settings, PURCHASE_POPULATION)
    future = future_activity(data, as_of, settings.horizon_days).set_index("customer_id")
    first = pop["customer_id"].map(future["first_days"]).astype("float64")
    pop["label"] = first.notna().astype(np.int64)
    pop["days_to_next"] = first
    return pop


def spend_labels(data: CustomerData, as_of: pd.Timestamp, settings: TaskSettings) -> pd.DataFrame:
    """label: spend in the horizon (currency, refunds netted, floored at 0; 0 without an order)."""
    pop = _population(data, as_of, settings, PURCHASE_POPULATION)
    future = future_activity(data, as_of, settings.horizon_days).set_index("customer_id")
    spend = pop["customer_id"].map(future["spend"]).astype("float64").fillna(0.0)
    pop["label"] = spend.clip(lower=0.0)
    return pop


def category_labels(data: CustomerData, as_of: pd.Timestamp, settings: TaskSettings) -> pd.DataFrame:
    """label__<category>: bought it in the horizon (0/1), one column per target; days__<category>: days from
    the cutoff to its first purchase (missing when not bought; the timing model's target); label: bought any."""
    pop = _population(data, as_of, settings, CATEGORY_POPULATION)
    bought = future_categories(data, as_of, settings.horizon_days)
    targets = list(settings.categories or [])  # type: ignore[attr-defined]
    for t in targets:
        first = bought.loc[bought["category"] == t].set_index("customer_id")["first_days"]
        days = pop["customer_id"].map(first).astype("float64")
        pop[label_column(t)] = days.notna().astype(np.int64)
        pop[days_column(t)] = days
    cols = [label_column(t) for t in targets]
    pop["bought_any"] = pop["customer_id"].isin(buyers(future_activity(data, as_of, settings.horizon_days)))
    pop["label"] = (pop[cols].sum(axis=1) > 0).astype(np.int64) if cols else 0
    return pop


def choose_categories(data: CustomerData, first_cutoff: pd.Timestamp, settings: TaskSettings) -> TaskSettings:
    """Fix the target categories from data before the earliest training cutoff (unless configured)."""
    s: NextCategorySettings = settings  # type: ignore[assignment]
    if s.categories:
        return s
    cats = top_categories(data, first_cutoff, s.top_categories, s.rank_categories_by)
    return s.model_copy(update={"categories": cats})


def category_feature_set(data: CustomerData, first_cutoff: pd.Timestamp, settings: TaskSettings) -> FeatureSet:
    """The configured feature set, with a spend-share feature for every target category as well, and each
    target's purchase history: days since it was last bought, orders with it in each of `history_windows`
    and the feature set's longest window, and its share of that window's orders."""
    s: NextCategorySettings = settings  # type: ignore[assignment]
    cfg = data.config.features
    vocab = discover_vocabulary(data, first_cutoff)
    cats = tuple(dict.fromkeys([*vocab.categories, *(s.categories or [])]))
    vocab = dataclasses.replace(vocab, categories=cats)
    history = (declare_category_history(list(s.categories or []), sorted({*s.history_windows, max(cfg.windows)}))
               if s.history_windows else [])
    feats = [f for f in [*declare(cfg.windows, vocab, cfg.evening_hour), *history]
             if all(data.has(*req.split(".")) for req in f.requires)]
    return FeatureSet(tuple(feats), vocab, tuple(cfg.windows), cfg.evening_hour)


def usual_gap_days(test: pd.DataFrame, settings: TaskSettings) -> np.ndarray:
    """Days-to-next baseline: the usual gap minus the days since the last purchase, within [0, horizon];
    half the horizon for customers with one order."""
    gap = test["gap_mean_days"].to_numpy(float) - test["recency_days"].to_numpy(float)
    return np.clip(np.where(np.isnan(gap), settings.horizon_days / 2, gap), 0, settings.horizon_days)


NEXT_PURCHASE = register_task(Task(
    name="next-purchase",
    description="P(at least one purchase in the next horizon_days) for every customer known (a purchase or a "
                "sign-up; a purchase in the last lookback_days when set)",
    population=PURCHASE_POPULATION,
    label_fn=purchase_labels,
    baselines=(baselines.RECENCY_ACTIVE, baselines.FREQUENCY, baselines.BGNBD_ACTIVE),
    table_baselines=(),
    reason_up="makes a purchase more likely",
    reason_down="makes a purchase less likely",
    defaults=DEFAULTS,
    companions=(Companion("days_to_next", "days_to_next", "days from the cutoff to the next order, for customers "
                          "who order within the horizon", upper_setting="horizon_days", baseline=usual_gap_days),),
    transactions_only=True,
))

EXPECTED_SPEND = register_task(Task(
    name="expected-spend",
    description="Spend in the next horizon_days (currency, 0 without an order) for every customer known (a "
                "purchase in the last lookback_days when set)",
    population=PURCHASE_POPULATION,
    label_fn=spend_labels,
    baselines=(baselines.BGNBD_GAMMA_GAMMA, baselines.SPEND_RATE),
    table_baselines=(),
    reason_up="raises expected spend",
    reason_down="lowers expected spend",
    kind="regression",
    objective="tweedie",
    primary_metric="normalized_gini",
    defaults=DEFAULTS,
    transactions_only=True,
))

NEXT_CATEGORY = register_task(Task(
    name="next-category",
    description="P(buying each of the top categories in the next horizon_days) for customers with a purchase "
                "(in the last lookback_days when set)",
    population=CATEGORY_POPULATION,
    label_fn=category_labels,
    baselines=(baselines.POPULARITY, baselines.SEGMENT_POPULARITY, baselines.COPURCHASE, baselines.HISTORY,
               baselines.MOST_BOUGHT, baselines.MOST_RECENT),
    table_baselines=(),
    reason_up="makes buying {target} more likely",
    reason_down="makes buying {target} less likely",
    kind="multilabel",
    primary_metric="hit_rate_at_3",
    defaults=DEFAULTS,
    settings_model=NextCategorySettings,
    prepare=choose_categories,
    feature_set=category_feature_set,
    transactions_only=True,
))
