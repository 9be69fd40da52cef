"""The MLflow pyfunc flavour of a crmscore model.

Input: a feature frame (one row per customer, the model's feature columns). Output by kind of model:
- binary (churn, next-purchase): `score` (calibrated probability) and `decile`;
- regression (expected-spend): `score` (predicted amount, currency) and `decile`;
- multilabel (next-category): `score` (the top category's probability), `top_category`, and one
  `p__<category>` column per category (every category, regular ones included).
- uplift (uplift-<campaign>): `score` (expected lift), `decile`, `p_control`, `p_treated` and `quadrant`.
Companions add `<name>`, `<name>_low`, `<name>_high` (next-purchase: days_to_next).
With params {"explain": true}, binary and regression models also return `base_value` and one
`shap__<feature>` column per feature, in the score's own space (crmscore.explain.effects): calibrated
log-odds for binary models (sigmoid(base_value + sum) = score), the log of the amount for Tweedie
(exp(base_value + sum) = score).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from crmscore.features.definitions import slug
from crmscore.models.bundle import TrainedModel


class CrmscorePyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.bundle = TrainedModel.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        b = self.bundle
        out = pd.DataFrame(index=model_input.index)
        if b.kind == "multilabel":
            P = b.predict(model_input)
            top = P.argmax(1)
            out["score"] = P[np.arange(len(P)), top]
            out["top_category"] = np.asarray(b.targets, dtype=object)[top]
            for j, t in enumerate(b.targets):
                out[f"p__{slug(t)}"] = P[:, j]
            return out
        if params.get("explain"):
            expl = b.model.explain(model_input)
            out["score"] = expl.scores()
            out["base_value"] = expl.base_value
            for j, name in enumerate(expl.feature_names):
                out[f"shap__{name}"] = expl.contributions[:, j]
        else:
            out["score"] = b.predict(model_input)
        out["decile"] = b.deciles(out["score"].to_numpy())
        if b.kind == "uplift":
            out = out.join(b.uplift_columns(model_input, out["score"].to_numpy()))
        for comp in b.companions.values():
            out = out.join(comp.predict(model_input))
        return out
