"""The uplift estimator: a doubly robust (DR) learner and an S-learner of each customer's treatment effect, on
LightGBM; the validation rows choose between them per campaign (`method_` records which).

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

The S-learner (one LightGBM outcome model f(x, t) with the treatment as a feature; lift = f(x, 1) - f(x, 0)):
when a campaign's effect grows with the customer's own response level (a log-odds shift moves a likely buyer
more points than an unlikely one), one binary model with a treatment split learns it from every row, where the
DR effect model sees only a noisy pseudo-outcome. Its reasons are exact and additive too: interventional
TreeSHAP (shap's TreeExplainer against a background of training rows) of f(x, 1) and of f(x, 0), each with the
treatment held at the same value in the row and the background so the treatment itself takes no share; their
difference adds up to lift(x) minus the background's mean lift (the base value), in points of probability.

Which one: `method="auto"` (the default) fits both and keeps the one with the larger AUUC on the validation
rows (never the test rows); `method="dr"` or `"s"` forces one.

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
METHODS = ("dr", "s")
TREATED_COLUMN = "__treated__"  # the S-learner's treatment feature; never a customer feature
BACKGROUND_ROWS = 100  # the S-learner's SHAP background: training rows the base value averages over


class UpliftModel:
    """DR- or S-learner. outcome: 'binary' (bought: lift in probability points) or 'regression' (an amount).

    params / num_boost_round: LightGBM settings shared by the outcome and the effect models.
    method: 'auto' (validation AUUC chooses), 'dr' or 's'.
    """

    objective = "uplift"

    def __init__(self, outcome: Objective = "binary", params: dict[str, Any] | None = None,
                 num_boost_round: int = 600, seed: int = 17, method: str = "auto"):
        if method not in ("auto", *METHODS):
            raise ValueError(f"uplift method {method!r}: use auto, dr or s")
        self.outcome = outcome
        self.params = params or {}
        self.num_boost_round = num_boost_round
        self.seed = seed
        self.method = method

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
        """X: features; y: outcome; treated: 1/0. Validation rows stop every model early and choose the method
        (never the test rows)."""
        from crmscore.models.uplift_evaluation import uplift_metrics

        y, t = np.asarray(y, float), np.asarray(treated, float)
        yv, tv = np.asarray(y_valid, float), np.asarray(treated_valid, float)
        X, X_valid = X.reset_index(drop=True), X_valid.reset_index(drop=True)
        self.treated_share_ = float(np.clip(t.mean(), *SHARE_BOUNDS))
        self.control_, self.treated_ = self._pair(X, y, t, X_valid, yv, tv)
        candidates = METHODS if self.method == "auto" else (self.method,)
        self.validation_auuc_: dict[str, float] = {}
        if "dr" in candidates:
            self._fit_dr(X, y, t, X_valid, yv, tv)
        if "s" in candidates:
            self._fit_s(X, y, t, X_valid, yv, tv)
        for m in candidates:
            self.method_ = m
            self.validation_auuc_[m] = uplift_metrics(yv, tv, self.predict(X_valid))["auuc"]
        self.method_ = max(candidates, key=lambda m: self.validation_auuc_[m])
        if self.method_ != "dr":
            self.effect_ = None
        if self.method_ != "s":
            self.s_model_ = None
        return self

    def _fit_s(self, X: pd.DataFrame, y: np.ndarray, t: np.ndarray, X_valid: pd.DataFrame, yv: np.ndarray,
               tv: np.ndarray) -> None:
        """One outcome model on every row with the treatment as a feature (uncalibrated: its probability is
        exactly sigmoid of the booster's margin, which the interventional SHAP explains)."""
        self.s_categories_ = {c: sorted(map(str, X[c].dropna().unique())) for c in X.columns
                              if not pd.api.types.is_numeric_dtype(X[c]) or isinstance(X[c].dtype, pd.CategoricalDtype)}
        self.s_model_ = CustomerModel(self.outcome, {**small_data_threads(len(X)), **self.params},
                                      self.num_boost_round, calibrate=False)
        self.s_model_.fit(self._s_frame(X, t), y, self._s_frame(X_valid, tv), yv)
        rng = np.random.default_rng(self.seed)
        self.background_ = X.iloc[np.sort(rng.choice(len(X), min(BACKGROUND_ROWS, len(X)), replace=False))]

    def _s_frame(self, X: pd.DataFrame, treated: Any) -> pd.DataFrame:
        """The S-learner's input: categories as their codes in training order (shap's interventional TreeSHAP
        cannot follow LightGBM's categorical splits, so the S-learner splits on codes) and the treatment column."""
        out = X.copy()
        for c, levels in self.s_categories_.items():
            codes = pd.Categorical(X[c].astype("string").astype(object).where(X[c].notna(), None), categories=levels).codes
            out[c] = np.where(codes >= 0, codes, np.nan).astype(float)
        return out.assign(**{TREATED_COLUMN: np.broadcast_to(np.asarray(treated, float), len(X))})

    def _fit_dr(self, X: pd.DataFrame, y: np.ndarray, t: np.ndarray, X_valid: pd.DataFrame, yv: np.ndarray,
                tv: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        fold = rng.integers(0, 2, len(X))
        phi = np.empty(len(X))
        for k in (0, 1):  # cross-fitting: each half's pseudo-outcomes from models of the other half
            out, inside = fold != k, fold == k
            mu0, mu1 = self._pair(X[out], y[out], t[out], X_valid, yv, tv)
            phi[inside] = self.pseudo_outcomes(X[inside], y[inside], t[inside], mu0, mu1)
        phi_valid = self.pseudo_outcomes(X_valid, yv, tv, self.control_, self.treated_)
        self.effect_ = CustomerModel("regression", {**small_data_threads(len(X)), **EFFECT_PARAMS, **self.params},
                                     self.num_boost_round, calibrate=False)
        self.effect_.fit(X, phi, X_valid, phi_valid)

    # -- the estimator contract shared with CustomerModel -----------------------------------------
    @property
    def _lift_model(self) -> CustomerModel:
        return self.s_model_ if self.method_ == "s" else self.effect_

    @property
    def feature_names_(self) -> list[str]:
        return [c for c in self._lift_model.feature_names_ if c != TREATED_COLUMN]

    @property
    def categories_(self) -> dict[str, list[str]]:
        return self.s_categories_ if self.method_ == "s" else self.effect_.categories_

    @property
    def best_iteration_(self) -> int:
        return self._lift_model.best_iteration_

    @property
    def link(self) -> str:
        return "identity"

    def _encode(self, X: pd.DataFrame) -> pd.DataFrame:
        """The features as the lift's explanation reads them: numbers as float, categories as Categorical."""
        if self.method_ == "s":
            out = self.s_model_._encode(self._s_frame(X, 0.0))[self.feature_names_]
            for c, levels in self.s_categories_.items():
                out[c] = pd.Categorical.from_codes(out[c].fillna(-1).astype(int), categories=levels)
            return out
        return self.effect_._encode(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Each row's expected lift: outcome if treated minus outcome if not (points of probability or currency)."""
        if self.method_ == "s":
            return self.s_model_.predict(self._s_frame(X, 1.0)) - self.s_model_.predict(self._s_frame(X, 0.0))
        return self.effect_.predict(X)

    def outcomes(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(without the campaign, with it): each row's predicted outcome under control and under treatment."""
        return self.control_.predict(X), self.treated_.predict(X)

    def explain(self, X: pd.DataFrame) -> Explanation:
        """SHAP of the lift: base_value + contributions = the lift (identity link). DR: TreeSHAP of the effect
        model. S: interventional TreeSHAP of f(x, 1) minus that of f(x, 0), against the training background with
        the treatment held equal in row and background (the module docstring says why this is exact)."""
        if self.method_ != "s":
            return self.effect_.explain(X)
        import shap

        m = self.s_model_
        names = self.feature_names_
        output = "probability" if self.outcome == "binary" else "raw"
        parts = []
        for treated in (1.0, 0.0):
            bg = m._encode(self._s_frame(self.background_, treated))
            explainer = shap.TreeExplainer(m.booster_, data=bg, feature_perturbation="interventional",
                                           model_output=output)
            values = np.asarray(explainer.shap_values(m._encode(self._s_frame(X, treated))))
            parts.append((values.reshape(len(X), -1), float(np.ravel(explainer.expected_value)[-1])))
        (v1, b1), (v0, b0) = parts
        keep = [i for i, c in enumerate(m.feature_names_) if c != TREATED_COLUMN]
        contributions = (v1 - v0)[:, keep]
        base = b1 - b0
        return Explanation(contributions, base, base + contributions.sum(1), names, "identity")

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name in ("control", "treated", "effect", "s_model"):
            if getattr(self, f"{name}_", None) is not None:
                getattr(self, f"{name}_").save(path / name)
        if self.method_ == "s":
            self.background_.to_parquet(path / "background.parquet", index=False)
        meta = {"objective": self.objective, "outcome": self.outcome, "params": self.params,
                "num_boost_round": self.num_boost_round, "seed": self.seed, "treated_share": self.treated_share_,
                "method": self.method, "chosen_method": self.method_, "validation_auuc": self.validation_auuc_,
                "s_categories": getattr(self, "s_categories_", {})}
        (path / "model.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> UpliftModel:
        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        model = cls(meta["outcome"], meta["params"], meta["num_boost_round"], meta["seed"], meta.get("method", "dr"))
        model.treated_share_ = meta["treated_share"]
        model.method_ = meta.get("chosen_method", "dr")
        model.validation_auuc_ = meta.get("validation_auuc", {})
        model.s_categories_ = meta.get("s_categories", {})
        for name in ("control", "treated", "effect", "s_model"):
            setattr(model, f"{name}_", CustomerModel.load(path / name) if (path / name).is_dir() else None)
        if model.method_ == "s":
            model.background_ = pd.read_parquet(path / "background.parquet")
        return model
