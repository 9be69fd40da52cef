"""MLflow: tracking, the model registry and aliases.

Tracking URI from settings (CRMSCORE_TRACKING_URI, else MLflow's MLFLOW_TRACKING_URI; default a local
SQLite file `mlflow.db` with artifacts in `./mlruns`, no server). Models are registered under the task's name with alias
`challenger`; `promote` moves `champion`. Nothing downstream loads a model by run id: scoring and the
service ask for `models:/<name>@<alias>` or a pinned version.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

import crmscore
from crmscore.errors import ConfigError, CrmscoreError
from crmscore.models.bundle import TrainedModel
from crmscore.settings import Settings, get_settings

if TYPE_CHECKING:
    from crmscore.config import ProjectConfig
    from crmscore.models.run import TrainResult
    from crmscore.models.tasks import TaskSettings

log = logging.getLogger(__name__)
CHALLENGER, CHAMPION = "challenger", "champion"
PIP_REQUIREMENTS = ["lightgbm>=4.5,<5", "pandas>=2.2", "numpy>=1.26", "scikit-learn>=1.5"]


def pip_requirements() -> list[str]:
    """A model's requirements, crmscore pinned to the version that trained it: the bundle's pickled parts and
    its scoring code belong to that version, and an unpinned `crmscore` ran whatever was installed."""
    return [*PIP_REQUIREMENTS, f"crmscore=={crmscore.__version__}"]


METRIC_LABELS = {"roc_auc": "ROC-AUC", "normalized_gini": "normalised Gini", "hit_rate_at_3": "hit rate at 3"}


class RegistryError(CrmscoreError):
    """A model, alias or run is not where it was asked for."""


class PromotionRefused(CrmscoreError):
    exit_code = 3


def configure(settings: Settings | None = None) -> Settings:
    settings = settings or get_settings()
    _check_store_uri(settings.tracking_uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    if settings.registry_uri:
        mlflow.set_registry_uri(settings.registry_uri)
    return settings


def _check_store_uri(uri: str) -> None:
    """A ConfigError for a tracking URI MLflow 3 would fail on later with a traceback: a plain folder (the
    file store is refused) or a SQLite file in a folder that does not exist."""
    from urllib.parse import urlparse

    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        raise ConfigError(f"CRMSCORE_TRACKING_URI={uri!r} is a folder; MLflow 3 needs a database such as "
                          f"sqlite:///mlflow.db (or an http:// tracking server)")
    if scheme == "sqlite":
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise ConfigError(f"CRMSCORE_TRACKING_URI={uri!r}: the folder {folder} does not exist; create it or "
                              f"point the URI elsewhere")


def experiment(task: str, settings: Settings | None = None) -> str:
    """The task's experiment id, created on first use (local artifacts in settings.artifact_location)."""
    settings = settings or get_settings()
    name = f"crmscore-{task}"
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not settings.tracking_uri.startswith(("http://", "https://", "databricks")):
        location = Path(settings.artifact_location).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The checkout's commit (once a process: every run of it logs the same)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextlib.contextmanager
