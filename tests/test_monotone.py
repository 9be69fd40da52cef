"""LightGBM monotone constraints by feature name (`params.monotone`), as the Online Retail churn model uses them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmscore.models.estimator import CustomerModel


def test_monotone_by_name_makes_the_score_rise_with_the_feature():
    rng = np.random.default_rng(3)
    n = 4000
    X = pd.DataFrame({"recency_days": rng.uniform(0, 200, n), "other": rng.normal(size=n)})
    # churn rises with recency overall but dips in the middle: an unconstrained model follows the dip
    logit = 0.02 * X["recency_days"] - 1.5 * ((X["recency_days"] > 80) & (X["recency_days"] < 120)) - 2
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logit))).astype(int)
    grid = pd.DataFrame({"recency_days": np.linspace(0, 200, 201), "other": 0.0})
    params = {"num_leaves": 7, "min_child_samples": 20}
    free = CustomerModel("binary", params, num_boost_round=200, calibrate=False).fit(X, y)
    tied = CustomerModel("binary", {**params, "monotone": {"recency_days": 1, "not_a_feature": -1}},
                         num_boost_round=200, calibrate=False).fit(X, y)
    assert (np.diff(free.predict_proba(grid)[:, 1]) < -1e-9).any()  # the dip is learnt without the constraint
    assert (np.diff(tied.predict_proba(grid)[:, 1]) >= -1e-12).all()
