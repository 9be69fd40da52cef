"""Who a task predicts for at a cutoff: one rule, read by the labels (training), batch scoring and the
service, so a model is trained and scored on the same customers.

A task declares the population it means by default (`Task.population`):
- `known`: every customer known before the cutoff, with a purchase or a sign-up (next-purchase,
  expected-spend: the lapsed and those who never bought get a recall score too);
- `buyers`: every customer with a purchase before the cutoff (next-category: a category forecast needs
  a purchase history to read);
- `active`: customers whose last purchase is fewer than the lifecycle's `churned_days` before the cutoff
  (churn: a churn is of a customer who can still be kept; one past churned_days is already 'churned').
An explicit `lookback_days` replaces that default with an activity filter: a purchase within that many days.

The rule reads one number per customer, `recency_days` (days from the last purchase, an order with a
positive net amount, to the cutoff; missing without a purchase), computed the same way here (SQL, for
labels) and in the feature table (crmscore.features.build). The rule a model was trained with is saved in
the model (`info["population"]`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from crmscore.config import LifecycleConfig

if TYPE_CHECKING:
    from crmscore.data.loader import CustomerData
    from crmscore.models.bundle import TrainedModel

Default = Literal["known", "buyers", "active"]


@dataclass(frozen=True)
class PopulationRule:
    """buyers_only: a purchase before the cutoff is needed; within_days: the last purchase fewer than this many
    days before the cutoff (implies buyers_only); neither: every customer known before the cutoff."""

    buyers_only: bool = False
    within_days: int | None = None

    def admits(self, recency_days: Any) -> np.ndarray:
        """Which customers are in the population, from their recency_days (days; NaN/None without a purchase)."""
        rec = pd.to_numeric(pd.Series(recency_days), errors="coerce").to_numpy(float)
        if self.within_days is not None:
            return rec < self.within_days  # NaN compares False: no purchase, not admitted
        if self.buyers_only:
            return ~np.isnan(rec)
        return np.ones(len(rec), dtype=bool)

    def admits_one(self, features: dict[str, Any]) -> bool:
        """One customer's features (a published snapshot row, or features sent to the service) in the
        population? The same rule as `admits`, in plain Python: the service asks it for every customer."""
        value = features.get("recency_days")
        try:
            rec = math.nan if value is None or isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            rec = math.nan
        if self.within_days is not None:
            return rec < self.within_days  # NaN compares False: no purchase, not admitted
        return not math.isnan(rec) if self.buyers_only else True

    def describe(self) -> str:
        if self.within_days is not None:
            return f"customers with a purchase in the last {self.within_days} days"
        return "customers with a purchase" if self.buyers_only else "every customer known (a purchase or a sign-up)"

    def to_dict(self) -> dict[str, Any]:
        return {"buyers_only": self.buyers_only, "within_days": self.within_days}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PopulationRule:
        return cls(bool(d.get("buyers_only")), d.get("within_days"))

    @classmethod
    def of_model(cls, bundle: TrainedModel) -> PopulationRule:
        """The rule a model was trained with. Models trained before it was saved: a purchase within their
        lookback_days (365 unless set), the rule they were trained with."""
        saved = bundle.info.get("population")
        if saved is not None:
            return cls.from_dict(saved)
        return cls(True, int(bundle.settings.get("lookback_days") or 365))


def population_rule(default: Default, lookback_days: int | None, lifecycle: LifecycleConfig) -> PopulationRule:
    """The rule of a task at its settings: an explicit lookback wins, else the task's default."""
    if lookback_days is not None:
        return PopulationRule(True, int(lookback_days))
    if default == "active":
        return PopulationRule(True, int(lifecycle.churned_days))
    return PopulationRule(default == "buyers", None)


def known_customers(data: CustomerData, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every customer known before as_of, with `recency_days`: the same definitions as the feature table (an
    order's time is its first line; a purchase is an order with a positive net amount, so a refund-only order
    makes no one active; known = an order line or a sign-up before the cutoff)."""
    from crmscore.features.build import as_of_timestamp, dialect_of

    d = dialect_of(data)
    cut = d.timestamp(as_of_timestamp(as_of))
    signups = (f" UNION ALL SELECT customer_id, CAST(NULL AS DOUBLE) FROM customers WHERE signup_ts < {cut}"
               if data.has("customers", "signup_ts") else "")
    return data.frame(
        f"WITH o AS (SELECT customer_id, order_key, MAX({d.age_days('ts', cut)}) AS age_days, "
        f"SUM(amount) > 0 AS purchase FROM lines WHERE ts < {cut} GROUP BY customer_id, order_key), "
        f"k AS (SELECT customer_id, MIN(CASE WHEN purchase THEN age_days END) AS recency_days FROM o "
        f"GROUP BY customer_id{signups}) "
        f"SELECT customer_id, MIN(recency_days) AS recency_days FROM k GROUP BY customer_id{d.order_by('customer_id')}"
    ).sort_values("customer_id", ignore_index=True).astype({"customer_id": "string", "recency_days": "float64"})


def customers_in(data: CustomerData, as_of: pd.Timestamp, rule: PopulationRule) -> pd.DataFrame:
    """The customers (`customer_id`) of the population at as_of."""
    known = known_customers(data, as_of)
    return known.loc[rule.admits(known["recency_days"]), ["customer_id"]].reset_index(drop=True)
