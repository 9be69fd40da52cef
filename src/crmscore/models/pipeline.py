"""The training framework: one pipeline for every task.

Transactional data: with `as_of = T` ("train as if today were T"), only data before T is used. The
test cutoff is T - horizon (its labels end by T); training cutoffs step back from test - horizon, so
no training label window overlaps the test window. The newest training cutoff is the validation set
(early stopping and Platt calibration, both out-of-time); the rest train. Feature tables: a stratified
train/validation/test split with a fixed seed, plus cross-validation on train + validation.

Every run: guardrails, a data-usability summary, the model and the task's baselines on the same test
rows, plots, SHAP summary, MLflow tracking and registration with alias `challenger`. What is fitted and
measured follows the task's kind (binary, regression, multilabel; see crmscore.models.tasks), plus any
companion quantile models.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import ProjectConfig
from crmscore.data.loader import CustomerData
from crmscore.errors import CrmscoreError
from crmscore.features.build import as_of_timestamp, build_training_set, feature_set_for
from crmscore.features.definitions import FeatureSet, slug
from crmscore.models.bundle import CompanionModels, TrainedModel, blend_copurchase, blend_repeat, label_matrix
from crmscore.models.estimator import CustomerModel, MultiLabelModel, small_data_threads
from crmscore.models.evaluation import (
    GRADE_MARGIN,
    mean_roc_auc,
    multilabel_metrics,
    normalized_gini,
    probability_metrics,
    quality_grade,
    ranking_metrics,
    regression_metrics,
)
from crmscore.models.population import PopulationRule
from crmscore.models.run import Dataset, TrainResult
from crmscore.models.tasks import BaselineInput, Task, TaskSettings
from crmscore.features.segments import SEGMENT_COLUMNS

log = logging.getLogger(__name__)
NON_FEATURES = {"customer_id", "as_of", "label", *SEGMENT_COLUMNS}
BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75)  # next-category: the co-purchase blends measured at every run
REPEAT_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2)  # next-category: the repeat-rate blends measured at every run


class GuardrailError(CrmscoreError):
    """Not enough data to train a trustworthy model; the message says what is missing."""


# -- datasets ------------------------------------------------------------------------------------
def transactional_cutoffs(data_start: pd.Timestamp, as_of: pd.Timestamp, s: TaskSettings,
                          population: PopulationRule | None = None, data_end: pd.Timestamp | None = None
                          ) -> dict[str, Any]:
    """Test, validation and training cutoffs of an honest out-of-time evaluation.

    test = as_of - horizon; validation = test - horizon; training cutoffs step back every
    `snapshot_step_days` from validation - horizon, down to `min_history_days` after the data starts. The gap
    keeps every training label window clear of the validation window (and that of the test), so early
    stopping and calibration are truly out-of-time even when the same customers appear in every snapshot.
    What is needed: min_history_days + 3 x horizon_days of data before as_of. The population's activity
    window (lookback_days, churn's churned_days) need not fit before the first cutoff: when it does not, the
    earliest snapshots miss the customers whose last purchase is older than the data, and a warning says so.
    """
    start = data_start.normalize()
    test = as_of - pd.Timedelta(days=s.horizon_days)
    valid = test - pd.Timedelta(days=s.horizon_days)
    earliest = start + pd.Timedelta(days=s.min_history_days)
    newest_train = valid - pd.Timedelta(days=s.horizon_days)
    train = [newest_train - pd.Timedelta(days=k * s.snapshot_step_days) for k in range(s.snapshots - 1)]
    train = [c for c in train if c >= earliest]
    if not train:
        have = (as_of - start).days
        need = s.min_history_days + 3 * s.horizon_days
        first_as_of = start + pd.Timedelta(days=need)
        after_end = data_end is not None and first_as_of > data_end.normalize() + pd.Timedelta(days=1)
        where = (f"; the data ends {data_end.date()}, so it needs {(first_as_of - data_end.normalize()).days - 1} "
                 f"more days of history, or a shorter --horizon-days (or tasks.<task>.min_history_days)"
                 if after_end else "; or shorten --horizon-days (or tasks.<task>.min_history_days)")
        raise GuardrailError(
            f"not enough history: data starts {start.date()} and training as of {as_of.date()} leaves {have} days; "
            f"an out-of-time evaluation needs min_history_days ({s.min_history_days}) before the first training "
            f"cutoff + 3 x horizon ({s.horizon_days}: training, validation and test label windows, clear of each "
            f"other) = {need} days. The earliest --as-of that works is {first_as_of.date()}{where}.")
    window = population.within_days if population is not None else None
    history = (min(train) - start).days
    if window is not None and history < window:
        log.warning("the earliest training cutoff %s has %d days of history, less than the population's %d-day "
                    "activity window: customers whose last purchase is older than the data are missing there",
                    min(train).date(), history, window)
    return {"test": test, "train": sorted([*train, valid]), "as_of": as_of}


def transactional_dataset(task: Task, data: CustomerData, s: TaskSettings, as_of: Any = None,
                          progress: bool = False) -> Dataset:
    cut, fs, label, s, population = training_plan(task, data, s, as_of)
    frame = build_training_set(data, [*cut["train"], cut["test"]], label, fs, progress=progress)
    test = frame[frame["as_of"] == cut["test"]].reset_index(drop=True)
    valid = frame[frame["as_of"] == cut["train"][-1]].reset_index(drop=True)
    train = frame[frame["as_of"] < cut["train"][-1]].reset_index(drop=True)
    from crmscore.features.segments import RFMScorer

    rfm = RFMScorer(data.config.segments.rfm_window_days).fit(test).to_dict()
    return Dataset(train, valid, test, fs.names, fs.categorical, fs, "transactions", cut, rfm, settings=s,
                   population=population)


def training_plan(task: Task, data: CustomerData, s: TaskSettings, as_of: Any = None) -> tuple[
        dict[str, Any], FeatureSet, Callable[[CustomerData, pd.Timestamp], pd.DataFrame], TaskSettings, PopulationRule]:
    """What a task's training set is made of, on either engine: (cutoffs {"train", "test", "as_of"}, feature set,
    label function (data, cutoff) -> frame, the settings after the task's prepare step, population rule).
    crmscore.features.spark.spark_training_set takes the same to build the table on Spark."""
    lo, hi = data.ts_range()
    as_of = as_of_timestamp(as_of) if as_of is not None else hi.normalize() + pd.Timedelta(days=1)
    if as_of <= lo:
        raise GuardrailError(f"--as-of {as_of.date()} is before the first transaction ({lo.date()})")
    population = task.population_rule(s, data.config.segments.lifecycle)
    cut = transactional_cutoffs(lo, as_of, s, population, hi)
    if task.prepare is not None:
        s = task.prepare(data, cut["train"][0], s)
    fs = task.feature_set(data, cut["train"][0], s) if task.feature_set else feature_set_for(data, cut["train"][0])

    def label(d: CustomerData, c: pd.Timestamp) -> pd.DataFrame:
        return task.label_fn(d, c, s)

    return cut, fs, label, s, population


def feature_table_dataset(cfg: ProjectConfig, s: TaskSettings) -> Dataset:
    from sklearn.model_selection import train_test_split

    from crmscore.models.feature_table import load_feature_table

    table = load_feature_table(cfg)
    frame = table.frame
    rest, test = train_test_split(frame, test_size=s.test_size, stratify=frame["label"], random_state=s.seed)
    train, valid = train_test_split(rest, test_size=s.test_size / (1 - s.test_size), stratify=rest["label"],
                                    random_state=s.seed)
    fs = table.feature_set
    return Dataset(train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True),
                   fs.names, fs.categorical, fs, "feature_table",
                   {"split": f"stratified {1 - 2 * s.test_size:.0%}/{s.test_size:.0%}/{s.test_size:.0%}, seed {s.seed}"},
                   None, table.decisions, table_schema=table.schema)


# -- guardrails ----------------------------------------------------------------------------------
def check_guardrails(ds: Dataset, s: TaskSettings) -> None:
    for part, df in (("training", pd.concat([ds.train, ds.valid])), ("test", ds.test)):
        pos = int((df["label"] > 0).sum())  # regression: customers with a positive amount
        neg = int(len(df) - pos)
        need_pos = s.min_positives if part == "training" else max(1, s.min_positives // 5)
        need_neg = s.min_negatives if part == "training" else max(1, s.min_negatives // 5)
        if pos < need_pos or neg < need_neg:
            raise GuardrailError(
                f"too few labels to train: the {part} rows have {pos} positives and {neg} negatives; at least "
                f"{need_pos} of each are needed (settings min_positives/min_negatives). Add customers or history, "
                f"or lengthen the horizon.")


def check_single_feature_leakage(task: Task, ds: Dataset, s: TaskSettings, cfg: ProjectConfig) -> list[Any]:
    """The leakage alarm (crmscore.models.leakage): refuse when one feature alone nearly predicts the label on
    the validation rows, unless the config allows it by name; multilabel tasks are measured per target.
    Returns every feature's FeatureStrength, strongest first."""
    from crmscore.models.bundle import label_column
    from crmscore.models.leakage import check_leakage, measure_features

    labels = {t: label_column(t) for t in _targets(s)} if task.kind == "multilabel" else {None: "label"}
    regression = task.kind == "regression"
    strengths = measure_features(ds.train, ds.valid, ds.features, labels, regression, s.seed)
    check_leakage(strengths, cfg.leakage, regression)
    return strengths


def usability_summary(ds: Dataset) -> str:
    lines = []
    for part, df in (("train", ds.train), ("valid", ds.valid), ("test", ds.test)):
        extra = ""
        if "as_of" in df and len(df):
            cuts = sorted(pd.to_datetime(df["as_of"]).dt.date.unique())
            extra = f", cutoffs {cuts[0]}..{cuts[-1]} ({len(cuts)})"
        amount = "" if df["label"].isin([0, 1]).all() else f", mean {df['label'].mean():,.2f}"
        lines.append(f"{part}: {len(df):,} rows, positive rate {(df['label'] > 0).mean():.1%}{amount}{extra}")
    missing = pd.concat([ds.train, ds.valid])[ds.features].isna().mean().sort_values(ascending=False)
    top = ", ".join(f"{k} {v:.0%}" for k, v in missing.head(5).items() if v > 0)
    lines.append(f"features: {len(ds.features)} ({len(ds.categorical)} categorical); most missing: {top or 'none'}")
    if ds.population is not None:
        lines.append(f"population: {ds.population.describe()}")
    return "\n".join(lines)


# -- training ------------------------------------------------------------------------------------
def fit_and_evaluate(task: Task, ds: Dataset, s: TaskSettings, params: dict[str, Any] | None = None
                     ) -> tuple[TrainedModel, dict[str, float], dict[str, dict[str, float]], dict[str, Any]]:
    """Fit the task's model (and companions) on train, stop early on valid, and measure it and every baseline
    on the test rows. Returns the bundle, the model's metrics, each baseline's metrics and the test-row
    predictions (for plots). metrics[f"best_baseline_{primary}"] is the best baseline's primary metric."""
    fit = task.fit or {"binary": _fit_binary, "regression": _fit_regression, "multilabel": _fit_multilabel}[task.kind]
    bundle, metrics, curves = fit(task, ds, s, {**s.params, **(params or {})})
    bundle.info["primary_metric"] = task.primary_metric
    base_results, preds = _baselines(task, ds, s, bundle)
    base_results.update(curves.pop("baseline_metrics", {}))  # measured by the task's own fit (Task.fit)
    curves["baselines"] = preds
    values = [r[task.primary_metric] for r in base_results.values() if np.isfinite(r.get(task.primary_metric, np.nan))]
    pick = max if task.higher_is_better else min
    fallback = {"roc_auc": 0.5, "normalized_gini": 0.0, "qini": 0.0}.get(task.primary_metric, float("nan"))
    metrics[f"best_baseline_{task.primary_metric}"] = float(pick(values)) if values else fallback
    for comp in task.companions:
        metrics.update(_fit_companion(comp, ds, s, bundle))
    return bundle, metrics, base_results, curves


def _bundle(task: Task, ds: Dataset, s: TaskSettings, model: Any, pred: np.ndarray | None) -> TrainedModel:
    edges = [float(x) for x in np.quantile(pred, np.linspace(0.1, 0.9, 9))] if pred is not None else []
    info = {"population": ds.population.to_dict()} if ds.population is not None else {}
    return TrainedModel(task.name, ds.mode, model, ds.feature_set, s.model_dump(), task.reason_up, task.reason_down,
                        edges, ds.rfm, info, table_schema=ds.table_schema)


def _fit_binary(task: Task, ds: Dataset, s: TaskSettings, params: dict[str, Any]
                ) -> tuple[TrainedModel, dict[str, float], dict[str, Any]]:
    model = CustomerModel(task.objective, params, s.num_boost_round)
    model.fit(ds.train[ds.features], ds.train["label"], ds.valid[ds.features], ds.valid["label"])
    y = ds.test["label"].to_numpy()
    raw = model.decision_function(ds.test[ds.features])
    uncal = 1 / (1 + np.exp(-raw))
    p = model.predict(ds.test[ds.features])
    metrics = probability_metrics(y, p)
    before = probability_metrics(y, uncal)
    metrics.update({"brier_uncalibrated": before["brier"], "ece_uncalibrated": before["ece"],
                    "log_loss_uncalibrated": before["log_loss"], "best_iteration": float(model.best_iteration_),
                    "test_rows": float(len(y)), "test_positive_rate": float(y.mean())})
    return _bundle(task, ds, s, model, p), metrics, {"scores": {"model": p}, "uncalibrated": uncal}


def _fit_regression(task: Task, ds: Dataset, s: TaskSettings, params: dict[str, Any]
                    ) -> tuple[TrainedModel, dict[str, float], dict[str, Any]]:
    model = CustomerModel(task.objective, params, s.num_boost_round)
    model.fit(ds.train[ds.features], ds.train["label"], ds.valid[ds.features], ds.valid["label"])
    y = ds.test["label"].to_numpy(float)
    pred = model.predict(ds.test[ds.features])
    metrics = regression_metrics(y, pred)
    metrics.update({"best_iteration": float(model.best_iteration_), "test_rows": float(len(y)),
                    "test_positive_rate": float((y > 0).mean()), "test_mean": float(y.mean()),
                    "test_total": float(y.sum()), "predicted_total": float(pred.sum())})
    return _bundle(task, ds, s, model, pred), metrics, {"scores": {"model": pred}}


def _targets(s: TaskSettings) -> list[str]:
    targets = list(getattr(s, "categories", None) or [])
    if not targets:
        raise GuardrailError("no target categories: the data has no categories before the first training cutoff")
    return targets


def _fit_multilabel(task: Task, ds: Dataset, s: TaskSettings, params: dict[str, Any]
                    ) -> tuple[TrainedModel, dict[str, float], dict[str, Any]]:
    targets = _targets(s)
    model = MultiLabelModel(targets, params, s.num_boost_round)
    model.fit(ds.train[ds.features], label_matrix(ds.train, targets), ds.valid[ds.features],
              label_matrix(ds.valid, targets))
    Y = label_matrix(ds.test, targets).to_numpy(float)
    bundle = _bundle(task, ds, s, model, None)
    regular = bundle.cross_sell_mask(ds.test)
    blends: dict[str, float] = {}
    if all(f"category_share_{slug(t)}" in ds.test.columns for t in targets):
        from crmscore.models.baselines import copurchase_confidence

        # the same rules as the copurchase baseline (train + validation rows), kept for scoring
        conf, pop = copurchase_confidence(pd.concat([ds.train, ds.valid], ignore_index=True), targets)
        bundle.info["copurchase"] = {"confidence": conf.tolist(), "popularity": pop.tolist()}
        raw = model.predict(ds.test[ds.features])
        for w in BLEND_WEIGHTS:  # logged so that the weight can be chosen on validation cutoffs
            blended = blend_copurchase(raw, ds.test, targets, bundle.info["copurchase"], w)
            m = _multilabel_result(Y, blended, regular)
            blends.update({f"blend_{w:g}_{k}": m[k] for k in ("hit_rate_at_3", "xsell_hit_rate_at_3", "ndcg",
                                                               "xsell_ndcg")})
        # the repeat-rate blends on top of the configured co-purchase blend (they leave the cross-sell view as is)
        with_rules = blend_copurchase(raw, ds.test, targets, bundle.info["copurchase"],
                                      float(getattr(s, "copurchase_blend", 0.0)))
        if all(f"category_order_share_{slug(t)}" in ds.test.columns for t in targets):
            for w in REPEAT_WEIGHTS:
                m = _multilabel_result(Y, blend_repeat(with_rules, ds.test, targets, w), regular)
                blends.update({f"repeat_{w:g}_{k}": m[k] for k in ("hit_rate_at_3", "ndcg")})
    S = bundle.predict(ds.test)
    metrics = _multilabel_result(Y, S, regular)
    metrics.update(blends)
    metrics["copurchase_blend"] = float(getattr(s, "copurchase_blend", 0.0))
    metrics["repeat_blend"] = float(getattr(s, "repeat_blend", 0.0))
    metrics.update({"best_iteration": float(model.best_iteration_),
                    "test_rows": float(len(Y)), "test_positive_rate": float((Y.sum(1) > 0).mean()),
                    "targets": float(len(targets))})
    if "bought_any" in ds.test.columns:  # buyers in the horizon who bought at least one target category
        buyers = ds.test["bought_any"].to_numpy(bool)
        metrics["buyer_coverage"] = float((Y.sum(1)[buyers] > 0).mean()) if buyers.any() else float("nan")
    if getattr(s, "category_timing", False):
        from crmscore.models import category_timing

        bundle.companions[category_timing.NAME] = category_timing.fit(
            ds.train, ds.valid, ds.features, targets, s.horizon_days, s.params, s.num_boost_round)
        ranked = np.where(regular, -np.inf, S)
        best = ranked.argmax(1)
        top = [targets[j] if np.isfinite(ranked[r, j]) else None for r, j in enumerate(best)]
        metrics.update(category_timing.evaluate(bundle.companions[category_timing.NAME], ds.test, ds.features,
                                                top, s.horizon_days))
    return bundle, metrics, {"scores": {"model": S}, "regular": regular}


def _multilabel_result(Y: np.ndarray, S: np.ndarray, regular: np.ndarray) -> dict[str, float]:
    """Multilabel metrics of scores S against labels Y (next basket: every category), again with the categories
    the cross-sell list leaves out removed from ranking and truth (xsell_*; bundle.cross_sell_mask), and the mean
    per-category ROC-AUC of both views (xsell: over the rows where the category is not left out)."""
    result = multilabel_metrics(Y, S)
    result.update({f"xsell_{k}": v for k, v in multilabel_metrics(Y, S, exclude=regular).items()})
    result["mean_roc_auc"] = mean_roc_auc(Y, S)
    result["xsell_mean_roc_auc"] = mean_roc_auc(Y, S, keep=~regular)
    return result


def _baselines(task: Task, ds: Dataset, s: TaskSettings, bundle: TrainedModel
               ) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Every baseline of the task on the same test rows, measured like the model. A failed baseline is
    reported (metrics NaN and the error), never hidden."""
    base_results: dict[str, dict[str, float]] = {}
    preds: dict[str, np.ndarray] = {}
    binp = BaselineInput(pd.concat([ds.train, ds.valid], ignore_index=True), ds.test, s, ds.categorical, ds.features)
    if task.kind == "multilabel":
        Y, regular = label_matrix(ds.test, bundle.targets).to_numpy(float), bundle.cross_sell_mask(ds.test)
    for b in (task.baselines if ds.mode == "transactions" else task.table_baselines):
        try:
            sc = np.asarray(b.score(binp), float)
            if task.kind == "multilabel":
                result = _multilabel_result(Y, sc, regular)
            elif task.kind == "uplift":
                from crmscore.models.uplift_evaluation import uplift_metrics

                result = uplift_metrics(ds.test["label"], ds.test["treated"], sc, share=getattr(s, "share", 0.3),
                                        spend=ds.test["spend"] if "spend" in ds.test else None)
            elif task.kind == "regression":
                result = regression_metrics(ds.test["label"].to_numpy(float), sc)
            else:
                result = ranking_metrics(ds.test["label"].to_numpy(), sc)
            base_results[b.name] = result
            preds[b.name] = sc
        except Exception as exc:  # a failed baseline is reported, never hidden
            log.warning("baseline %s failed: %s", b.name, exc)
            base_results[b.name] = {task.primary_metric: float("nan"), "error": str(exc)[:200]}  # type: ignore[dict-item]
    return base_results, preds


def _fit_companion(comp: Any, ds: Dataset, s: TaskSettings, bundle: TrainedModel) -> dict[str, float]:
    """Quantile models of a companion target on the rows where it is known; MAE of the median and the
    interval's coverage on the test rows, next to the companion's baseline."""
    def rows(df: pd.DataFrame) -> pd.DataFrame:
        return df[df[comp.target].notna()]

    train, valid, test = rows(ds.train), rows(ds.valid), rows(ds.test)
    upper = float(getattr(s, comp.upper_setting)) if comp.upper_setting else None
    models = []
    for q in comp.quantiles:
        m = CustomerModel("quantile", {**small_data_threads(len(train)), **s.params, "alpha": q}, s.num_boost_round)
        models.append(m.fit(train[ds.features], train[comp.target], valid[ds.features], valid[comp.target]))
    bundle.companions[comp.name] = CompanionModels(comp.name, tuple(comp.quantiles), models, (comp.lower, upper))
    out: dict[str, float] = {f"{comp.name}_test_rows": float(len(test))}
    if not len(test):
        return out
    pred = bundle.companions[comp.name].predict(test[ds.features])
    y = test[comp.target].to_numpy(float)
    out[f"{comp.name}_mae"] = float(np.mean(np.abs(pred[comp.name].to_numpy() - y)))
    inside = (y >= pred[f"{comp.name}_low"].to_numpy()) & (y <= pred[f"{comp.name}_high"].to_numpy())
    out[f"{comp.name}_interval_coverage"] = float(inside.mean())
    if comp.baseline is not None:
        out[f"{comp.name}_mae_baseline"] = float(np.mean(np.abs(comp.baseline(test, s) - y)))
    return out


def cross_validate(task: Task, ds: Dataset, s: TaskSettings, rounds: int) -> dict[str, float]:
    """Feature tables: stratified k-fold ROC-AUC on train + validation with a fixed number of rounds."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    df = pd.concat([ds.train, ds.valid], ignore_index=True)
    aucs = []
    for tr, te in StratifiedKFold(s.cv_folds, shuffle=True, random_state=s.seed).split(df, df["label"]):
        m = CustomerModel(task.objective, s.params, max(rounds, 10), calibrate=False)
        m.fit(df.iloc[tr][ds.features], df.iloc[tr]["label"])
        aucs.append(roc_auc_score(df.iloc[te]["label"], m.decision_function(df.iloc[te][ds.features])))
    return {"cv_roc_auc_mean": float(np.mean(aucs)), "cv_roc_auc_std": float(np.std(aucs))}


def tune(task: Task, ds: Dataset, s: TaskSettings, trials: int) -> dict[str, Any]:
    """Optuna search on the validation rows (never the test rows); each trial is an MLflow child run."""
    import mlflow
    import optuna
    from sklearn.metrics import roc_auc_score

    if task.kind == "multilabel":
        raise CrmscoreError(f"--tune is not available for {task.name} (one model per category); set LightGBM "
                            f"parameters with tasks.{task.name}.params instead")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    measure, metric = ((roc_auc_score, "roc_auc") if task.kind == "binary" else (normalized_gini, "normalized_gini"))

    def objective(trial: optuna.Trial) -> float:
        params = {"num_leaves": trial.suggest_int("num_leaves", 7, 31),
                  "max_depth": trial.suggest_int("max_depth", 3, 6),
                  "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.15, log=True),
                  "min_child_samples": trial.suggest_int("min_child_samples", 10, 100, log=True),
                  "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
                  "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10, log=True)}
        m = CustomerModel(task.objective, {**s.params, **params}, s.num_boost_round, calibrate=False)
        m.fit(ds.train[ds.features], ds.train["label"], ds.valid[ds.features], ds.valid["label"])
        value = float(measure(ds.valid["label"], m.decision_function(ds.valid[ds.features])))
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params(params)
            mlflow.log_metric(f"valid_{metric}", value)
        return value

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=s.seed))
    study.optimize(objective, n_trials=trials, show_progress_bar=False)
    log.info("tuning: best validation %s %.4f with %s", metric, study.best_value, study.best_params)
    return study.best_params


