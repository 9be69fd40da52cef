"""A task is a small declaration: its label and population, settings, baselines and how its reasons read.
The training pipeline (crmscore.models.pipeline) runs every task the same way.

Three kinds of task share that pipeline:
- `binary`: one calibrated probability per customer (churn, next-purchase); primary metric ROC-AUC.
- `regression`: one amount per customer (expected spend), LightGBM with a regression objective such as
  Tweedie; primary metric the normalised Gini.
- `multilabel`: one calibrated probability per target (next category), a binary model per target;
  primary metric hit rate at 3. The label frame has `label` (any target bought) and one
  `label__<target>` column per target.
- `uplift`: one expected lift per customer from a campaign's treatment/control experiment (crmscore.models.uplift);
  primary metric the Qini coefficient. It brings its own dataset (one campaign, a stratified split) and fit.
A task may also declare companions: quantile models fitted on the same rows (days to next purchase).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from crmscore.data.loader import CustomerData
from crmscore.config import LifecycleConfig
from crmscore.features.definitions import FeatureSet
from crmscore.models.population import Default, PopulationRule, population_rule


class TaskSettings(BaseModel):
    """Settings of one task, from the config's `tasks.<name>` section and CLI flags (flags win)."""

    model_config = ConfigDict(extra="forbid")

    horizon_days: int = Field(default=90, gt=0, description="Label window after each cutoff, in days.")
    lookback_days: int | None = Field(default=None, gt=0, description="Optional activity filter: only customers "
                                      "with a purchase within this many days (default: the task's population, "
                                      "see crmscore.models.population).")
    min_history_days: int = Field(default=90, ge=0, description="History needed before the earliest training "
                                  "cutoff, in days (features read it).")
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
    shapes: list[tuple[int, int]] = Field(default_factory=list, description="Candidate (num_leaves, max_depth) "
                                          "shapes: the one cheapest to explain among those within shape_tolerance "
                                          "of the best validation metric is trained (crmscore.models.explain_cost); "
                                          "empty: the parameters as given.")
    shape_tolerance: float = Field(default=0.002, ge=0, description="How far below the best shape's validation "
                                   "metric (ROC-AUC or normalized Gini, absolute) a cheaper shape may be.")


Kind = Literal["binary", "regression", "multilabel", "uplift"]


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
    """An honest reference score, computed on the same test rows.

    Binary tasks: higher score = more likely positive. Regression: the predicted amount. Multilabel: an
    (n_rows, n_targets) matrix, higher = more likely, columns in the task's target order.
    """

    name: str
    description: str
    score: Callable[[BaselineInput], np.ndarray]


LabelFn = Callable[[CustomerData, pd.Timestamp, TaskSettings], pd.DataFrame]
PrepareFn = Callable[[CustomerData, pd.Timestamp, TaskSettings], TaskSettings]
FeatureSetFn = Callable[[CustomerData, pd.Timestamp, TaskSettings], FeatureSet]
DatasetFn = Callable[..., Any]  # (task, cfg, data or None, settings, as_of, progress) -> pipeline.Dataset
FitFn = Callable[..., Any]  # (task, dataset, settings, params) -> (TrainedModel, metrics, curves)
LogRunFn = Callable[..., dict[str, str]]  # (result, tmp dir) -> extra tags of the registered version


@dataclass(frozen=True)
class Companion:
    """A quantile model fitted next to the task's model on the same snapshots (days to next purchase).

    name: output column prefix (`<name>`, `<name>_low`, `<name>_high`); target: a column of the label
    frame, missing where it does not apply; fitted and evaluated (MAE of the median) on rows where it is
    known. quantiles: (low, median, high). lower / upper_setting: predictions are clipped to
    [lower, the setting's value]. baseline: (test rows, settings) -> a reference prediction for the MAE.
    """

    name: str
    target: str
    description: str
    quantiles: tuple[float, float, float] = (0.1, 0.5, 0.9)
    lower: float = 0.0
    upper_setting: str | None = None
    baseline: Callable[[pd.DataFrame, TaskSettings], np.ndarray] | None = None