def _no_integer_schema_hint() -> Iterator[None]:
    """Silence MLflow's hint that integer columns cannot hold missing values, where it does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        yield


def _example(X: pd.DataFrame) -> pd.DataFrame:
    """The model's input example: X's first 3 rows, numbers as doubles (a missing count at serving time must not
    break the schema), other columns as objects with None for missing. Built column by column into a new frame:
    assigning ~150 columns into a copy one by one split its block each time (about 2 s a registration)."""
    head = X.head(3)
    cols = {}
    for c in head.columns:
        col = head[c]
        cols[c] = (col.astype("float64") if pd.api.types.is_numeric_dtype(col)
                   else col.astype(object).where(col.notna(), None))
    return pd.DataFrame(cols, index=head.index)


def log_training_run(result: TrainResult, cfg: ProjectConfig, s: TaskSettings, summary: str, tmp: Path) -> None:
    """Params, metrics side by side with baselines, datasets, plots and the test set of the active run."""
    import mlflow.data

    from crmscore.models.evaluation import (
        comparison_columns,
        save_plots,
        save_ranking_plot,
        save_regression_plots,
    )

    ds, bundle = result.dataset, result.bundle
    mlflow.set_tags({"task": result.task, "mode": ds.mode, "grade": result.grade, "config": cfg.name,
                     "mlflow.source.git.commit": git_commit()})
    params = {"task": result.task, "mode": ds.mode, "feature_set_version": ds.feature_set.version,
              "n_features": len(ds.features), "code_version": git_commit()[:12],
              **{f"cutoff_{k}": str(v)[:200] for k, v in ds.cutoffs.items()},
              **{k: v for k, v in s.model_dump().items() if k != "params"},
              **{f"lgbm_{k}": v for k, v in bundle.model.params.items()}}
    if "categories" in params:
        params["categories"] = ", ".join(params["categories"] or [])[:500]
    mlflow.log_params(params)
    log_comparison(result.metrics, result.baselines, comparison_columns(bundle.kind))
    for part, df in (("training", pd.concat([ds.train, ds.valid])), ("testing", ds.test)):
        frame = df[[*ds.features, "label"]]
        with _no_integer_schema_hint():  # the datasets' real dtypes, counts as integers
            mlflow.log_input(mlflow.data.from_pandas(frame, name=f"{result.task}-{part}", targets="label"),
                             context=part)
    # plots
    y = ds.test["label"].to_numpy()
    curves_dir = tmp / "plots"
    curves = result.curves
    title = f"{result.task} (out-of-time test)" if ds.mode == "transactions" else result.task
    scores = {**curves["scores"], **curves.get("baselines", {})}
    if bundle.kind == "binary":
        save_plots(y, scores, {"uncalibrated": curves["uncalibrated"], "calibrated": curves["scores"]["model"]},
                   curves_dir, title)
    elif bundle.kind == "regression":
        save_regression_plots(y, scores, curves_dir, title)
    elif bundle.kind == "uplift":
        from crmscore.models.uplift_evaluation import save_uplift_plots, uplift_by_decile

        save_uplift_plots(y, ds.test["treated"].to_numpy(), scores, curves_dir, title)
        mlflow.log_table(uplift_by_decile(y, ds.test["treated"].to_numpy(), curves["scores"]["model"]).round(6),
                         "evaluation/uplift_by_decile.json")
    else:
        save_ranking_plot({"model": result.metrics, **result.baselines}, curves_dir, title)
        from crmscore.models.baselines import copurchase_rules

        train = pd.concat([ds.train, ds.valid], ignore_index=True)
        rules = copurchase_rules(train, bundle.targets).sort_values("lift", ascending=False)
        mlflow.log_table(rules.round(6), "evaluation/copurchase_rules.json")
    sample = ds.test.sample(min(len(ds.test), s.explain_sample), random_state=s.seed)
    expl = save_shap_plot(bundle, sample, ds.features, curves_dir / "shap_summary.png")
    for name, comp in bundle.companions.items():  # companions: gain importance of the median model
        gain = comp.models[1].booster_.feature_importance("gain")
        mlflow.log_dict(dict(sorted(zip(comp.models[1].feature_names_, (gain / max(gain.sum(), 1e-12)).round(6).tolist()),
                                    key=lambda kv: -kv[1])), f"evaluation/{name}_importance.json")
    mlflow.log_artifacts(str(curves_dir), "plots")
    if bundle.kind == "multilabel":  # mean |SHAP| over every category's model
        mag = [np.abs(bundle.model.head(t).explain(sample[ds.features]).contributions).mean(0)
               for t in bundle.targets if bundle.model.head(t) is not None]
        mean_abs = np.mean(mag, axis=0)
    else:
        mean_abs = np.abs(expl.contributions).mean(0)
    log_global_importance(bundle, ds.features, mean_abs)
    mlflow.log_text(summary, "evaluation/data_usability.txt")
    if ds.decisions:
        mlflow.log_dict(ds.decisions, "evaluation/column_typing.json")
    log_test_set(ds.test, tmp)
    if bundle.kind == "uplift":  # a campaign report for marketers, with the plots above
        from crmscore.models.uplift_report import write_campaign_report

        report = write_campaign_report(result, tmp / "report.html", curves_dir)
        bundle.info["campaign_report"] = report.read_text()
        mlflow.log_artifact(str(report), "evaluation")
    else:
        from crmscore.models.report import write_evaluation_report

        mlflow.log_artifact(str(write_evaluation_report(result, tmp / "report.html")), "evaluation")
    bundle.info["run_id"] = result.run_id


def log_comparison(metrics: dict[str, float], baselines: dict[str, dict[str, float]],
                   columns: list[str] | tuple[str, ...]) -> None:
    """The run's metrics, each baseline's as `<metric>_baseline_<name>`, and the model and baselines side by side
    on `columns` (evaluation/comparison.json), in the active run."""
    mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
    rows = [{"name": "model", **{k: metrics.get(k) for k in columns}}]
    for name, m in baselines.items():
        mlflow.log_metrics({f"{k}_baseline_{name}": v for k, v in m.items()
                            if isinstance(v, float) and np.isfinite(v)})
        rows.append({"name": f"baseline: {name}", **{k: m.get(k) for k in columns}})
    mlflow.log_table(pd.DataFrame(rows), "evaluation/comparison.json")


def save_shap_plot(bundle: TrainedModel, rows: pd.DataFrame, features: list[str], path: Path) -> Any:
    """The SHAP summary plot of `rows` (the model's explanation in the score's space) saved to path; returns
    the explanation."""
    from crmscore.models.evaluation import save_shap_summary

    expl = bundle.model.explain(rows[features])
    enc = bundle.model._encode(rows[features])
    values = np.column_stack([enc[c].cat.codes.to_numpy() if c in bundle.model.categories_ else enc[c].to_numpy()
                              for c in features]).astype(float)
    save_shap_summary(expl.contributions, values, features, path)
    return expl


def log_global_importance(bundle: TrainedModel, features: list[str], mean_abs: np.ndarray) -> None:
    """Mean |SHAP| per feature, largest first: kept in the bundle (the operations page shows it) and logged as
    evaluation/global_importance.json."""
    importance = dict(sorted(zip(features, np.round(mean_abs, 6).tolist()), key=lambda kv: -kv[1]))
    bundle.info["global_importance"] = importance
    mlflow.log_dict(importance, "evaluation/global_importance.json")


def log_test_set(rows: pd.DataFrame, tmp: Path) -> None:
    """The labelled test rows (evaluation/test_set.parquet): what `crmscore promote` scores both versions on."""
    path = tmp / "test_set.parquet"
    rows.to_parquet(path, index=False)
    mlflow.log_artifact(str(path), "evaluation")


def log_and_register(result: TrainResult, tmp: Path, alias: str = CHALLENGER,
                     tags: dict[str, str] | None = None) -> str:
    """Register a training run's model under its task name (register_bundle), its test rows as the example;
    tags: the task's extra version tags (Task.log_run)."""
    ds = result.dataset
    return register_bundle(result.task, result.bundle, ds.test[ds.features], tmp, run_id=result.run_id,
                           grade=result.grade, metrics=result.metrics,
                           test_cutoff=str(ds.cutoffs.get("test", ds.cutoffs.get("split", ""))), alias=alias,
                           tags=tags)