def train_task(task: Task, cfg: ProjectConfig, s: TaskSettings, *, as_of: Any = None, data: CustomerData | None = None,
               tune_trials: int = 0, register: bool = True, progress: bool = False) -> TrainResult:
    """Build the dataset, check guardrails, fit, evaluate against baselines, log and register in MLflow."""
    import mlflow

    from crmscore.models import registry

    if task.dataset is not None:
        if data is None and cfg.data.transactions is not None:
            from crmscore.data.loader import load_customer_data

            data = load_customer_data(cfg)
        ds = task.dataset(task, cfg, data, s, as_of, progress)
        s = ds.settings or s
    elif cfg.data.features is not None and cfg.data.transactions is None:
        if task.transactions_only:
            from crmscore.errors import ConfigError

            raise ConfigError(f"{task.name} needs purchases (data.transactions); this config has only a ready "
                              f"feature table")
        ds = feature_table_dataset(cfg, s)
    else:
        if data is None:
            from crmscore.data.loader import load_customer_data

            data = load_customer_data(cfg)
        ds = transactional_dataset(task, data, s, as_of, progress)
        s = ds.settings or s
    check_guardrails(ds, s)
    # the leakage alarm reads the validation rows; a task without them (lookalike: each bag holds out its own)
    # has nothing to measure it on
    strengths = check_single_feature_leakage(task, ds, s, cfg) if len(ds.valid) else []
    summary = usability_summary(ds)
    for line in summary.splitlines():
        log.info("data: %s", line)

    registry.configure()
    experiment_id = registry.experiment(task.name)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{task.name}-{dt.datetime.now():%Y%m%d-%H%M%S}") as run:
        params = tune(task, ds, s, tune_trials) if tune_trials else {}
        if s.shapes and task.kind != "multilabel" and len(ds.valid):
            from crmscore.models.explain_cost import choose_shape

            shape, trials = choose_shape(task.objective, [tuple(x) for x in s.shapes], s.shape_tolerance,
                                         ds.train[ds.features], ds.train["label"], ds.valid[ds.features],
                                         ds.valid["label"], {**s.params, **params}, s.num_boost_round)
            params = {**params, **shape}
            mlflow.log_dict({"tolerance": s.shape_tolerance, "chosen": shape, "trials": [vars(t) for t in trials]},
                            "shape_selection.json")
        bundle, metrics, base, curves = fit_and_evaluate(task, ds, s, params)
        if isinstance(bundle.model, CustomerModel) and len(ds.valid):
            from crmscore.models.explain_cost import explain_cost

            # what one row's explanation costs against its prediction, kept with the model (validation rows)
            bundle.info["explain_cost"] = explain_cost(bundle.model, ds.valid[ds.features])
            cost = bundle.info["explain_cost"]
            mlflow.log_metrics({f"explain_{k}": v for k, v in cost.items() if not isinstance(v, str)})
            mlflow.set_tag("explain_shap_engine", cost["shap_engine"])
        if ds.mode == "feature_table" and task.fit is None:
            metrics.update(cross_validate(task, ds, s, bundle.model.best_iteration_))
        primary = task.primary_metric
        sign = 1.0 if task.higher_is_better else -1.0
        if task.grade_margin is not None:  # the A grade's gain on the primary metric's own scale
            metrics["grade_margin"] = float(task.grade_margin(metrics))
        grade = quality_grade(sign * metrics[primary], sign * metrics[f"best_baseline_{primary}"],
                              metrics.get("grade_margin", GRADE_MARGIN))
        bundle.info.update({"trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                            "cutoffs": {k: str(v) for k, v in ds.cutoffs.items()}, "grade": grade,
                            "metrics": metrics, "baselines": base, "config": cfg.name,
                            "feature_set_version": ds.feature_set.version,
                            # the leakage check's strongest single features, for a reader of the model card
                            "single_feature_strength": [{"feature": x.feature, "value": round(x.value, 4),
                                                         "metric": x.metric, "target": x.target}
                                                        for x in strengths[:5]]})
        from crmscore.models.reference import build_reference

        # what the model learnt from, for drift monitoring (crmscore.monitoring.drift); segments on the model's
        # own RFM scale, the one scoring puts customers on
        learnt = pd.concat([ds.train, ds.valid], ignore_index=True)
        if ds.mode == "transactions" and bundle.rfm_scorer() is not None:
            from crmscore.features.segments import add_segments

            learnt = add_segments(learnt, cfg.segments, bundle.rfm_scorer())
        bundle.info["reference"] = build_reference(bundle, learnt, ds.features, ds.categorical, s.seed)
        result = TrainResult(task.name, bundle, metrics, base, grade, ds, run.info.run_id, curves=curves)
        with tempfile.TemporaryDirectory() as tmp:
            registry.log_training_run(result, cfg, s, summary, Path(tmp))
            tags = task.log_run(result, Path(tmp)) if task.log_run is not None else {}
            if register:
                result.version = registry.log_and_register(result, Path(tmp), tags=tags)
    log.info("%s: %s %.4f (best baseline %.4f) grade %s; run %s, version %s", task.name, primary, metrics[primary],
             metrics[f"best_baseline_{primary}"], grade, result.run_id, result.version)
    return result
