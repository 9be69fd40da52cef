"""What one training run works on and what it produces: its dataset (train, validation and test rows with
their description) and its result (the trained model, metrics against the baselines, grade, MLflow run).
Kept apart from the pipeline that makes them (crmscore.models.pipeline) so that the registry and the
evaluation report, which the pipeline calls, can read them without importing the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from crmscore.features.definitions import FeatureSet
from crmscore.models.bundle import TrainedModel
from crmscore.models.feature_table import TableSchema
from crmscore.models.population import PopulationRule
from crmscore.models.tasks import TaskSettings


@dataclass
class Dataset:
    """Train / validation / test rows of one task, with what the run needs to describe them."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    features: list[str]
    categorical: list[str]
    feature_set: FeatureSet
    mode: str
    cutoffs: dict[str, Any] = field(default_factory=dict)
    rfm: dict[str, Any] | None = None
    decisions: dict[str, str] = field(default_factory=dict)
    settings: TaskSettings | None = None  # the run's settings after the task's prepare step, when it has one
    population: PopulationRule | None = None  # transactional data: who the task predicts for
    table_schema: TableSchema | None = None  # feature tables: the typing decided on the training file


@dataclass
class TrainResult:
    task: str
    bundle: TrainedModel
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    grade: str
    dataset: Dataset
    run_id: str | None = None
    version: str | None = None
    curves: dict[str, Any] = field(default_factory=dict)  # test-row scores of model and baselines, for plots

    def summary(self) -> dict[str, Any]:
        return {"task": self.task, "run_id": self.run_id, "registered_version": self.version,
                "grade": self.grade, "metrics": self.metrics, "baselines": self.baselines,
                "cutoffs": {k: str(v) for k, v in self.dataset.cutoffs.items()}}
