"""Labels from the window after a cutoff: what each customer did in [as_of, as_of + horizon)."""

from __future__ import annotations

import pandas as pd

from crmscore.data.loader import CustomerData
from crmscore.features.build import as_of_timestamp, dialect_of


def future_activity(data: CustomerData, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Per customer with any line in the window [as_of, as_of + horizon): `orders` (purchases: orders with a
    positive net amount), `spend` (net of refunds, currency) and `first_days` (days from the cutoff to the first
    purchase; missing without one). A refund-only order is not a purchase: its customer has orders 0."""
    start = as_of_timestamp(as_of)
    end = start + pd.Timedelta(days=horizon_days)
    d = dialect_of(data)
    lo, hi = d.timestamp(start), d.timestamp(end)
    return data.frame(
        f"WITH o AS (SELECT customer_id, order_key, SUM(amount) AS amount, MIN({d.age_days(lo, 'ts')}) AS days "
        f"FROM lines WHERE ts >= {lo} AND ts < {hi} GROUP BY customer_id, order_key) "
        f"SELECT customer_id, CAST(COUNT(*) FILTER (WHERE amount > 0) AS BIGINT) AS orders, SUM(amount) AS spend, "
        f"MIN(days) FILTER (WHERE amount > 0) AS first_days FROM o GROUP BY customer_id"
    ).astype({"customer_id": "string"})


def buyers(future: pd.DataFrame) -> set[str]:
    """The customers of a future_activity frame with a purchase in the window."""
    return set(future.loc[future["orders"] > 0, "customer_id"])


def future_categories(data: CustomerData, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Per customer and category bought in [as_of, as_of + horizon): `customer_id`, `category`, `spend`
    (lines with a positive amount only: a refund is not a purchase) and `first_days` (days from the cutoff to
    the first such line)."""
    start = as_of_timestamp(as_of)
    d = dialect_of(data)
    lo, hi = d.timestamp(start), d.timestamp(start + pd.Timedelta(days=horizon_days))
    return data.frame(
        f"SELECT customer_id, category, SUM(amount) AS spend, MIN({d.age_days(lo, 'ts')}) AS first_days "
        f"FROM lines WHERE ts >= {lo} AND ts < {hi} "
        f"AND amount > 0 AND category IS NOT NULL GROUP BY customer_id, category").astype(
        {"customer_id": "string", "category": "string"})


def top_categories(data: CustomerData, before: pd.Timestamp, n: int, by: str = "spend") -> list[str]:
    """The n categories with the most (positive) spend before a cutoff, or with by='customers' the most
    customers buying them, largest first ('unknown' left out)."""
    cut = dialect_of(data).timestamp(as_of_timestamp(before))
    size = {"spend": "SUM(amount)", "customers": "COUNT(DISTINCT customer_id)"}[by]
    rows = data.rows(
        f"SELECT category FROM lines WHERE ts < {cut} AND amount > 0 AND category IS NOT NULL "
        f"AND category <> 'unknown' GROUP BY category ORDER BY {size} DESC, category LIMIT {int(n)}")
    return [r[0] for r in rows]
