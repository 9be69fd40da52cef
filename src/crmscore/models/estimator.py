"""The one estimator every task uses: LightGBM on a customer feature table, with Platt calibration
fitted out-of-time for binary tasks and TreeSHAP explanations.

scikit-learn conventions: `__init__` stores settings; `fit` learns and returns self; learned state ends
in `_`. Categorical columns (text) get fixed category levels at fit time, so a single customer at
serving time is encoded exactly as in training; an unseen level becomes missing.

Why Platt (a logistic curve on the model's log-odds) rather than isotonic: it is monotone and smooth,
so each reason's probability change is well defined and a small contribution never maps to zero.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd

from crmscore.models.treeshap import ShapTables, input_matrix

log = logging.getLogger(__name__)

Objective = Literal["binary", "tweedie", "regression", "quantile"]
LOG_LINK = ("tweedie", "poisson", "gamma")  # objectives whose raw score is the log of the prediction

DEFAULT_PARAMS: dict[str, Any] = {
    # Shallow trees keep TreeSHAP cheap (cost grows with trees x leaves x depth^2) at no loss of accuracy on
    # tabular customer data; see the README's "Model shape" section for the measurements.
    "learning_rate": 0.05,
    "num_leaves": 15,
    "max_depth": 5,
    "min_child_samples": 40,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10,
    "min_data_per_group": 50,
    "verbosity": -1,
    "num_threads": 2,
    "seed": 17,
    "deterministic": True,
    "force_row_wise": True,
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Explanation:
    """SHAP contributions of a batch in the score's own space (crmscore.explain.effects defines the spaces).

    contributions: (n_rows, n_features); base_value: scalar; margin: base_value + contributions.sum(1) per row;
    link: how the margin maps to the score: 'logit' (binary: the calibrated log-odds, score = sigmoid(margin)),
    'log' (Tweedie and other log-link objectives: the log of the predicted amount, score = exp(margin)) or
    'identity' (score = margin).
    """

    contributions: np.ndarray
    base_value: float
    margin: np.ndarray
    feature_names: list[str]
    link: str = "identity"

    def scores(self) -> np.ndarray:
        """The score of each row from its margin (probability, amount or value)."""
        from crmscore.models.space import inverse_link

        return inverse_link(self.link, self.margin)

    def top_indices(self, k: int) -> np.ndarray:
        """Per row, the k features with the largest |contribution|, largest first, ties in column order: (n_rows, k)."""
        from crmscore.models.space import reason_orders

        return reason_orders(self.contributions, k)


class CustomerModel:
    """LightGBM on customer features.

    objective: 'binary' (probabilities, calibrated) or a regression objective such as 'tweedie'.
    params: LightGBM parameters over DEFAULT_PARAMS, plus `monotone`: {feature name: +1 | -1}, the direction
        the score must move with that feature (LightGBM's monotone_constraints, by name; features not
        in the table are ignored, so one setting serves feature sets with and without them).
        num_boost_round / early_stopping_rounds: boosting.
    calibrate: fit Platt scaling on the validation rows (binary only).
    """

    def __init__(self, objective: Objective = "binary", params: dict[str, Any] | None = None,
                 num_boost_round: int = 600, early_stopping_rounds: int = 50, calibrate: bool = True):
        self.objective = objective
        self.params = params or {}
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.calibrate = calibrate

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: np.ndarray | pd.Series, X_valid: pd.DataFrame | None = None,
            y_valid: np.ndarray | pd.Series | None = None, sample_weight: np.ndarray | None = None) -> CustomerModel:
        self.feature_names_ = [str(c) for c in X.columns]
        dtypes = X.dtypes  # once: a column lookup per feature cost more than the rest of a small fit's set-up
        self.categories_ = {
            c: sorted(map(str, X[c].dropna().unique()))
            for c in X.columns
            if not pd.api.types.is_numeric_dtype(dtypes[c]) or isinstance(dtypes[c], pd.CategoricalDtype)
        }
        params = {**DEFAULT_PARAMS, **self.params, "objective": self.objective}
        monotone = params.pop("monotone", None)
        if monotone:
            params["monotone_constraints"] = [int(monotone.get(c, 0)) for c in self.feature_names_]
        if self.objective == "binary":
            params.setdefault("metric", "binary_logloss")
        Xe = self._encode(X)
        train = lgb.Dataset(Xe, label=np.asarray(y, dtype=float), weight=sample_weight,
                            categorical_feature=list(self.categories_) or "auto", free_raw_data=False)
        valid_sets, callbacks = [], [lgb.log_evaluation(0)]
        if X_valid is not None and y_valid is not None and len(X_valid):
            valid = lgb.Dataset(self._encode(X_valid), label=np.asarray(y_valid, dtype=float), reference=train)
            valid_sets = [valid]
            callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        self.booster_ = lgb.train(params, train, num_boost_round=self.num_boost_round, valid_sets=valid_sets,
                                  callbacks=callbacks)
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        self.calibration_ = (1.0, 0.0)
        if self.objective == "binary" and self.calibrate and valid_sets:
            self.calibration_ = _fit_platt(self.decision_function(X_valid), np.asarray(y_valid, dtype=float))
        log.debug("fitted %d trees (best iteration %d), calibration %s", self.booster_.current_iteration(),
                  self.best_iteration_, self.calibration_)
        return self

    def _check(self) -> None:
        if not hasattr(self, "booster_"):
            raise RuntimeError("this CustomerModel is not fitted yet: call fit() first")

    def _encode(self, X: pd.DataFrame) -> pd.DataFrame:
        """Columns in training order; categoricals with the training levels; numbers as float."""
        missing = [c for c in getattr(self, "feature_names_", X.columns) if c not in X.columns]
        if missing:
            raise ValueError(f"missing feature columns: {missing}")
        names = list(getattr(self, "feature_names_", X.columns))
        categories = getattr(self, "categories_", {})
        # plain numpy numbers convert as one block: column by column, pandas' overhead (a few tenths of a ms a
        # column) was a large share of a fit on a few thousand rows, and the uplift learners encode the same rows
        # many times
        dtypes = X.dtypes
        plain = [c for c in names
                 if c not in categories and isinstance(dtypes[c], np.dtype) and dtypes[c].kind in "biuf"]
        out = pd.DataFrame(X[plain].to_numpy(np.float64), columns=plain, index=X.index)
        for c in names:
            if c in categories:
                text = X[c].astype("string").to_numpy(dtype=object, na_value=None)
                codes = pd.Index(categories[c], dtype=object).get_indexer(text)  # -1: missing or unseen level
                out[c] = pd.Categorical.from_codes(codes, categories=categories[c])
            elif c not in out:
                out[c] = pd.to_numeric(X[c], errors="coerce").astype("float64").to_numpy()
        return out[names]

    # -- predicting ------------------------------------------------------------------------------
    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The booster's raw score (log-odds for binary), before calibration."""
        self._check()
        return self.booster_.predict(self._encode(X), raw_score=True, num_iteration=self.best_iteration_)

    def calibrated_logit(self, raw: np.ndarray) -> np.ndarray:
        a, b = self.calibration_
        return a * raw + b

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n_rows, 2) calibrated class probabilities for binary tasks."""
        if self.objective != "binary":
            raise TypeError(f"predict_proba is for binary tasks; this model's objective is {self.objective}")
        p = _sigmoid(self.calibrated_logit(self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability (binary) or the predicted value (regression objectives)."""
        if self.objective == "binary":
            return self.predict_proba(X)[:, 1]
        self._check()
        return self.booster_.predict(self._encode(X), num_iteration=self.best_iteration_)

    @property
    def link(self) -> str:
        """How the explanation's margin maps to the prediction: 'logit', 'log' or 'identity'."""
        if self.objective == "binary":
            return "logit"
        return "log" if self.objective in LOG_LINK else "identity"

    def explain(self, X: pd.DataFrame) -> Explanation:
        """TreeSHAP contributions (shap_values: exact, LightGBM's pred_contrib or its tables) in the score's
        own space.

        Binary: the booster's log-odds scaled through the Platt calibration (score = sigmoid(a * raw + b), so
        each contribution is a * c_i and the base value a * base + b): base_value + sum = logit(score).
        Log-link objectives: the log of the predicted amount, exp(base_value + sum) = prediction."""
        self._check()
        return self.explanation(self.shap_values(self._encode(X)))

    def shap_values(self, X: pd.DataFrame | np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """What `booster_.predict(X, pred_contrib=True)` returns for encoded rows (_encode's frame or the
        booster's input matrix): (rows, features + 1), the base value last, in the booster's raw scale.
        Computed from the trees' TreeSHAP tables (crmscore.models.treeshap: exact, tens of times cheaper)
        when they apply to this booster, else by pred_contrib itself. num_threads: default the model's."""
        self._check()
        tables = self.shap_tables()
        if tables is not None:
            threads = num_threads or self.params.get("num_threads") or DEFAULT_PARAMS["num_threads"]
            return tables.contributions(input_matrix(X), num_threads=int(threads))
        given = {} if num_threads is None else {"num_threads": num_threads}
        return np.asarray(self.booster_.predict(X, pred_contrib=True, num_iteration=self.best_iteration_, **given))

    def shap_tables(self) -> ShapTables | None:
        """The booster's TreeSHAP tables (None: pred_contrib explains it), built once per booster and
        iteration count (a few hundred ms for hundreds of small trees)."""
        self._check()
        cached = getattr(self, "_shap_tables", None)
        if cached is None or cached[0] is not self.booster_ or cached[1] != self.best_iteration_:
            cached = (self.booster_, self.best_iteration_, ShapTables.of(self.booster_, self.best_iteration_))
            self._shap_tables = cached
        return cached[2]

    @property
    def shap_engine(self) -> str:
        """'tables' (crmscore.models.treeshap) or 'pred_contrib': what shap_values runs for this booster."""
        return "tables" if self.shap_tables() is not None else "pred_contrib"

    def explanation(self, contrib: np.ndarray) -> Explanation:
        """An Explanation from the booster's pred_contrib output ((n_rows, n_features + 1), the base value
        last, in the booster's raw scale), moved into the score's space: the one place the calibration
        enters an explanation, shared by batch scoring and the service's numpy path."""
        contrib = np.asarray(contrib, dtype=float)
        values, base = contrib[:, :-1], contrib[:, -1]
        base_value = float(base[0]) if len(base) else 0.0
        raw = values.sum(1) + base
        if self.objective == "binary":
            a, b = self.calibration_
            values, base_value, raw = a * values, a * base_value + b, self.calibrated_logit(raw)
        return Explanation(values, base_value, raw, self.feature_names_, self.link)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """The prediction from the booster's raw score: calibrated probability (binary), exp(raw) for log-link
        objectives (Tweedie: expected amount), else the raw score itself."""
        raw = np.asarray(raw, dtype=float)
        if self.objective == "binary":
            return _sigmoid(self.calibrated_logit(raw))
        if self.objective in LOG_LINK:
            return np.exp(raw)
        return raw

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        self._check()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "booster.txt").write_text(self.booster_.model_to_string(num_iteration=self.best_iteration_))
        meta = {"objective": self.objective, "params": self.params, "num_boost_round": self.num_boost_round,
                "early_stopping_rounds": self.early_stopping_rounds, "calibrate": self.calibrate,
                "feature_names": self.feature_names_, "categories": self.categories_,
                "calibration": list(self.calibration_), "best_iteration": self.best_iteration_}
        (path / "model.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> CustomerModel:
        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        model = cls(meta["objective"], meta["params"], meta["num_boost_round"], meta["early_stopping_rounds"],
                    meta["calibrate"])
        model.booster_ = lgb.Booster(model_str=(path / "booster.txt").read_text())
        model.feature_names_ = meta["feature_names"]
        model.categories_ = meta["categories"]
        model.calibration_ = tuple(meta["calibration"])
        model.best_iteration_ = meta["best_iteration"]
        return model


SMALL_DATA_ROWS = 50_000


def small_data_threads(rows: int) -> dict[str, Any]:
    """One LightGBM thread for small training sets fitted many times over (a model per category, quantile
    companions): on 2 cores a busy second core made a 2-thread fit of 2,000 rows 10x slower (threads spin
    waiting for each other), while one thread loses little on small data."""
    return {"num_threads": 1} if rows < SMALL_DATA_ROWS else {}


class MultiLabelModel:
    """One calibrated binary CustomerModel per target (next category), all on the same feature rows.

    targets: target names, the column order of `predict`. Other arguments as CustomerModel's. A target
    with no positive (or no negative) training row gets no model: its probability is the training rate.
    """

    objective = "multilabel"

    def __init__(self, targets: list[str], params: dict[str, Any] | None = None, num_boost_round: int = 600,
                 early_stopping_rounds: int = 50, calibrate: bool = True):
        self.targets = list(targets)
        self.params = params or {}
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.calibrate = calibrate

    def fit(self, X: pd.DataFrame, Y: pd.DataFrame, X_valid: pd.DataFrame | None = None,
            Y_valid: pd.DataFrame | None = None) -> MultiLabelModel:
        """Y / Y_valid: one 0/1 column per target, named as the targets."""
        self.models_: dict[str, CustomerModel] = {}
        self.rates_ = {t: float(np.asarray(Y[t], float).mean()) for t in self.targets}
        params = {**small_data_threads(len(X)), **self.params}
        for t in self.targets:
            y = np.asarray(Y[t], float)
            if 0 < y.sum() < len(y):
                self.models_[t] = CustomerModel("binary", params, self.num_boost_round,
                                                self.early_stopping_rounds, self.calibrate).fit(
                    X, y, X_valid, None if Y_valid is None else Y_valid[t])
            else:
                log.warning("target %s has %d positives in %d training rows: predicting its rate", t, int(y.sum()),
                            len(y))
        if not self.models_:
            raise ValueError("no target has both positive and negative training rows")
        first = next(iter(self.models_.values()))
        self.feature_names_ = first.feature_names_
        self.categories_ = first.categories_
        self.best_iteration_ = int(round(np.mean([m.best_iteration_ for m in self.models_.values()])))
        return self

    def _check(self) -> None:
        if not hasattr(self, "models_"):
            raise RuntimeError("this MultiLabelModel is not fitted yet: call fit() first")

    def _encode(self, X: pd.DataFrame) -> pd.DataFrame:
        self._check()
        return next(iter(self.models_.values()))._encode(X)

    def head(self, target: str) -> CustomerModel | None:
        """The target's binary model (None when the target is predicted by its training rate)."""
        self._check()
        return self.models_.get(target)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """(n_rows, n_targets) calibrated probabilities, columns in target order."""
        Xe = self._encode(X)
        out = np.empty((len(X), len(self.targets)))
        for j, t in enumerate(self.targets):
            m = self.models_.get(t)
            if m is None:
                out[:, j] = self.rates_[t]
            else:
                out[:, j] = m.transform(m.booster_.predict(Xe, raw_score=True, num_iteration=m.best_iteration_))
        return out

    def explain(self, X: pd.DataFrame, target: str | None = None) -> Explanation:
        """TreeSHAP of one target's model (default: the most frequent target)."""
        target = target or max(self.models_, key=lambda t: self.rates_[t])
        head = self.head(target)
        if head is None:
            raise ValueError(f"target {target!r} has no model (too few positives in training)")
        return head.explain(X)

    def save(self, path: str | Path) -> Path:
        self._check()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(self.targets):
            if t in self.models_:
                self.models_[t].save(path / f"target_{i:03d}")
        meta = {"objective": self.objective, "targets": self.targets, "params": self.params,
                "num_boost_round": self.num_boost_round, "early_stopping_rounds": self.early_stopping_rounds,
                "calibrate": self.calibrate, "rates": self.rates_, "fitted": [t in self.models_ for t in self.targets]}
        (path / "model.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> MultiLabelModel:
        path = Path(path)
        meta = json.loads((path / "model.json").read_text())
        model = cls(meta["targets"], meta["params"], meta["num_boost_round"], meta["early_stopping_rounds"],
                    meta["calibrate"])
        model.rates_ = meta["rates"]
        model.models_ = {t: CustomerModel.load(path / f"target_{i:03d}")
                         for i, (t, fitted) in enumerate(zip(meta["targets"], meta["fitted"])) if fitted}
        first = next(iter(model.models_.values()))
        model.feature_names_, model.categories_ = first.feature_names_, first.categories_
        model.best_iteration_ = int(round(np.mean([m.best_iteration_ for m in model.models_.values()])))
        return model


def load_estimator(path: str | Path) -> CustomerModel | MultiLabelModel:
    """A saved CustomerModel or MultiLabelModel, whichever the folder holds."""
    meta = json.loads((Path(path) / "model.json").read_text())
    return (MultiLabelModel if meta["objective"] == "multilabel" else CustomerModel).load(path)


def _fit_platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic regression of the label on the raw score: p = sigmoid(a * raw + b)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])
