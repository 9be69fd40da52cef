"""`crmscore monitor`: check every served model, write the report, log the figures to MLflow.

For each model with the alias (default @champion): drift of its population at the cutoff against its
training reference; segment and lifecycle migration between the two latest published snapshots of the
online store (or, when none were published, between the cutoff and `compare_days` before it); and the
realised performance of the scores written for it (batch files given, the service's prediction log),
beside the figures it was promoted on. The figures go to an MLflow run of experiment
`crmscore-monitoring` tagged with the model and version, and the headline onto the model version's tags
(`monitor_as_of`, `monitor_drift_status`, `monitor_realised_roc_auc`, `monitor_retrain`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import ProjectConfig
from crmscore.data.loader import CustomerData
from crmscore.features.build import as_of_timestamp
from crmscore.monitoring.check import ModelCheck, check_model
from crmscore.monitoring.realised import read_score_files, scores_from_log

log = logging.getLogger(__name__)
MONITORED = ("churn", "next-purchase", "expected-spend", "next-category")
EXPERIMENT = "monitoring"


def published_segments(home: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None, dict[str, Any]]:
    """The segments of the current and previous published snapshots in the SQLite online store, if kept."""
    path = Path(home) / "online_store.sqlite"
    if not path.exists():
        return None, None, {}
    from crmscore.features.store import SqliteStore

    store = SqliteStore(path)
    meta = store.meta()
    return store.segment_snapshot("current"), store.segment_snapshot("previous"), meta.get("segments") or {}


def model_versions_settings(name: str, versions: set[str]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
    """Settings and promised test figures of each version that wrote scores."""
    from crmscore.models import registry
    from crmscore.monitoring.check import promised_figures

    settings, promised = {}, {}
    for v in sorted(versions):
        try:
            bundle, _ = registry.load_bundle(name, v)
        except registry.RegistryError:
            log.warning("%s version %s wrote scores but is not in the registry: its scores are left out", name, v)
            continue
        settings[v], promised[v] = bundle.settings, promised_figures(bundle)
    return settings, promised


def monitor(cfg: ProjectConfig, data: CustomerData, *, as_of: Any = None, models: list[str] | None = None,
            alias: str = "champion", score_files: list[Path] | None = None, prediction_log: Path | None = None,
            home: Path | None = None, compare_days: int = 30, log_to_mlflow: bool = True) -> list[ModelCheck]:
    """Check each model; returns the checks (write them with crmscore.monitoring.report)."""
    from crmscore.models import registry
    from crmscore.scoring.batch import model_features

    registry.configure()
    cut = as_of_timestamp(as_of) if as_of is not None else data.default_as_of()
    current, previous, _ = published_segments(home) if home is not None else (None, None, {})
    file_scores = read_score_files(score_files or [])
    log_rows: list[dict[str, Any]] = []
    if prediction_log is not None and Path(prediction_log).exists():
        from crmscore.scoring.predlog import read_log

        log_rows = read_log(prediction_log)
    checks = []
    for name in models or list(MONITORED):
        try:
            bundle, mv = registry.load_bundle(name, alias)
        except registry.RegistryError as exc:
            if models:
                raise
            log.debug("not monitored: %s", exc)
            continue
        if bundle.mode != "transactions":
            log.warning("%s v%s was trained on a ready feature table: monitor it from its scoring file", name, mv.version)
            continue
        prev = previous
        if prev is None or current is None:
            earlier = cut - pd.Timedelta(days=compare_days)
            prev = model_features(bundle, data, earlier)[["customer_id", "rfm_segment", "lifecycle_stage"]] \
                if earlier > data.ts_range()[0] else None
        scores = _scores_of(name, file_scores, log_rows, cfg.timezone)
        settings, promised = model_versions_settings(name, set(scores["model_version"].astype(str))) \
            if len(scores) else ({}, {})
        check = check_model(bundle, str(mv.version), data, cut, cfg.monitoring,
                            scores=scores if len(scores) else None, model_settings=settings, promised=promised,
                            previous_segments=prev)
        checks.append(check)
        if log_to_mlflow:
            log_check(check)
    return checks


def _scores_of(name: str, files: pd.DataFrame, log_rows: list[dict[str, Any]], timezone: str) -> pd.DataFrame:
    parts = []
    if len(files):
        # files from `crmscore score` name their model; older ones (no column) are taken as this model's
        parts.append(files[files["model"].fillna(name) == name] if "model" in files else files)
    if log_rows:
        parts.append(scores_from_log(log_rows, name, timezone))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=["customer_id", "score", "model_version", "as_of"])
    return pd.concat(parts, ignore_index=True)


def headline(check: ModelCheck) -> dict[str, float]:
    """The few numbers worth a gauge or a metric: worst feature PSI, score PSI, features to act on / watch,
    realised ROC-AUC and its gap to the promoted figure, scores waiting for their outcome."""
    psis = [f.psi for f in check.features]
    out = {"feature_psi_max": float(max(psis)) if psis else float("nan"),
           "features_act": float(sum(f.status == "act" for f in check.features)),
           "features_watch": float(sum(f.status == "watch" for f in check.features)),
           "score_psi": check.score.psi if check.score else float("nan"),
           "population": float(check.rows)}
    if check.realised is not None:
        now = check.realised.overall(check.version)
        out["scores_waiting"] = float(check.realised.waiting)
        out["scores_judged"] = float(check.realised.judged)
        if now is not None:
            out["realised_roc_auc"] = now["roc_auc"]
            out["realised_pr_auc"] = now["pr_auc"]
            out["realised_ece"] = now["ece"]
            if "roc_auc" in check.promised:
                out["realised_roc_auc_gap"] = now["roc_auc"] - check.promised["roc_auc"]
    return out


def log_check(check: ModelCheck) -> str:
    """One MLflow run per check (experiment crmscore-monitoring, tags model and version) and the headline as
    tags of the model version. Returns the run id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from crmscore.models import registry

    head = headline(check)
    with mlflow.start_run(experiment_id=registry.experiment(EXPERIMENT),
                          run_name=f"{check.model}-v{check.version}-{check.as_of}") as run:
        mlflow.set_tags({"model": check.model, "model_version": check.version, "as_of": check.as_of,
                         "retrain": str(check.verdict.get("retrain"))})
        metrics = {k: v for k, v in head.items() if np.isfinite(v)}
        metrics.update({f"psi_{f.feature}": f.psi for f in check.features if np.isfinite(f.psi)})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(check.to_dict(), "monitoring/check.json")
    client = MlflowClient()
    tags = {"monitor_as_of": check.as_of, "monitor_drift_status": check.verdict.get("drift_status", ""),
            "monitor_retrain": str(check.verdict.get("retrain")), "monitor_run_id": run.info.run_id,
            "monitor_reasons": "; ".join(check.verdict.get("reasons", []))[:4000]}
    if "realised_roc_auc" in head:
        tags["monitor_realised_roc_auc"] = f"{head['realised_roc_auc']:.4f}"
    for k, v in tags.items():
        client.set_model_version_tag(check.model, check.version, k, v)
    return run.info.run_id


def write_json(checks: list[ModelCheck], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = clean({"models": [{**c.to_dict(), "headline": headline(c)} for c in checks]})
    path.write_text(json.dumps(body, indent=1, allow_nan=False))
    return path


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, numpy numbers plain ones, anything else odd its text."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)
