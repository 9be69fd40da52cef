"""The uplift estimator: five meta-learners of each customer's treatment effect on LightGBM; out-of-fold AUUC over the
training and validation rows (or the validation rows alone) chooses one per campaign (`method_` records which,
`selection_auuc_` what each scored there).

What it estimates: tau(x) = E[Y | treated, x] - E[Y | control, x], the conditional average treatment effect
(CATE) of a campaign on an outcome Y (bought within the horizon: a probability difference in points; or
spend: currency). The campaigns this reads are randomised experiments, so the propensity e is the share
assigned to treatment, not a fitted model of it (a fitted one would only add noise).

Every method starts from the outcome models mu0(x) (control rows) and mu1(x) (treated rows), calibrated
LightGBM; they give each customer's outcome with and without the campaign (the quadrants read mu0).

- `dr`, the DR-learner (Kennedy 2020): mu0 and mu1 cross-fitted on two halves of the training rows, the
  pseudo-outcome phi = mu1 - mu0 + T (Y - mu1) / e - (1 - T) (Y - mu0) / (1 - e) per row, and one LightGBM
  regression of phi on x is the lift.
- `x`, the X-learner (Kuenzel et al. 2019): the imputed effects D1 = Y - mu0(x) of treated rows and
  D0 = mu1(x) - Y of control rows (mu0 never saw a treated row and mu1 never a control row, so no
  cross-fitting is needed), one regression each (tau1, tau0), and the lift e tau0(x) + (1 - e) tau1(x): the
  effect model built on the larger group's outcome model weighs more.
- `to`, the transformed outcome (Athey & Imbens 2016; the class transformation of Jaskowski & Jaroszewicz
  2012 generalised to any treated share): Y* = Y (T - e) / (e (1 - e)) has E[Y* | x] = tau(x), so one
  regression of Y* on x is the lift. The simplest and the noisiest; it needs no outcome model.
- `s`, the S-learner: one outcome model f(x, t) with the treatment as a feature; lift = f(x, 1) - f(x, 0).
  When a campaign's effect grows with the customer's own response level (a log-odds shift moves a likely
  buyer more points than an unlikely one), one model learns it from every row, where the others' effect
  models see only noisy per-row effects.
- `rs`, response-scaled: the lift is a constant share of the customer's own response,
  lift(x) = r mu0(x), with r = rate_treated / rate_control - 1 on the training rows and mu0(x) = p(x) /
  (1 + r e) from one response model p(x) of every row (treatment ignored; more rows than mu0 alone; a
  least-squares regression, so a purchase's p(x) can stray a little outside [0, 1] and is not clipped). Its
  ranking is the response model's: when an effect is proportional to the response level (the reading of
  Lenta's SMS sample), targeting by purchase probability IS the best uplift ranking, and this candidate lets
  the validation rows say so, in lift units.

Reasons (SHAP of the lift, identity link: base value + contributions = the lift, in points of probability or
currency), exact and additive for every method:
- dr, to: TreeSHAP of the one effect model.
- x: the same weighted sum of the two effect models' TreeSHAP, e SHAP(tau0) + (1 - e) SHAP(tau1) (SHAP is
  linear in the model).
- s: interventional TreeSHAP (shap's TreeExplainer against a background of training rows) of f(x, 1) and
  of f(x, 0), each with the treatment held at the same value in the row and the background so the
  treatment itself takes no share; their difference adds up to lift(x) minus the background's mean lift.
- rs: r / (1 + r e) times the TreeSHAP of the response regression p(x) (a sum of trees, identity link).
The interventional one (s) splits on category codes: shap's interventional path cannot follow LightGBM's
categorical splits; it is also the slow one to explain (a background of 100 rows per customer).

Which one: `method="auto"` (the default) measures each candidate's AUUC on rows its models never saw (never the
test rows) and keeps the most constrained method (METHODS order: rs, s, x, dr, to) whose AUUC is below the best
one's by at most one bootstrap standard error of that gap, paired on the same resampled rows (the
one-standard-error rule): the rule prefers the effect with the fewest free parts unless a freer one is clearly
better. Where the AUUC is measured (`selection`):
- `out_of_fold` (the default): the training and validation rows together, in SELECTION_FOLDS folds stratified by
  treatment and outcome (seeded); each fold's candidates are fitted on the other folds, stopped early on a
  stratified quarter of those (INNER_STOP_SHARE; the held-out fold is never seen by the models that score it),
  and score the held-out fold; each fold's scores become their rank share within the fold (fold models differ in
  scale, e.g. rs's r, and the AUUC reads only the ranking), and one AUUC over all the pooled rows is each
  candidate's. Then only the chosen method is fitted as the final model (training rows, early stopping on the
  validation rows). Why: on Lenta's SMS sample the validation AUUC of 10,000 rows is about as noisy as the
  differences between methods (paired gap standard errors 0.0014-0.0029); 40,000 out-of-fold rows halve them.
  The cost: 2.3-2.8 times the fitting of `validation` (three folds of every candidate on 40% of the rows each;
  the README has the measurements).
- `validation`: every candidate fitted on the training rows and measured on the validation rows.
`methods` narrows the candidates, `method="dr"` (etc.) forces one (no selection is run then).

Why our own code rather than causalml 0.18: causalml's meta-learners would wrap the same LightGBM, but
installing it adds 18 packages (`pip install --dry-run`: xgboost 3.2 with nvidia-nccl-cu12, statsmodels, black,
pathos, seaborn...) and its effect models are not ours, so SHAP reasons would need a second path.
scikit-uplift 0.5.1 (2022) has only T/S-learners and class transformation, and calls a scikit-learn helper
deprecated in 1.8 and removed in 1.10.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from crmscore.models.estimator import CustomerModel, Explanation, Objective, small_data_threads

SHARE_BOUNDS = (0.02, 0.98)  # a treated share outside this leaves too few rows on one side to weigh
# Per-row effects (pseudo-outcomes, imputed effects) are noisy (a purchase is weighed by 1/e, about +-2 at a
# 50/50 split), so an effect model takes larger leaves and fewer of them than an outcome model: it should find
# groups that respond, not rows.
EFFECT_PARAMS: dict[str, Any] = {"num_leaves": 7, "min_child_samples": 100, "lambda_l2": 10.0, "learning_rate": 0.03}
# In order of how freely each lets the effect vary with x (fewest assumptions last): a constant relative effect, a
# treatment split inside one outcome model, then free-form effect models of ever noisier per-row targets.
METHODS = ("rs", "s", "x", "dr", "to")
BOOTSTRAP_RESAMPLES = 200  # of the selection rows, for the standard error of each candidate's gap to the best
SELECTIONS = ("out_of_fold", "validation")  # where the candidates' AUUC is measured (module docstring)
SELECTION_FOLDS = 3
INNER_STOP_SHARE = 0.25  # of a fold's fitting rows, to stop its models early (as validation is to training: 1:3)
METHOD_NAMES = {"dr": "DR-learner", "x": "X-learner", "to": "transformed outcome", "s": "S-learner",
                "rs": "response-scaled"}
# the fitted models each method's lift is made of (saved under these names)
PARTS = {"dr": ("effect",), "to": ("effect",), "x": ("effect_control", "effect_treated"), "s": ("s_model",),
         "rs": ("response",)}
TREATED_COLUMN = "__treated__"  # the S-learner's treatment feature; never a customer feature
BACKGROUND_ROWS = 100  # the S-learner's SHAP background: training rows the base value averages over


class UpliftModel:
    """Meta-learners of the lift. outcome: 'binary' (bought: lift in probability points) or 'regression' (an amount).

    params / num_boost_round: LightGBM settings shared by every model.
    method: 'auto' (AUUC on unseen rows chooses among `methods`, default all of METHODS) or one of METHODS.
    selection: where 'auto' measures the AUUC: 'out_of_fold' (training + validation rows) or 'validation'.
    """

    objective = "uplift"

    def __init__(self, outcome: Objective = "binary", params: dict[str, Any] | None = None,
                 num_boost_round: int = 600, seed: int = 17, method: str = "auto",
                 methods: tuple[str, ...] | list[str] | None = None, selection: str = "out_of_fold"):
        if method not in ("auto", *METHODS):
            raise ValueError(f"uplift method {method!r}: use auto or one of {', '.join(METHODS)}")
        unknown = sorted(set(methods or ()) - set(METHODS))
        if unknown:
            raise ValueError(f"uplift methods {unknown}: choose among {', '.join(METHODS)}")
        if selection not in SELECTIONS:
            raise ValueError(f"uplift selection {selection!r}: use one of {', '.join(SELECTIONS)}")
        self.outcome = outcome
        self.params = params or {}
        self.num_boost_round = num_boost_round
        self.seed = seed
        self.method = method
        self.methods = tuple(methods or METHODS)
        self.selection = selection

    # -- fitting ---------------------------------------------------------------------------------
    def _lgbm(self, kind: Objective, rows: int, calibrate: bool, extra: dict[str, Any] | None = None) -> CustomerModel:
        """One of the learners' LightGBM models: threads for `rows`, `extra` defaults, the caller's params."""
        return CustomerModel(kind, {**small_data_threads(rows), **(extra or {}), **self.params}, self.num_boost_round,
                             calibrate=calibrate)

    def _outcome_model(self, rows: int) -> CustomerModel:
        return self._lgbm(self.outcome, rows, calibrate=True)

    def _effect_model(self, rows: int) -> CustomerModel:
        return self._lgbm("regression", rows, calibrate=False, extra=EFFECT_PARAMS)

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
        """X: features; y: outcome; treated: 1/0. The training and validation rows choose the method (`selection`;
        never the test rows); the final models are fitted on the training rows and stopped early on the validation
        rows."""
        y, t = np.asarray(y, float), np.asarray(treated, float)
        yv, tv = np.asarray(y_valid, float), np.asarray(treated_valid, float)
        X, X_valid = X.reset_index(drop=True), X_valid.reset_index(drop=True)
        candidates = self.methods if self.method == "auto" else (self.method,)
        self.selection_auuc_: dict[str, float] = {}
        self.selection_gap_se_: dict[str, float] = {}
        if len(candidates) > 1 and self.selection == "out_of_fold":
            pool_y, pool_t = np.r_[y, yv], np.r_[t, tv]
            scores = self._out_of_fold_scores(pd.concat([X, X_valid], ignore_index=True), pool_y, pool_t, candidates)
            if not scores:
                raise ValueError(f"no uplift method among {candidates} applies to these rows")
            candidates = (self._choose(pool_y, pool_t, scores),)
        fitted = self._fit_candidates(X, y, t, X_valid, yv, tv, candidates)
        if not fitted:
            raise ValueError(f"no uplift method among {candidates} applies to these rows")
        if len(fitted) > 1:
            self.method_ = self._choose(yv, tv, {m: self._lift(m, parts, X_valid) for m, parts in fitted.items()})
        else:
            self.method_ = next(iter(fitted))
        self.parts_ = fitted[self.method_]  # the other candidates' models are dropped
        return self

    def _fit_candidates(self, X: pd.DataFrame, y: np.ndarray, t: np.ndarray, X_valid: pd.DataFrame, yv: np.ndarray,
                        tv: np.ndarray, candidates: tuple[str, ...], outcomes: bool = True
                        ) -> dict[str, dict[str, CustomerModel]]:
        """The shared outcome models and every candidate's models on these rows (early stopping on the validation
        ones); a method that cannot apply to the rows (rs: no control buyer to scale by) is left out. outcomes=False
        (a fold of the out-of-fold choice) fits the outcome models only when a candidate's lift is built on them
        (x, dr)."""
        X, X_valid = X.reset_index(drop=True), X_valid.reset_index(drop=True)
        self.treated_share_ = float(np.clip(t.mean(), *SHARE_BOUNDS))
        if outcomes or {"x", "dr"} & set(candidates):
            self.control_, self.treated_ = self._pair(X, y, t, X_valid, yv, tv)
        self.code_categories_ = {c: sorted(map(str, X[c].dropna().unique())) for c in X.columns
                                 if not pd.api.types.is_numeric_dtype(X[c])
                                 or isinstance(X[c].dtype, pd.CategoricalDtype)}
        rng = np.random.default_rng(self.seed)
        self.background_ = X.iloc[np.sort(rng.choice(len(X), min(BACKGROUND_ROWS, len(X)), replace=False))]
        fits: dict[str, Callable[..., dict[str, CustomerModel] | None]] = {
            "dr": self._fit_dr, "x": self._fit_x, "to": self._fit_to, "s": self._fit_s, "rs": self._fit_rs}
        fitted: dict[str, dict[str, CustomerModel]] = {}
        for m in candidates:
            parts = fits[m](X, y, t, X_valid, yv, tv)
            if parts is not None:
                fitted[m] = parts
        return fitted

    def _out_of_fold_scores(self, X: pd.DataFrame, y: np.ndarray, t: np.ndarray,
                            candidates: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Each candidate's score of every row from models that never saw it: SELECTION_FOLDS folds stratified by
        treatment and outcome; per fold, the candidates are fitted on the other folds less a stratified
        INNER_STOP_SHARE that stops them early, and the held-out fold's scores become rank shares (0-1] within
        the fold. A method that does not apply in some fold is left out."""
        from scipy.stats import rankdata
        from sklearn.model_selection import StratifiedKFold, train_test_split

        strata = t.astype(int) * 2 + (y > 0).astype(int)
        scores = {m: np.full(len(y), np.nan) for m in candidates}
        folds = StratifiedKFold(SELECTION_FOLDS, shuffle=True, random_state=self.seed)
        for fit_rows, held in folds.split(np.zeros(len(y)), strata):
            inner, stop = train_test_split(fit_rows, test_size=INNER_STOP_SHARE, stratify=strata[fit_rows],
                                           random_state=self.seed)
            fold = UpliftModel(self.outcome, self.params, self.num_boost_round, self.seed, methods=candidates,
                               selection="validation")
            fitted = fold._fit_candidates(X.iloc[inner], y[inner], t[inner], X.iloc[stop], y[stop], t[stop],
                                          candidates, outcomes=False)
            for m, parts in fitted.items():
                scores[m][held] = rankdata(fold._lift(m, parts, X.iloc[held])) / len(held)
        return {m: v for m, v in scores.items() if not np.isnan(v).any()}

    def _choose(self, y: np.ndarray, t: np.ndarray, scores: dict[str, np.ndarray]) -> str:
        """The one-standard-error rule (Breiman et al. 1984) with a paired standard error, on rows the candidates'
        models never saw (out-of-fold or validation): the first method in METHODS order (the most constrained
        effect) whose AUUC is below the best's by no more than one bootstrap standard error of that gap (both
        measured on the same resampled rows). An AUUC of 10,000 rows moves by about half its own size between
        resamples, so taking the largest alone follows the noise; the paired gap still tells a ranking that differs
        in kind (a freer effect model that finds a planted segment) from one that differs by chance. Records
        `selection_auuc_` and `selection_gap_se_`."""
        from crmscore.models.uplift_evaluation import auuc

        self.selection_auuc_ = {m: auuc(y, t, s) for m, s in scores.items()}
        best = max(scores, key=lambda m: self.selection_auuc_[m])
        rng = np.random.default_rng(self.seed)
        gaps: dict[str, list[float]] = {m: [] for m in scores}
        for _ in range(BOOTSTRAP_RESAMPLES):
            i = rng.integers(0, len(y), len(y))
            top = auuc(y[i], t[i], scores[best][i])
            for m in scores:
                gaps[m].append(top - auuc(y[i], t[i], scores[m][i]) if m != best else 0.0)
        self.selection_gap_se_ = {m: float(np.std(g, ddof=1)) for m, g in gaps.items()}
        return next(m for m in METHODS if m in scores
                    and self.selection_auuc_[best] - self.selection_auuc_[m] <= self.selection_gap_se_[m])

    def _fit_dr(self, X, y, t, X_valid, yv, tv) -> dict[str, CustomerModel]:
        fold = np.random.default_rng(self.seed).integers(0, 2, len(X))
        phi = np.empty(len(X))
        for k in (0, 1):  # cross-fitting: each half's pseudo-outcomes from models of the other half
            out, inside = fold != k, fold == k
            mu0, mu1 = self._pair(X[out], y[out], t[out], X_valid, yv, tv)
            phi[inside] = self.pseudo_outcomes(X[inside], y[inside], t[inside], mu0, mu1)
        phi_valid = self.pseudo_outcomes(X_valid, yv, tv, self.control_, self.treated_)
        return {"effect": self._effect_model(len(X)).fit(X, phi, X_valid, phi_valid)}

    def _fit_x(self, X, y, t, X_valid, yv, tv) -> dict[str, CustomerModel]:
        """tau0 on control rows' D0 = mu1(x) - y, tau1 on treated rows' D1 = y - mu0(x) (validation alike)."""
        c, tr, cv, tvm = t == 0, t == 1, tv == 0, tv == 1
        d0 = self.treated_.predict(X[c]) - y[c]
        d1 = y[tr] - self.control_.predict(X[tr])
        d0v = self.treated_.predict(X_valid[cv]) - yv[cv]
        d1v = yv[tvm] - self.control_.predict(X_valid[tvm])
        return {"effect_control": self._effect_model(int(c.sum())).fit(X[c], d0, X_valid[cv], d0v),
                "effect_treated": self._effect_model(int(tr.sum())).fit(X[tr], d1, X_valid[tvm], d1v)}

    def _fit_to(self, X, y, t, X_valid, yv, tv) -> dict[str, CustomerModel]:
        e = self.treated_share_
        return {"effect": self._effect_model(len(X)).fit(X, y * (t - e) / (e * (1 - e)), X_valid,
                                                         yv * (tv - e) / (e * (1 - e)))}

    def _fit_s(self, X, y, t, X_valid, yv, tv) -> dict[str, CustomerModel]:
        """One outcome model on every row with the treatment as a feature (uncalibrated: its probability is
        exactly sigmoid of the booster's margin, which the interventional SHAP explains)."""
        m = self._lgbm(self.outcome, len(X), calibrate=False)
        return {"s_model": m.fit(self._s_frame(X, t), y, self._s_frame(X_valid, tv), yv)}

    def _fit_rs(self, X, y, t, X_valid, yv, tv) -> dict[str, CustomerModel] | None:
        """One response model of every row and the relative effect r of the training rows. The response model is a
        least-squares regression (of 0/1 for a purchase): its prediction is the sum of its trees, so TreeSHAP of
        it is exact in the lift's own units at the cost of one pass (a binary model's probability would need the
        interventional explainer, about 100 times slower per customer)."""
        control_mean = float(y[t == 0].mean()) if (t == 0).any() else 0.0
        if control_mean <= 0 or not (t == 1).any():
            return None
        r = float(y[t == 1].mean()) / control_mean - 1
        self.response_scale_ = r / (1 + r * self.treated_share_)
        m = self._lgbm("regression", len(X), calibrate=False)
        return {"response": m.fit(X, y, X_valid, yv)}

    def _codes_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """Categories as their codes in training order (shap's interventional TreeSHAP cannot follow LightGBM's
        categorical splits, so the S-learner splits on codes)."""
        out = X.copy()
        for c, levels in self.code_categories_.items():
            codes = pd.Categorical(X[c].astype("string").astype(object).where(X[c].notna(), None), categories=levels).codes
            out[c] = np.where(codes >= 0, codes, np.nan).astype(float)
        return out

    def _s_frame(self, X: pd.DataFrame, treated: Any) -> pd.DataFrame:
        """The S-learner's input: the codes frame and the treatment column."""
        return self._codes_frame(X).assign(**{TREATED_COLUMN: np.broadcast_to(np.asarray(treated, float), len(X))})

    # -- the estimator contract shared with CustomerModel -----------------------------------------
    @property
    def _first_part(self) -> CustomerModel:
        return next(iter(self.parts_.values()))

    @property
    def feature_names_(self) -> list[str]:
        return [c for c in self._first_part.feature_names_ if c != TREATED_COLUMN]

    @property
    def categories_(self) -> dict[str, list[str]]:
        return self.code_categories_ if self.method_ == "s" else self._first_part.categories_

    @property
    def best_iteration_(self) -> int:
        return max(m.best_iteration_ for m in self.parts_.values())

    @property
    def link(self) -> str:
        return "identity"

    def _encode(self, X: pd.DataFrame) -> pd.DataFrame:
        """The features as the lift's explanation reads them: numbers as float, categories as Categorical."""
        if self.method_ == "s":
            out = self._first_part._encode(self._s_frame(X, 0.0))[self.feature_names_]
            for c, levels in self.code_categories_.items():
                out[c] = pd.Categorical.from_codes(out[c].fillna(-1).astype(int), categories=levels)
            return out
        return self._first_part._encode(X)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Each row's expected lift: outcome if treated minus outcome if not (points of probability or currency)."""
        return self._lift(self.method_, self.parts_, X)

    def _lift(self, method: str, p: dict[str, CustomerModel], X: pd.DataFrame) -> np.ndarray:
        """The lift of `method` made of its fitted models `p` (predict's, for any candidate)."""
        e = self.treated_share_
        if method == "s":
            m = p["s_model"]
            return m.predict(self._s_frame(X, 1.0)) - m.predict(self._s_frame(X, 0.0))
        if method == "x":
            return e * p["effect_control"].predict(X) + (1 - e) * p["effect_treated"].predict(X)
        if method == "rs":
            return self.response_scale_ * p["response"].predict(X)
        return p["effect"].predict(X)

    def outcomes(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(without the campaign, with it): each row's predicted outcome under control and under treatment."""
        return self.control_.predict(X), self.treated_.predict(X)

    def explain(self, X: pd.DataFrame) -> Explanation:
        """SHAP of the lift: base_value + contributions = the lift (identity link); per method as the module
        docstring says (TreeSHAP of the effect or response model(s), or interventional TreeSHAP for s)."""
        p, e = self.parts_, self.treated_share_
        if self.method_ in ("dr", "to"):
            return p["effect"].explain(X)
        if self.method_ == "x":
            a, b = p["effect_control"].explain(X), p["effect_treated"].explain(X)
            contributions = e * a.contributions + (1 - e) * b.contributions
            base = e * a.base_value + (1 - e) * b.base_value
            return Explanation(contributions, base, base + contributions.sum(1), self.feature_names_, "identity")
        if self.method_ == "rs":
            a = p["response"].explain(X)
            k = self.response_scale_
            return Explanation(k * a.contributions, k * a.base_value, k * a.margin, self.feature_names_, "identity")
        v1, b1 = self._interventional(p["s_model"], lambda d: self._s_frame(d, 1.0), X)
        v0, b0 = self._interventional(p["s_model"], lambda d: self._s_frame(d, 0.0), X)
        contributions, base = v1 - v0, b1 - b0
        return Explanation(contributions, base, base + contributions.sum(1), self.feature_names_, "identity")

    def _interventional(self, m: CustomerModel, frame: Callable[[pd.DataFrame], pd.DataFrame],
                        X: pd.DataFrame) -> tuple[np.ndarray, float]:
        """Interventional TreeSHAP of m's prediction (probability for a binary outcome) against the background:
        (contributions of the customer features, base value); a treatment column gets none (held equal)."""
        import shap

        explainer = shap.TreeExplainer(m.booster_, data=m._encode(frame(self.background_)),
                                       feature_perturbation="interventional",
                                       model_output="probability" if self.outcome == "binary" else "raw")
        values = np.asarray(explainer.shap_values(m._encode(frame(X)))).reshape(len(X), -1)
        keep = [i for i, c in enumerate(m.feature_names_) if c != TREATED_COLUMN]
        return values[:, keep], float(np.ravel(explainer.expected_value)[-1])

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.control_.save(path / "control")
        self.treated_.save(path / "treated")
        for name, m in self.parts_.items():
            m.save(path / name)
        if self.method_ == "s":
            self.background_.to_parquet(path / "background.parquet", index=False)
        meta = {"objective": self.objective, "outcome": self.outcome, "params": self.params,
                "num_boost_round": self.num_boost_round, "seed": self.seed, "treated_share": self.treated_share_,
                "method": self.method, "methods": list(self.methods), "selection": self.selection,
                "chosen_method": self.method_, "selection_auuc": self.selection_auuc_,
                "selection_gap_se": self.selection_gap_se_, "s_categories": self.code_categories_,
                "response_scale": getattr(self, "response_scale_", None)}
        (path / "model.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> UpliftModel:
        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        # bundles before out-of-fold selection chose on the validation rows and kept `validation_auuc`
        model = cls(meta["outcome"], meta["params"], meta["num_boost_round"], meta["seed"], meta.get("method", "dr"),
                    meta.get("methods"), meta.get("selection", "validation"))
        model.treated_share_ = meta["treated_share"]
        model.method_ = meta.get("chosen_method", "dr")
        model.selection_auuc_ = meta.get("selection_auuc", meta.get("validation_auuc", {}))
        model.selection_gap_se_ = meta.get("selection_gap_se", meta.get("validation_gap_se", {}))
        model.code_categories_ = meta.get("s_categories", {})
        model.response_scale_ = meta.get("response_scale")
        model.control_ = CustomerModel.load(path / "control")
        model.treated_ = CustomerModel.load(path / "treated")
        model.parts_ = {name: CustomerModel.load(path / name) for name in PARTS[model.method_]}
        if model.method_ == "s":
            model.background_ = pd.read_parquet(path / "background.parquet")
        return model
