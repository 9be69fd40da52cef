"""A trained model with everything needed to score and explain customers the way it was trained:
the estimator, the feature set (or feature-table columns), the RFM scale, decile edges, settings and
evaluation facts. Saved as a folder; logged to MLflow inside the pyfunc model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmscore.explain.reasons import reason_text
from crmscore.features.definitions import FeatureSet
from crmscore.models.estimator import CustomerModel
from crmscore.segments import SEGMENT_COLUMNS, RFMScorer

Mode = Literal["transactions", "feature_table"]


@dataclass
class TrainedModel:
    task: str
    mode: Mode
    model: CustomerModel
    feature_set: FeatureSet
    settings: dict[str, Any]
    reason_up: str
    reason_down: str
    decile_edges: list[float] = field(default_factory=list)
    rfm: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)  # trained_at, cutoffs, digests, metrics...

    @property
    def features(self) -> list[str]:
        return self.model.feature_names_

    def rfm_scorer(self) -> RFMScorer | None:
        return RFMScorer.from_dict(self.rfm) if self.rfm else None

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Calibrated probability per row of a feature frame (columns by name; extra columns ignored)."""
        return self.model.predict(df)

    def deciles(self, scores: np.ndarray) -> np.ndarray:
        """1 = the highest-scoring tenth of the population the model was tested on, 10 = the lowest."""
        if not self.decile_edges:
            return np.full(len(scores), 0, dtype=np.int64)
        return (10 - np.searchsorted(np.asarray(self.decile_edges), scores, side="right")).astype(np.int64)

    def score(self, df: pd.DataFrame, *, explain: bool = True, top_k: int = 5) -> pd.DataFrame:
        """Score and explain a feature frame.

        Returns customer_id, score, decile, the segment columns present in df, and with explain=True
        `base_value` (log-odds) and `reasons`: per row a list of top_k dicts with feature, value,
        contribution (log-odds), probability_change and text.
        """
        out = pd.DataFrame({"customer_id": df["customer_id"].astype("string").to_numpy()}, index=df.index)
        if explain:
            expl = self.model.explain(df)
            raw = expl.raw
            out["score"] = 1.0 / (1.0 + np.exp(-self.model.calibrated_logit(raw)))
        else:
            out["score"] = self.predict(df)
        out["decile"] = self.deciles(out["score"].to_numpy())
        for col in SEGMENT_COLUMNS:
            if col in df.columns:
                out[col] = df[col].to_numpy()
        if explain:
            out["base_value"] = expl.base_value
            out["reasons"] = self.reasons(df, expl, top_k)
        return out.reset_index(drop=True)

    def reasons(self, df: pd.DataFrame, expl: Any, top_k: int) -> list[list[dict[str, Any]]]:
        idx = expl.top_indices(top_k)
        change = self.model.probability_change(expl, idx)
        names = expl.feature_names
        records = df[names].to_dict("records")
        all_rows = df.to_dict("records") if "recency_days" not in names and "recency_days" in df else records
        result = []
        for r, (row_idx, row) in enumerate(zip(idx, records)):
            ctx = all_rows[r]
            reasons = []
            for j, fi in enumerate(row_idx):
                name = names[fi]
                value = row[name]
                contribution = float(expl.contributions[r, fi])
                reasons.append({
                    "feature": name,
                    "value": _plain(value),
                    "contribution": contribution,
                    "probability_change": float(change[r, j]),
                    "text": reason_text(self.feature_set.get(name), name, value, contribution, ctx,
                                        self.reason_up, self.reason_down),
                })
            result.append(reasons)
        return result

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        self.model.save(path / "estimator")
        meta = {"task": self.task, "mode": self.mode, "feature_set": self.feature_set.to_dict(),
                "settings": self.settings, "reason_up": self.reason_up, "reason_down": self.reason_down,
                "decile_edges": self.decile_edges, "rfm": self.rfm, "info": self.info}
        (path / "bundle.json").write_text(json.dumps(meta, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainedModel:
        path = Path(path)
        meta = json.loads((path / "bundle.json").read_text())
        return cls(meta["task"], meta["mode"], CustomerModel.load(path / "estimator"),
                   FeatureSet.from_dict(meta["feature_set"]), meta["settings"], meta["reason_up"],
                   meta["reason_down"], meta["decile_edges"], meta["rfm"], meta["info"])


def _plain(value: Any) -> Any:
    """JSON-friendly scalar (numpy and pandas NA to Python)."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.floating, float)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value