def register_bundle(name: str, bundle: TrainedModel, example_rows: pd.DataFrame, tmp: Path, *, run_id: str | None,
                    grade: str, metrics: dict[str, float], test_cutoff: str, alias: str = CHALLENGER,
                    tags: dict[str, str] | None = None) -> str:
    """Log the bundle as a pyfunc model in the active run, register it as `name` and point `alias` at it.

    example_rows: feature rows the model was tested on (the input example and signature come from them);
    test_cutoff: what the test rows were (a date, or a description); tags: extra version tags."""
    from mlflow.models import infer_signature

    from crmscore.models.pyfunc import TrainedModelPyfunc

    bundle.info["crmscore_version"] = crmscore.__version__  # checked by the service at load
    # the feature contract: the service serves the model only on a snapshot with these same definitions
    bundle.info["feature_definitions"] = bundle.feature_definitions()
    bdir = bundle.save(tmp / "bundle")
    example = _example(example_rows)
    out = TrainedModelPyfunc()
    out.bundle = bundle
    with _no_integer_schema_hint():  # inputs are doubles (_example); integer outputs (decile) are never missing
        signature = infer_signature(example, out.predict(None, example), params={"explain": False})
    entry = Path(__file__).with_name("pyfunc_entry.py")  # models from code: no pickled object in the model
    info = mlflow.pyfunc.log_model(name="model", python_model=str(entry), artifacts={"bundle": str(bdir)},
                                   signature=signature, input_example=example, pip_requirements=pip_requirements(),
                                   metadata={"feature_set_version": bundle.feature_set.version,
                                             "feature_definitions": bundle.info["feature_definitions"]})
    primary = bundle.primary_metric
    version_tags = {"run_id": run_id or "", "grade": grade, "primary_metric": primary, "test_cutoff": test_cutoff,
                    "feature_set_version": bundle.feature_set.version, "crmscore_version": crmscore.__version__}
    for key in {primary, "roc_auc"}:
        if key in metrics:
            version_tags[key] = f"{metrics[key]:.4f}"
    mv = mlflow.register_model(info.model_uri, name, tags={**version_tags, **(tags or {})})
    client = MlflowClient()
    client.set_registered_model_alias(name, alias, mv.version)
    log.info("registered %s version %s as @%s", name, mv.version, alias)
    return str(mv.version)


