"""The uplift estimator: a doubly robust (DR) learner of each customer's treatment effect, on LightGBM.

What it estimates: tau(x) = E[Y | treated, x] - E[Y | control, x], the conditional average treatment effect
(CATE) of a campaign on an outcome Y (bought within the horizon: a probability difference in points; or
spend: currency).

How (Kennedy 2020, "Towards optimal doubly robust estimation of heterogeneous causal effects"):
1. Outcome models mu0(x) (control) and mu1(x) (treated), LightGBM, cross-fitted on two halves of the
   training rows so that no row's pseudo-outcome uses a model that saw it.
2. The DR pseudo-outcome per row: phi = mu1 - mu0 + T (Y - mu1) / e - (1 - T) (Y - mu0) / (1 - e), with e the
   treated share. The campaigns this reads are randomised experiments, so e is the share assigned to
   treatment, not a fitted propensity (a fitted one would only add noise).
3. The effect model: one LightGBM regression of phi on x, early-stopped on the validation rows'
   pseudo-outcomes. tau(x) is that single model, so TreeSHAP explains the lift itself: contributions in
   the lift's own unit (points of probability, or currency) that add up to it. A T-learner's lift is a
   difference of two models, whose SHAP values explain neither the lift nor each other.

Why our own ~100 lines rather than causalml 0.18: causalml's meta-learners would wrap the same LightGBM,
but installing it adds 18 packages (`pip install --dry-run`: xgboost 3.2 with nvidia-nccl-cu12, statsmodels, black,
pathos, seaborn...) and its DR learner's effect model is not ours, so SHAP reasons would need a second
path. scikit-uplift 0.5.1 (2022) has only T/S-learners and class transformation, and calls a scikit-learn
helper deprecated in 1.8 and removed in 1.10.

mu0 is kept: it is each customer's baseline probability (what they do without the campaign), which with
the lift places them in a quadrant (crmscore.models.quadrants).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore.models.estimator import CustomerModel, Explanation, Objective, small_data_threads

SHARE_BOUNDS = (0.02, 0.98)  # a treated share outside this leaves too few rows on one side to weigh
# The pseudo-outcomes are noisy (a purchase is weighed by 1/e, about +-2 at a 50/50 split), so the effect model
# takes larger leaves and fewer of them than an outcome model: it should find groups that respond, not rows.
EFFECT_PARAMS: dict[str, Any] = {"num_leaves": 7, "min_child_samples": 100, "lambda_l2": 10.0, "learning_rate": 0.03}


class UpliftModel:
    """DR-learner. outcome: 'binary' (bought: lift in probability points) or 'regression' (an amount).

    params / num_boost_round: LightGBM settings shared by the outcome and the effect models.
    """

    objective = "uplift"

    def __init__(self, outcome: Objective = "binary", params: dict[str, Any] | None = None,
                 num_boost_round: int = 600, seed: int = 17):
        self.outcome = outcome
        self.params = params or {}
        self.num_boost_round = num_boost_round
        self.seed = seed

    # -- fitting ---------------------------------------------------------------------------------
    def _outcome_model(self, rows: int) -> CustomerModel:
        return CustomerModel(self.outcome, {**small_data_threads(rows), **self.params}, self.num_boost_round,
                             calibrate=True)

    def _pair(self, X: pd.DataFrame, y: np.ndarray, t: np.ndarray, Xv: pd.DataFrame, yv: np.ndarray,
              tv: np.ndarray) -> tuple[CustomerModel, CustomerModel]:
        c, tr, cv, tvm = t == 0, t == 1, tv == 0, tv == 1
        mu0 = self._outcome_model(int(c.sum())).fit(X[c], y[c], Xv[cv], yv[cv])
        mu1 = self._outcome_model(int(tr.sum())).fit(X[tr], y[tr], Xv[tvm], yv[tvm])
        return mu0, mu1

    def pseudo_outcomes(self, X: pd.DataFrame, y: np.ndarray, t: np.ndarray, mu0: CustomerModel,
                        mu1: CustomerModel) -> np.ndarray:
        """The DR pseudo-outcome of each row (its mean is the average effect; see the module docstring)."""
        m0, m1 = mu0.predict(X), mu1.predict(X)
        e = self.treated_share_
        return m1 - m0 + t * (y - m1) / e - (1 - t) * (y - m0) / (1 - e)

    def fit(self, X: pd.DataFrame, y: Any, treated: Any, X_valid: pd.DataFrame, y_valid: Any,
            treated_valid: Any) -> UpliftModel:
        """X: features; y: outcome; treated: 1/0. Validation rows stop every model early (never the test rows)."""
        y, t = np.asarray(y, float), np.asarray(treated, float)
        yv, tv = np.asarray(y_valid, float), np.asarray(treated_valid, float)
        X, X_valid = X.reset_index(drop=True), X_valid.reset_index(drop=True)
        self.treated_share_ = float(np.clip(t.mean(), *SHARE_BOUNDS))
        rng = np.random.default_rng(self.seed)
        fold = rng.integers(0, 2, len(X))
        phi = np.empty(len(X))
        for k in (0, 1):  # cross-fitting: each half's pseudo-outcomes from models of the other half
            out, inside = fold != k, fold == k
            mu0, mu1 = self._pair(X[out], y[out], t[out], X_valid, yv, tv)
            phi[inside] = self.pseudo_outcomes(X[inside], y[inside], t[inside], mu0, mu1)
        self.control_, self.treated_ = self._pair(X, y, t, X_valid, yv, tv)
        phi_valid = self.pseudo_outcomes(X_valid, yv, tv, self.control_, self.treated_)
        self.effect_ = CustomerModel("regression", {**small_data_threads(len(X)), **EFFECT_PARAMS, **self.params},
                                     self.num_boost_round, calibrate=False)
        self.effect_.fit(X, phi, X_valid, phi_valid)
        return self

    # -- the estimator contract shared with CustomerModel -----------------------------------------
    @property
    def feature_names_(self) -> list[str]:
        return self.effect_.feature_names_

    @property
    def categories_(self) -> dict[str, list[str]]:
        return self.effect_.categories_

    @property
    def best_iteration_(self) -> int:
        return self.effect_.best_iteration_

    @property
    def link(self) -> str:
        return "identity"

    def _encode(self, X: pd.DataFrame) -> pd.DataFrame:
        return self.effect_._encode(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Each row's expected lift: outcome if treated minus outcome if not (points of probability or currency)."""
        return self.effect_.predict(X)

    def outcomes(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(without the campaign, with it): each row's predicted outcome under control and under treatment."""
        return self.control_.predict(X), self.treated_.predict(X)

    def explain(self, X: pd.DataFrame) -> Explanation:
        """TreeSHAP of the effect model: base_value + contributions = the lift (identity link)."""
        return self.effect_.explain(X)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in ("control", "treated", "effect"):
            getattr(self, f"{name}_").save(path / name)
        meta = {"objective": self.objective, "outcome": self.outcome, "params": self.params,
                "num_boost_round": self.num_boost_round, "seed": self.seed, "treated_share": self.treated_share_}
        (path / "model.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> UpliftModel:
        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        model = cls(meta["outcome"], meta["params"], meta["num_boost_round"], meta["seed"])
        model.treated_share_ = meta["treated_share"]
        for name in ("control", "treated", "effect"):
            setattr(model, f"{name}_", CustomerModel.load(path / name))
        return model
