"""A task is a small declaration: its label and population, settings, baselines and how its reasons read.
The training pipeline (crmscore.models.pipeline) runs every task the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from crmscore.data.loader import CustomerData


class TaskSettings(BaseModel):
    """Settings of one task, from the config's `tasks.<name>` section and CLI flags (flags win)."""

    model_config = ConfigDict(extra="forbid")

    horizon_days: int = Field(default=90, gt=0, description="Label window after each cutoff, in days.")
    lookback_days: int = Field(default=365, gt=0, description="Population: a purchase within this many days.")
    snapshots: int = Field(default=6, ge=2, description="Training snapshots, the newest used for validation.")
    snapshot_step_days: int = Field(default=30, gt=0, description="Days between training snapshots.")
    min_positives: int = Field(default=100, ge=1, description="Refuse to train with fewer positive labels.")
    min_negatives: int = Field(default=100, ge=1, description="Refuse to train with fewer negative labels.")
    seed: int = 17
    test_size: float = Field(default=0.2, gt=0, lt=0.5, description="Feature tables: held-out test share.")
    cv_folds: int = Field(default=5, ge=2, description="Feature tables: cross-validation folds.")
    params: dict[str, Any] = Field(default_factory=dict, description="LightGBM parameters to override.")
    num_boost_round: int = Field(default=600, gt=0)
    explain_sample: int = Field(default=2000, gt=0, description="Test rows used for the SHAP summary.")


@dataclass
class BaselineInput:
    """What a baseline sees: the training rows and the test rows (features and labels)."""

    train: pd.DataFrame
    test: pd.DataFrame
    settings: TaskSettings
    categorical: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Baseline:
    """An honest reference score, computed on the same test rows. Higher score = more likely positive."""

    name: str
    description: str
    score: Callable[[BaselineInput], np.ndarray]


LabelFn = Callable[[CustomerData, pd.Timestamp, TaskSettings], pd.DataFrame]


@dataclass(frozen=True)
class Task:
    """A prediction task.

    name: the registered model name and MLflow experiment ('churn').
    label_fn: (data, cutoff, settings) -> frame of customer_id and `label` (0/1) for the task's
        population at that cutoff, the label computed from the horizon after the cutoff.
    baselines / table_baselines: references for transactional data and for ready feature tables.
    reason_up / reason_down: how a reason's effect reads ("raises churn risk").
    """

    name: str
    description: str
    label_fn: LabelFn
    baselines: tuple[Baseline, ...]
    table_baselines: tuple[Baseline, ...]
    reason_up: str
    reason_down: str
    objective: Literal["binary"] = "binary"
    primary_metric: str = "roc_auc"
    defaults: dict[str, Any] = field(default_factory=dict)

    def settings(self, section: dict[str, Any] | None = None, **overrides: Any) -> TaskSettings:
        """Defaults < the task's defaults < config section < CLI overrides (None means not given)."""
        known = set(TaskSettings.model_fields)
        merged = {**self.defaults, **(section or {}), **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(merged) - known)
        if unknown:
            from crmscore.errors import ConfigError

            raise ConfigError(f"tasks.{self.name}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return TaskSettings(**merged)


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    from crmscore.models import churn  # noqa: F401  (tasks register themselves on import)

    if name not in _TASKS:
        from crmscore.errors import ConfigError

        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