@dataclass(frozen=True)
class Task:
    """A prediction task.

    name: the registered model name and MLflow experiment ('churn').
    label_fn: (data, cutoff, settings) -> frame of customer_id and `label` (0/1; an amount for regression)
        for the task's population at that cutoff, computed from the horizon after the cutoff; other
        columns (label__<target>, a companion's target) pass through.
    baselines / table_baselines: references for transactional data and for ready feature tables.
    reason_up / reason_down: how a reason's effect reads ("raises churn risk"); for multilabel tasks
        `{target}` is replaced by the target ("makes buying {target} more likely").
    kind / objective: what is predicted (see the module docstring) and the LightGBM objective.
    primary_metric / higher_is_better: what promotion and the grade compare.
    settings_model: the task's settings class (TaskSettings or a subclass with extra settings).
    prepare: fixes data-dependent settings once per run, from data before the earliest training cutoff
        (next-category's target categories), before any label is computed.
    feature_set: the feature set of the run (default: the configured one), from data before the earliest
        training cutoff and the prepared settings.
    transactions_only: the task needs raw purchases (not a ready feature table).
    population: who the task predicts for by default (crmscore.models.population): 'known', 'buyers' or
        'active'; an explicit lookback_days narrows it.
    companions: quantile models fitted alongside (see Companion).
    dataset / fit: a task whose rows are not snapshots at cutoffs (uplift: one campaign's experiment) builds its
        own Dataset and fits its own model; the pipeline runs everything else (guardrails, leakage alarm,
        baselines, MLflow, registration) as for the others. A fit may measure baselines the pipeline cannot
        score row by row (lookalike's random ranking) and return their metrics as curves["baseline_metrics"].
    log_run: the task's own artifacts, logged in the run after the shared ones (lookalike: the seed, its
        seed-size curve); returns extra tags for the registered version.
    grade_margin: (the run's test metrics) -> the gain over the best baseline's primary metric that earns an A,
        on that metric's scale; None: 0.02 (a ROC-AUC's; crmscore.models.evaluation.GRADE_MARGIN).
    """

    name: str
    description: str
    label_fn: LabelFn
    baselines: tuple[Baseline, ...]
    table_baselines: tuple[Baseline, ...]
    reason_up: str
    reason_down: str
    objective: str = "binary"
    primary_metric: str = "roc_auc"
    defaults: dict[str, Any] = field(default_factory=dict)
    kind: Kind = "binary"
    higher_is_better: bool = True
    settings_model: type[TaskSettings] = TaskSettings
    prepare: PrepareFn | None = None
    feature_set: FeatureSetFn | None = None
    companions: tuple[Companion, ...] = ()
    transactions_only: bool = False
    population: Default = "known"
    dataset: DatasetFn | None = None
    fit: FitFn | None = None
    log_run: LogRunFn | None = None
    grade_margin: Callable[[dict[str, float]], float] | None = None

    def population_rule(self, settings: TaskSettings, lifecycle: LifecycleConfig) -> PopulationRule:
        """This task's population at these settings (an explicit lookback_days wins over the default)."""
        return population_rule(self.population, settings.lookback_days, lifecycle)

    def settings(self, section: dict[str, Any] | None = None, **overrides: Any) -> TaskSettings:
        """Defaults < the task's defaults < config section < CLI overrides (None means not given)."""
        known = set(self.settings_model.model_fields)
        merged = {**self.defaults, **(section or {}), **{k: v for k, v in overrides.items() if v is not None}}
        unknown = sorted(set(merged) - known)
        if unknown:
            from crmscore.errors import ConfigError

            raise ConfigError(f"tasks.{self.name}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return self.settings_model(**merged)


_TASKS: dict[str, Task] = {}


_FAMILIES: dict[str, Callable[[str], Task]] = {}


def register_task(task: Task) -> Task:
    _TASKS[task.name] = task
    return task


def register_task_family(prefix: str, make: Callable[[str], Task]) -> None:
    """Tasks named `<prefix><suffix>`, one per suffix (uplift-<campaign>): make(suffix) builds and registers it."""
    _FAMILIES[prefix] = make


def get_task(name: str) -> Task:
    """A registered task by name (the task modules register themselves: see crmscore.models)."""
    if name not in _TASKS:  # a family with one task per name (uplift-<campaign>): made on first use
        for prefix, make in _FAMILIES.items():
            if name.startswith(prefix):
                return make(name.removeprefix(prefix))
    if name not in _TASKS:
        from crmscore.errors import ConfigError

        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


