"""A trained model with everything needed to score and explain customers the way it was trained:
the estimator, the feature set (or feature-table columns), the RFM scale, decile edges, settings,
companion models and evaluation facts. Saved as a folder; logged to MLflow inside the pyfunc model.

What `score` returns depends on the kind of model (see crmscore.models.tasks):
- binary (churn, next-purchase): `score` is the calibrated probability;
- regression (expected-spend): `score` is the predicted amount (currency);
- multilabel (next-category): `score` is the top category's probability, `top_category` and
  `next_categories` the ranked list; reasons explain the top category.
- uplift (uplift-<campaign>): `score` is the expected lift (outcome if treated minus if not: points of
  probability, or currency), with `p_control` and `p_treated` (the outcome without and with the campaign) and
  `quadrant` (crmscore.models.quadrants); reasons explain the lift (SHAP of the DR-learner's effect model).
Companions (next-purchase's days to next purchase) add `<name>`, `<name>_low` and `<name>_high`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmscore.features.definitions import FeatureSet, category_orders_name, slug
from crmscore.models.estimator import CustomerModel, Explanation, MultiLabelModel, load_estimator
from crmscore.models.feature_table import TableSchema
from crmscore.features.segments import SEGMENT_COLUMNS, RFMScorer

Mode = Literal["transactions", "feature_table"]


@dataclass
class CompanionModels:
    """Quantile models of one companion output (low, median, high), with the bounds predictions are clipped
    to (days to next purchase: 0 to the horizon)."""

    name: str
    quantiles: tuple[float, float, float]
    models: list[CustomerModel]
    bounds: tuple[float, float | None] = (0.0, None)

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        """Columns `<name>` (median), `<name>_low` and `<name>_high`, ordered low <= median <= high."""
        q = np.sort(np.column_stack([m.predict(df) for m in self.models]), axis=1)
        q = np.clip(q, self.bounds[0], self.bounds[1] if self.bounds[1] is not None else np.inf)
        return pd.DataFrame({self.name: q[:, 1], f"{self.name}_low": q[:, 0], f"{self.name}_high": q[:, 2]},
                            index=df.index)


@dataclass(frozen=True)
class ExplainedRows:
    """Rows of a scored frame (positions) with the explanation of their score and how a reason's effect reads
    for them (multilabel: the top category's words)."""

    rows: np.ndarray
    explanation: Explanation
    reason_up: str
    reason_down: str


@dataclass
class TrainedModel:
    """The model: one trained estimator with everything needed to score and explain customers the way it was
    trained (feature set or feature-table typing, decile edges, RFM scale, settings, companion models and the
    run's facts in `info`). The training pipeline makes it, the registry saves it as the `bundle` artifact of
    an MLflow model, and every scoring path (batch files, the service, the operations page) scores with it.
    The two other model classes only carry it: TrainedModelPyfunc (crmscore.models.pyfunc) is its MLflow
    pyfunc face for tools outside crmscore, ServedModel (crmscore.scoring.runtime) is a registered version of
    it as the service serves it."""

    task: str
    mode: Mode
    model: CustomerModel | MultiLabelModel
    feature_set: FeatureSet
    settings: dict[str, Any]
    reason_up: str
    reason_down: str
    decile_edges: list[float] = field(default_factory=list)
    rfm: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # trained_at, cutoffs, digests, metrics...
    companions: dict[str, CompanionModels] = field(default_factory=dict)
    table_schema: TableSchema | None = None  # feature tables: the training typing, applied again at scoring

    @property
    def features(self) -> list[str]:
        return self.model.feature_names_

    @property
    def kind(self) -> str:
        """'binary', 'regression' or 'multilabel'."""
        if isinstance(self.model, MultiLabelModel):
            return "multilabel"
        if self.model.objective == "uplift":
            return "uplift"
        return "binary" if self.model.objective == "binary" else "regression"

    @property
    def targets(self) -> list[str]:
        """Multilabel models: the target categories, in column order of predict()."""
        return list(self.model.targets) if isinstance(self.model, MultiLabelModel) else []

    @property
    def primary_metric(self) -> str:
        return self.info.get("primary_metric", "roc_auc")

    def read_features(self) -> list[str]:
        """Every feature scoring this model reads: its inputs (and its companions'), and, for transaction
        models, `recency_days` (the population rule) and the RFM scale's columns (its segments)."""
        names = list(self.features)
        for comp in self.companions.values():
            names += [n for m in comp.models for n in m.feature_names_]
        if self.mode == "transactions":
            names.append("recency_days")
            scorer = self.rfm_scorer()
            names += list(scorer.columns.values()) if scorer else []
        return list(dict.fromkeys(names))

    def feature_definitions(self) -> dict[str, str]:
        """{feature: definition hash} of every feature this model reads from the online store (empty for a
        model trained on a ready feature table: its TableSchema types what it is sent). Recorded at
        registration (`info["feature_definitions"]`); a model registered before that has them computed from
        the declarations saved with it, which give the same hashes."""
        if self.mode != "transactions":
            return {}
        recorded = self.info.get("feature_definitions")
        if recorded:
            return dict(recorded)
        return self.feature_set.definitions(self.read_features())

    def rfm_scorer(self) -> RFMScorer | None:
        return RFMScorer.from_dict(self.rfm) if self.rfm else None

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Per row of a feature frame (columns by name; extra columns ignored): the calibrated probability
        (binary), the predicted amount (regression) or an (n_rows, n_targets) probability matrix (multilabel;
        blended with the co-purchase rules' score when the settings' copurchase_blend is above 0)."""
        pred = self.model.predict(df)
        weight = float(self.settings.get("copurchase_blend", 0.0) or 0.0)
        rules = self.info.get("copurchase")
        if self.kind == "multilabel" and weight > 0 and rules:
            pred = blend_copurchase(pred, df, self.targets, rules, weight)
        repeat = float(self.settings.get("repeat_blend", 0.0) or 0.0)
        if self.kind == "multilabel" and repeat > 0:
            pred = blend_repeat(pred, df, self.targets, repeat)
        return pred

    def evaluate(self, test: pd.DataFrame) -> float:
        """The primary metric on labelled rows (a logged test set): ROC-AUC, normalised Gini or hit rate at 3."""
        from crmscore.models.evaluation import multilabel_metrics, normalized_gini, ranking_metrics

        pred = self.predict(test)
        if self.kind == "uplift":
            from crmscore.models.uplift_evaluation import uplift_metrics

            return uplift_metrics(test["label"], test["treated"], pred)["qini"]
        if self.kind == "multilabel":
            Y = label_matrix(test, self.targets).to_numpy(float)
            return multilabel_metrics(Y, pred)[self.primary_metric]
        if self.kind == "regression":
            return normalized_gini(test["label"].to_numpy(float), pred)
        return ranking_metrics(test["label"].to_numpy(), pred)[self.primary_metric]

    def cross_sell_mask(self, df: pd.DataFrame) -> np.ndarray:
        """Multilabel: (n_rows, n_targets) True where a category is left out of the cross-sell list: bought in
        the last `cross_sell_lookback_days` before the cutoff when that setting is given (its days-since-bought
        feature), otherwise bought regularly (regular_mask)."""
        lookback = self.settings.get("cross_sell_lookback_days")
        if lookback is None:
            return self.regular_mask(df)
        cols = [f"category_recency_{slug(t)}" for t in self.targets]
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"feature columns {missing[:3]} are missing: cross_sell_lookback_days needs the "
                             f"per-category purchase history (history_windows must not be [])")
        return df[cols].to_numpy(float) <= float(lookback)  # NaN (never bought) compares False

    def regular_mask(self, df: pd.DataFrame) -> np.ndarray:
        """Multilabel: (n_rows, n_targets) True where the customer buys the category regularly: at least
        `regular_share` of spend on it in the last 365 days, over at least `regular_min_orders` orders with
        it (its purchase-history feature over the feature set's longest window, the one its order share
        uses; models without those features count all of the customer's orders in the window)."""
        share_min = float(self.settings.get("regular_share", 0.2))
        orders_min = float(self.settings.get("regular_min_orders", 3))
        freq_col = next((c for c in ("frequency_365d", "frequency_total") if c in df.columns), None)
        enough = (df[freq_col].fillna(0).to_numpy(float) >= orders_min) if freq_col else np.zeros(len(df), bool)
        longest = max(self.feature_set.windows, default=0)
        mask = np.zeros((len(df), len(self.targets)), bool)
        for j, t in enumerate(self.targets):
            col = f"category_share_{slug(t)}"
            if col not in df.columns:
                continue
            orders_col = category_orders_name(t, longest)
            orders = (df[orders_col].fillna(0).to_numpy(float) >= orders_min) if orders_col in df else enough
            mask[:, j] = orders & (df[col].fillna(0).to_numpy(float) >= share_min)
        return mask

    def deciles(self, scores: np.ndarray) -> np.ndarray:
        """1 = the highest-scoring tenth of the population the model was tested on, 10 = the lowest."""
        if not self.decile_edges:
            return np.full(len(scores), 0, dtype=np.int64)
        return (10 - np.searchsorted(np.asarray(self.decile_edges), scores, side="right")).astype(np.int64)

    def score(self, df: pd.DataFrame, *, explain: bool = True, keep_regular: bool = False,
              max_targets: int = 5) -> pd.DataFrame:
        """Score a feature frame (no reasons: crmscore.scoring.explained adds them from `explained`).

        Returns customer_id, score, decile, the segment columns present in df, companion columns, and with
        explain=True `base_value`, in the score's own space (crmscore.explain.effects): calibrated log-odds
        (binary; sigmoid(base + sum of contributions) = score), the log of the amount (Tweedie;
        exp(base + sum) = score). With explain=True the score is computed from the explanation's margin, so
        it is exactly what the contributions add up to.
        Multilabel models: `score` is the top category's probability, `top_category` the category and
        `next_categories` a list of up to max_targets (0 = all) {category, probability}, highest first,
        leaving out categories the customer buys regularly unless keep_regular; the base value is the top
        category's (None when every category is left out).
        """
        return self.explained(df, explain=explain, keep_regular=keep_regular, max_targets=max_targets)[0]

    def explained(self, df: pd.DataFrame, *, explain: bool = True, keep_regular: bool = False,
                  max_targets: int = 5) -> tuple[pd.DataFrame, list[ExplainedRows]]:
        """`score`'s frame and, with explain=True, the explanations behind it: one ExplainedRows for all rows
        (binary, regression), one per top category (multilabel: each row is explained by its top category's
        head). Row positions are those of the returned frame."""
        if self.kind == "multilabel":
            return self._score_multilabel(df, explain, keep_regular, max_targets)
        out = pd.DataFrame({"customer_id": df["customer_id"].astype("string").to_numpy()}, index=df.index)
        parts: list[ExplainedRows] = []
        if explain:
            expl = self.model.explain(df)
            out["score"] = expl.scores()
            parts.append(ExplainedRows(np.arange(len(df)), expl, self.reason_up, self.reason_down))
        else:
            out["score"] = self.predict(df)
        out["decile"] = self.deciles(out["score"].to_numpy())
        for col in SEGMENT_COLUMNS:
            if col in df.columns:
                out[col] = df[col].to_numpy()
        for comp in self.companions.values():
            out = out.join(comp.predict(df))
        if self.kind == "uplift":
            out = out.join(self.uplift_columns(df, out["score"].to_numpy()))
        if explain:
            out["base_value"] = expl.base_value
        return out.reset_index(drop=True), parts

    def uplift_columns(self, df: pd.DataFrame, lift: np.ndarray) -> pd.DataFrame:
        """Uplift models: p_control, p_treated (the outcome without and with the campaign) and quadrant."""
        from crmscore.models.quadrants import quadrant

        p0, p1 = self.model.outcomes(df)
        quad = quadrant(lift, p0, float(self.settings.get("min_lift", 0.02)),
                        float(self.settings.get("sure_thing_probability", 0.5)))
        return pd.DataFrame({"p_control": p0, "p_treated": p1, "quadrant": quad}, index=df.index)

    def _score_multilabel(self, df: pd.DataFrame, explain: bool, keep_regular: bool,
                          max_targets: int) -> tuple[pd.DataFrame, list[ExplainedRows]]:
        targets = self.targets
        P = self.predict(df)
        ranked = np.where(self.cross_sell_mask(df), -np.inf, P) if not keep_regular else P
        order = np.argsort(-ranked, axis=1, kind="stable")
        n_show = len(targets) if max_targets <= 0 else min(max_targets, len(targets))
        lists, top = [], []
        for r in range(len(df)):
            items = [{"category": targets[j], "probability": float(P[r, j])} for j in order[r, :n_show]
                     if np.isfinite(ranked[r, j])]
            lists.append(items)
            top.append(items[0]["category"] if items else None)
        self._add_timing(df, lists)
        out = pd.DataFrame({"customer_id": df["customer_id"].astype("string").to_numpy()})
        out["score"] = [lst[0]["probability"] if lst else np.nan for lst in lists]
        out["top_category"] = pd.array(top, dtype="string")
        out["next_categories"] = lists
        for col in SEGMENT_COLUMNS:
            if col in df.columns:
                out[col] = df[col].to_numpy()
        parts: list[ExplainedRows] = []
        if explain:
            base = np.full(len(df), np.nan)
            tops = np.asarray(top, dtype=object)
            frame = df.reset_index(drop=True)
            for t in targets:
                rows = np.flatnonzero(tops == t)
                head = self.model.head(t)
                if not len(rows) or head is None:
                    continue
                expl = head.explain(frame.iloc[rows])
                up, down = (getattr(self, k).replace("{target}", str(t)) for k in ("reason_up", "reason_down"))
                parts.append(ExplainedRows(rows, expl, up, down))
                base[rows] = expl.base_value
            out["base_value"] = base
        return out, parts

    def _add_timing(self, df: pd.DataFrame, lists: list[list[dict[str, Any]]]) -> None:
        """With the timing model (crmscore.models.category_timing), each listed category gets `days` (median
        days from the cutoff to buying it, if bought within the horizon) with `days_low` and `days_high`
        (10-90%)."""
        from crmscore.models import category_pairs

        timing = self.companions.get(category_pairs.NAME)
        if timing is None:
            return
        frame = df.reset_index(drop=True)
        pairs = [(r, item["category"]) for r, items in enumerate(lists) for item in items]
        name = category_pairs.NAME
        pred = timing.predict(category_pairs.pair_frame(frame, self.feature_set.names, pairs))
        days = pred[[name, f"{name}_low", f"{name}_high"]].to_numpy()
        i = 0
        for items in lists:
            for item in items:
                item.update(days=round(float(days[i, 0]), 1), days_low=round(float(days[i, 1]), 1),
                            days_high=round(float(days[i, 2]), 1))
                i += 1

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.model.save(path / "estimator")
        companions = {}
        for name, comp in self.companions.items():
            for i, m in enumerate(comp.models):
                m.save(path / "companions" / f"{name}_{i}")
            companions[name] = {"quantiles": list(comp.quantiles), "bounds": list(comp.bounds),
                                "models": len(comp.models)}
        meta = {"task": self.task, "mode": self.mode, "feature_set": self.feature_set.to_dict(),
                "settings": self.settings, "reason_up": self.reason_up, "reason_down": self.reason_down,
                "decile_edges": self.decile_edges, "rfm": self.rfm, "info": self.info, "companions": companions,
                "table_schema": self.table_schema.to_dict() if self.table_schema else None}
        # compact: json's C encoder is used only without indent; the training reference's value samples (about
        # 300k numbers) took a second a save to indent, and made the file half as big again
        (path / "bundle.json").write_text(json.dumps(meta, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainedModel:
        path = Path(path)
        meta = json.loads((path / "bundle.json").read_text())
        companions = {
            name: CompanionModels(name, tuple(c["quantiles"]),
                                  [CustomerModel.load(path / "companions" / f"{name}_{i}") for i in range(c["models"])],
                                  tuple(c["bounds"]))
            for name, c in meta.get("companions", {}).items()}
        schema = meta.get("table_schema")
        return cls(meta["task"], meta["mode"], _load_model(path / "estimator"),
                   FeatureSet.from_dict(meta["feature_set"]), meta["settings"], meta["reason_up"],
                   meta["reason_down"], meta["decile_edges"], meta["rfm"], meta["info"], companions,
                   TableSchema.from_dict(schema) if schema else None)


def _load_model(path: Path) -> Any:
    """The saved estimator: an UpliftModel (crmscore.models.uplift_learner) or what load_estimator reads."""
    if json.loads((path / "model.json").read_text())["objective"] == "uplift":
        from crmscore.models.uplift_learner import UpliftModel

        return UpliftModel.load(path)
    return load_estimator(path)


def label_column(target: str) -> str:
    """The label column of a multilabel target: `label__<slug>`."""
    return f"label__{slug(target)}"


def blend_copurchase(pred: np.ndarray, df: pd.DataFrame, targets: list[str], rules: dict[str, Any],
                     weight: float) -> np.ndarray:
    """(1 - weight) x the model's probabilities + weight x the co-purchase rules' scores (rules: the
    `confidence` (k, k) and `popularity` (k) fitted at training, crmscore.models.baselines)."""
    from crmscore.models.copurchase import copurchase_scores

    rule = copurchase_scores(df, targets, np.asarray(rules["confidence"], float), np.asarray(rules["popularity"], float))
    return (1.0 - weight) * pred + weight * rule


def repeat_scores(df: pd.DataFrame, targets: list[str]) -> np.ndarray:
    """(n, k) each customer's repeat rate per target: the share of their orders in the feature set's longest
    window that included it (its `category_order_share_*` feature; 0 when never bought or no orders). Personal
    purchase frequency is what next-basket studies find hardest to beat; as a share it is on the probabilities'
    scale, so it can be blended with them."""
    cols = [f"category_order_share_{slug(t)}" for t in targets]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"feature columns {missing[:3]} are missing: repeat_blend needs the per-category purchase "
                         f"history (history_windows must not be [])")
    return np.nan_to_num(df[cols].to_numpy(float), nan=0.0)


def blend_repeat(pred: np.ndarray, df: pd.DataFrame, targets: list[str], weight: float) -> np.ndarray:
    """(1 - weight) x the ranking scores + weight x the customer's repeat rates (repeat_scores). A category the
    customer has not bought in the window scores (1 - weight) x its score, so the order among those stays (the
    whole cross-sell list when its lookback covers the window)."""
    return (1.0 - weight) * pred + weight * repeat_scores(df, targets)


def days_column(target: str) -> str:
    """Days from the cutoff to the first purchase of a multilabel target in the horizon: `days__<slug>`."""
    return f"days__{slug(target)}"


def label_matrix(df: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """The multilabel label columns of df, renamed to the targets."""
    return df[[label_column(t) for t in targets]].set_axis(targets, axis=1)