# -- loading and promotion -----------------------------------------------------------------------
def model_uri(name: str, ref: str) -> str:
    """`models:/name@alias` for an alias, `models:/name/3` for a pinned version."""
    return f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"


def resolve_version(name: str, ref: str) -> Any:
    client = MlflowClient()
    try:
        return client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)
    except mlflow.exceptions.MlflowException as exc:
        hint = (f"run `crmscore promote {name}` first, or ask for @challenger" if ref == CHAMPION
                else f"train it first with `crmscore train {_train_command(name)} --config ...`")
        raise RegistryError(f"model {name!r} has no {'version' if ref.isdigit() else 'alias'} {ref!r} in the "
                            f"registry at {mlflow.get_tracking_uri()}: {hint}") from exc


def _train_command(name: str) -> str:
    from crmscore.models.tasks import get_task

    try:
        return get_task(name).name
    except CrmscoreError:
        return name.split("-")[0]


def load_bundle(name: str, ref: str = CHAMPION) -> tuple[TrainedModel, Any]:
    """The TrainedModel registered as name@ref (alias or version), and its ModelVersion."""
    mv = resolve_version(name, ref)
    pyfunc = mlflow.pyfunc.load_model(model_uri(name, str(mv.version)))
    bundle: TrainedModel = pyfunc.unwrap_python_model().bundle
    bundle.info.setdefault("version", str(mv.version))
    return bundle, mv


def _test_set(bundle: TrainedModel) -> pd.DataFrame:
    run_id = bundle.info.get("run_id")
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/test_set.parquet")
    return pd.read_parquet(path)


