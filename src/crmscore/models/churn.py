"""Churn: will an active customer stop buying within the horizon?

Population at a cutoff: customers with a purchase in the `lookback_days` before it (default 365).
Label: 1 (churned) when the customer makes no purchase in the `horizon_days` after it (default 90).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmscore.data.loader import CustomerData
from crmscore.models import baselines
from crmscore.models.labels import active_population, future_activity
from crmscore.models.tasks import Task, TaskSettings, register_task


def churn_labels(data: CustomerData, as_of: pd.Timestamp, settings: TaskSettings) -> pd.DataFrame:
    pop = active_population(data, as_of, settings.lookback_days)
    future = future_activity(data, as_of, settings.horizon_days)
    pop["label"] = (~pop["customer_id"].isin(future["customer_id"])).astype(np.int64)
    return pop


CHURN = register_task(Task(
    name="churn",
    description="P(no purchase in the next horizon_days) for customers active in the last lookback_days",
    label_fn=churn_labels,
    baselines=(baselines.RECENCY, baselines.RFM, baselines.BGNBD_INACTIVE),
    table_baselines=(baselines.LOGISTIC,),
    reason_up="raises churn risk",
    reason_down="lowers churn risk",
))
