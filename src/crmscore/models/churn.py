"""Churn: will an active customer stop buying within the horizon?

Population at a cutoff: customers still active, their last purchase fewer than the lifecycle's `churned_days`
before it (config segments.lifecycle, default 180): a churn is of a customer who can still be kept. An explicit
`lookback_days` replaces that window (see crmscore.models.population).
Label: 1 (churned) when the customer makes no purchase (an order with a positive net amount; a refund is
not one) in the `horizon_days` after it (default 90).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmscore.data.loader import CustomerData
from crmscore.models import baselines
from crmscore.models.labels import buyers, future_activity
from crmscore.models.population import customers_in, population_rule
from crmscore.models.tasks import Task, TaskSettings, register_task


POPULATION = "active"


def churn_labels(data: CustomerData, as_of: pd.Timestamp, settings: TaskSettings) -> pd.DataFrame:
    rule = population_rule(POPULATION, settings.lookback_days, data.config.segments.lifecycle)
    pop = customers_in(data, as_of, rule)
    future = future_activity(data, as_of, settings.horizon_days)
    pop["label"] = (~pop["customer_id"].isin(buyers(future))).astype(np.int64)  # a refund is not a purchase
    return pop


CHURN = register_task(Task(
    name="churn",
    description="P(no purchase in the next horizon_days) for customers still active (not past churned_days, or "
                "a purchase in the last lookback_days when set)",
    population=POPULATION,
    label_fn=churn_labels,
    baselines=(baselines.RECENCY, baselines.RFM, baselines.BGNBD_INACTIVE),
    table_baselines=(baselines.LOGISTIC,),
    reason_up="raises churn risk",
    reason_down="lowers churn risk",
))