def promote(name: str, *, force: bool = False, reason: str | None = None) -> dict[str, Any]:
    """Point @champion at @challenger when it beats the champion on the challenger's out-of-time test.

    Both models score the same test rows (the challenger's, logged with its run) and are compared on the
    task's primary metric (ROC-AUC for churn and next-purchase, normalised Gini for expected-spend, hit
    rate at 3 for next-category; higher is better). With force=True a reason is required and recorded
    on the version. The outcome has `metric`, `challenger_value`, `champion_value` and `test_rows` (and
    `challenger_roc_auc` / `champion_roc_auc` when the metric is ROC-AUC).
    """
    if force and not reason:
        raise PromotionRefused("--force needs --reason \"...\": forced promotions are recorded with their reason")
    client = MlflowClient()
    challenger, cv = load_bundle(name, CHALLENGER)
    try:
        champion_mv = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        champion_mv = None
    outcome: dict[str, Any] = {"model": name, "challenger": str(cv.version),
                               "champion_before": str(champion_mv.version) if champion_mv else None}
    if champion_mv is not None and str(champion_mv.version) == str(cv.version):
        outcome.update(promoted=False, message=f"{name} version {cv.version} is already @champion")
        return outcome
    if champion_mv is not None:
        champion, _ = load_bundle(name, str(champion_mv.version))
        test = _test_set(challenger)
        missing = [c for c in champion.features if c not in test.columns]
        if missing:
            raise PromotionRefused(f"champion version {champion_mv.version} needs features the challenger's test set "
                                   f"lacks ({missing[:5]}): retrain the champion's feature set or promote with "
                                   f"--force --reason")
        metric = challenger.primary_metric
        if champion.kind != challenger.kind or champion.targets != challenger.targets:
            raise PromotionRefused(f"champion version {champion_mv.version} predicts something else than the "
                                   f"challenger ({champion.kind} {champion.targets[:3]} vs {challenger.kind} "
                                   f"{challenger.targets[:3]}): promote with --force --reason")
        new = float(challenger.evaluate(test))
        old = float(champion.evaluate(test))
        outcome.update(metric=metric, challenger_value=new, champion_value=old, test_rows=len(test))
        if metric == "roc_auc":
            outcome.update(challenger_roc_auc=new, champion_roc_auc=old)
        label = METRIC_LABELS.get(metric, metric)
        if new <= old and not force:
            raise PromotionRefused(
                f"challenger {name} v{cv.version} ({label} {new:.4f}) does not beat champion v{champion_mv.version} "
                f"({old:.4f}) on the challenger's out-of-time test ({len(test):,} customers); @champion stays on "
                f"v{champion_mv.version}. Use --force --reason \"...\" to promote anyway.")
    client.set_registered_model_alias(name, CHAMPION, cv.version)
    client.set_model_version_tag(name, cv.version, "promoted_to_champion", pd.Timestamp.now("UTC").isoformat())
    if force:
        client.set_model_version_tag(name, cv.version, "promotion_forced_reason", reason or "")
        log.warning("forced promotion of %s v%s: %s", name, cv.version, reason)
    outcome.update(promoted=True, forced=force, reason=reason,
                   message=f"{name} version {cv.version} is now @champion")
    log.info(outcome["message"])
    return outcome


def describe(name: str) -> list[dict[str, Any]]:
    """Versions of a registered model with their aliases and tags (for `crmscore models`)."""
    client = MlflowClient()
    try:
        registered = client.get_registered_model(name)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise RegistryError(f"no registered model {name!r} in the registry at {mlflow.get_tracking_uri()}: train it "
                            f"first with `crmscore train {name} --config ...`") from exc
    # search_model_versions leaves ModelVersion.aliases empty on MLflow 3's SQL store; the registered model
    # holds them (alias -> version)
    held: dict[str, list[str]] = {}
    for alias, version in registered.aliases.items():
        held.setdefault(str(version), []).append(alias)
    out = []
    for mv in client.search_model_versions(f"name = '{name}'"):
        out.append({"version": mv.version, "aliases": sorted({*mv.aliases, *held.get(str(mv.version), [])}),
                    "tags": dict(mv.tags), "created": pd.Timestamp(mv.creation_timestamp, unit="ms").isoformat()})
    return sorted(out, key=lambda r: int(r["version"]))


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
