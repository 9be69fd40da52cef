"""What explaining a model costs, and choosing a model's shape by it.

Batch scoring with reasons was dominated by TreeSHAP (LightGBM's pred_contrib): on the demo's former churn
shape (15 leaves, depth 5) it cost about 30x a plain prediction per row. TreeSHAP's work grows with trees x
leaves x depth^2 while prediction grows with trees x depth, so a shallower shape that predicts as well
explains much cheaper; trees of up to 8 splits are then explained by crmscore.models.treeshap's tables
(exact, and tens of times cheaper than pred_contrib). `choose_shape` fits each candidate shape on the
training rows, measures it on the validation rows (never the test rows), and among the shapes whose
validation metric is within `tolerance` of the best takes the cheapest to explain. The cost it ranks by is
TreeSHAP's work counted from the trees (sum over trees and leaves of the leaf's depth squared), not a timing,
so the same data and seed give the same choice on a busy machine; `explain_cost` records the measured
microseconds with the model for the reader: the engine's the model explains with, beside pred_contrib's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crmscore.models.estimator import CustomerModel

log = logging.getLogger(__name__)

COST_ROWS = 2000  # rows timed: enough for a stable per-row figure, small next to a training run


def shap_work(model: CustomerModel) -> float:
    """TreeSHAP's work per row in the model's trees: the sum over trees and leaves of the leaf's depth squared
    (the algorithm extends and unwinds a path of the leaf's depth at each of its nodes)."""
    dump = model.booster_.dump_model(num_iteration=model.best_iteration_)

    def walk(node: dict[str, Any], depth: int) -> float:
        if "leaf_value" in node and "split_index" not in node:
            return float(max(depth, 1) ** 2)
        return walk(node["left_child"], depth + 1) + walk(node["right_child"], depth + 1)

    return float(sum(walk(t["tree_structure"], 0) for t in dump["tree_info"]))


def explain_cost(model: CustomerModel, X: pd.DataFrame, rows: int = COST_ROWS) -> dict[str, Any]:
    """Measured cost per row on up to `rows` rows of X (the best of three runs each): `predict_us` (raw score),
    `pred_contrib_us` (LightGBM's TreeSHAP), `engine_us` for the engine the model explains with (`shap_engine`:
    'tables', crmscore.models.treeshap, or 'pred_contrib'), the ratios `engine_to_predict` and
    `pred_contrib_to_predict`, and `shap_work` (shap_work, the count). Runs before the tables engine logged
    `explain_shap_us`, which was pred_contrib's time: the engine's has a name of its own so the two never mix."""
    Xe = model._encode(X.iloc[:rows])
    n = max(len(Xe), 1)

    def best(run: Any) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        return min(times) / n * 1e6

    def booster(**kw: Any) -> Any:
        return lambda: model.booster_.predict(Xe, num_iteration=model.best_iteration_, **kw)

    predict_us, pred_contrib_us = best(booster(raw_score=True)), best(booster(pred_contrib=True))
    engine = model.shap_engine
    if engine == "pred_contrib":
        shap_us = pred_contrib_us
    else:  # shap_engine built and checked the tables, so the kernel is compiled before the timing
        shap_us = best(lambda: model.shap_values(Xe))

    def ratio(us: float) -> float:
        return round(us / predict_us, 2) if predict_us > 0 else float("nan")

    return {"predict_us": round(predict_us, 3), "engine_us": round(shap_us, 3), "shap_engine": engine,
            "pred_contrib_us": round(pred_contrib_us, 3), "engine_to_predict": ratio(shap_us),
            "pred_contrib_to_predict": ratio(pred_contrib_us), "shap_work": shap_work(model), "rows": float(len(Xe))}


@dataclass
class ShapeTrial:
    """One candidate shape on the validation rows."""

    num_leaves: int
    max_depth: int
    valid_metric: float
    shap_work: float
    trees: int


def choose_shape(objective: str, shapes: list[tuple[int, int]], tolerance: float, X: pd.DataFrame, y: Any,
                 X_valid: pd.DataFrame, y_valid: Any, params: dict[str, Any], num_boost_round: int
                 ) -> tuple[dict[str, Any], list[ShapeTrial]]:
    """The (num_leaves, max_depth) among `shapes` cheapest to explain whose validation metric (ROC-AUC for
    binary objectives, normalized Gini otherwise; higher is better) is within `tolerance` (absolute) of the
    best shape's. Returns the chosen parameters and every trial, in the order given."""
    from sklearn.metrics import roc_auc_score

    from crmscore.models.evaluation import normalized_gini

    measure = roc_auc_score if objective == "binary" else normalized_gini
    trials = []
    for leaves, depth in shapes:
        m = CustomerModel(objective, {**params, "num_leaves": int(leaves), "max_depth": int(depth)}, num_boost_round,
                          calibrate=False).fit(X, y, X_valid, y_valid)
        value = float(measure(np.asarray(y_valid, dtype=float), m.decision_function(X_valid)))
        trials.append(ShapeTrial(int(leaves), int(depth), value, shap_work(m), m.best_iteration_))
    best = max(t.valid_metric for t in trials)
    chosen = min((t for t in trials if t.valid_metric >= best - tolerance), key=lambda t: (t.shap_work, -t.valid_metric))
    for t in trials:
        log.info("shape %d leaves, depth %d: validation %.4f, %d trees, TreeSHAP work %.0f%s", t.num_leaves,
                 t.max_depth, t.valid_metric, t.trees, t.shap_work, "  <- chosen" if t is chosen else "")
    return {"num_leaves": chosen.num_leaves, "max_depth": chosen.max_depth}, trials
