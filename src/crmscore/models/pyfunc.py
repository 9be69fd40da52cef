"""The MLflow pyfunc flavour of a crmscore model.

Input: a feature frame (one row per customer, the model's feature columns). Output: `score` (calibrated
probability) and `decile`; with params {"explain": true}, also `base_value` and one `shap__<feature>`
column per feature (contributions in log-odds, summing with base_value to the raw score).
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from crmscore.models.bundle import TrainedModel


class CrmscorePyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.bundle = TrainedModel.load(context.artifacts["bundle"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        b = self.bundle
        out = pd.DataFrame(index=model_input.index)
        if params.get("explain"):
            expl = b.model.explain(model_input)
            out["score"] = 1 / (1 + np.exp(-b.model.calibrated_logit(expl.raw)))
            out["base_value"] = expl.base_value
            for j, name in enumerate(expl.feature_names):
                out[f"shap__{name}"] = expl.contributions[:, j]
        else:
            out["score"] = b.predict(model_input)
        out["decile"] = b.deciles(out["score"].to_numpy())
        return out
