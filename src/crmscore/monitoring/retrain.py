"""The retraining loop: a challenger trained on the latest data against the champion, on the same
out-of-time rows, promoted only when it is better by more than noise.

Steps for one task: train a challenger as of the end of the data (registered @challenger); take its
out-of-time test rows (the newest cutoff whose outcome is known); refuse when the champion's own
training data does not predate those rows (it would be judged on outcomes it may have learnt from);
score both models on the rows and draw a paired bootstrap of the primary metric's difference
(challenger - champion, the same resampled customers for both); promote only when the lower end of
the `confidence` interval is above zero. Every decision, promotion or refusal, is recorded as tags on
the challenger's model version (who, when, figures, reason) and on the champion's the refusal or the
replacement.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from crmscore.config import MonitoringConfig, ProjectConfig
from crmscore.data.loader import CustomerData
from crmscore.models.bundle import TrainedModel, label_matrix
from crmscore.models.evaluation import multilabel_metrics, normalized_gini
from crmscore.models.tasks import get_task

log = logging.getLogger(__name__)


def primary_metric(bundle: TrainedModel, y: Any, pred: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if bundle.kind == "multilabel":
        return multilabel_metrics(y, pred)[bundle.primary_metric]
    if bundle.kind == "regression":
        return normalized_gini(y, pred)
    return float(roc_auc_score(y, pred))


def paired_bootstrap(bundle: TrainedModel, y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, n: int,
                     confidence: float, seed: int = 0) -> dict[str, float]:
    """Primary metric of both predictions of the same rows, and the `confidence` interval of their difference
    over `n` resamples of the same customers (a resample with a single class is drawn again)."""
    new, old = primary_metric(bundle, y, p_new), primary_metric(bundle, y, p_old)
    rng = np.random.default_rng(seed)
    diffs: list[float] = []
    while len(diffs) < n:
        idx = rng.integers(0, len(y), len(y))
        if bundle.kind == "binary" and len(np.unique(y[idx])) < 2:
            continue
        diffs.append(primary_metric(bundle, y[idx], p_new[idx]) - primary_metric(bundle, y[idx], p_old[idx]))
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [tail, 1 - tail])
    return {"challenger": float(new), "champion": float(old), "difference": float(new - old),
            "interval_low": float(lo), "interval_high": float(hi), "confidence": confidence, "resamples": n,
            "rows": int(len(y))}


def comparison_predictions(challenger: TrainedModel, champion: TrainedModel, rows: pd.DataFrame,
                           data: CustomerData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of the challenger's out-of-time rows and both models' predictions of them, each model on its own
    feature set (the two may differ: a category vocabulary is learnt from each one's first cutoff)."""
    from crmscore.scoring.batch import model_features

    y = label_matrix(rows, challenger.targets).to_numpy(float) if challenger.kind == "multilabel" \
        else rows["label"].to_numpy(float)
    p_new = np.asarray(challenger.predict(rows))
    if all(c in rows.columns for c in champion.features) and \
            champion.feature_set.version == challenger.feature_set.version:
        own = rows
    else:
        cut = pd.Timestamp(rows["as_of"].iloc[0])
        feats = model_features(champion, data, cut).astype({"customer_id": str}).set_index("customer_id")
        own = feats.reindex(rows["customer_id"].astype(str)).reset_index()
    return y, p_new, np.asarray(champion.predict(own))


def who() -> str:
    """Who decided: CRMSCORE_USER (a scheduler sets it) or the login name."""
    try:
        return os.environ.get("CRMSCORE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record(name: str, version: str, decision: dict[str, Any]) -> None:
    """Tags on the model version: retrain_decision, retrain_reason, retrain_by, retrain_at, retrain_figures."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    figures = json.dumps(decision.get("figures", {}), default=str)
    for key, value in (("retrain_decision", decision["decision"]), ("retrain_reason", decision["reason"]),
                       ("retrain_by", decision["by"]), ("retrain_at", decision["at"]), ("retrain_figures", figures)):
        client.set_model_version_tag(name, version, key, str(value)[:5000])


def retrain(task_name: str, cfg: ProjectConfig, data: CustomerData, mcfg: MonitoringConfig, *,
            evidence: dict[str, Any] | None = None, settings_overrides: dict[str, Any] | None = None,
            progress: bool = False) -> dict[str, Any]:
    """Train a challenger on the latest data and promote it over the champion only when it is better by more
    than noise and the comparison is fair. Returns the decision (also recorded on the model versions)."""
    from mlflow.tracking import MlflowClient

    from crmscore.models import registry
    from crmscore.models.pipeline import train_task

    if cfg.data.transactions is None:
        from crmscore.errors import ConfigError

        raise ConfigError(f"retrain {task_name}: the config has no data.transactions; retraining compares models on "
                          f"out-of-time rows, which a ready feature table (data.features) has none of")
    registry.configure()
    task = get_task(task_name)
    settings = task.settings(cfg.tasks.get(task_name), **(settings_overrides or {}))
    try:
        champion, champion_mv = registry.load_bundle(task_name, registry.CHAMPION)
    except registry.RegistryError:
        champion, champion_mv = None, None
    result = train_task(task, cfg, settings, data=data, progress=progress)
    challenger, version = result.bundle, str(result.version)
    rows = result.dataset.test
    test_cutoff = pd.Timestamp(result.dataset.cutoffs["test"])
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    decision: dict[str, Any] = {"model": task_name, "challenger": version, "by": who(), "at": now,
                                "champion_before": str(champion_mv.version) if champion_mv else None,
                                "test_cutoff": str(test_cutoff.date()), "evidence": evidence or {}}
    client = MlflowClient()

    def finish(promote: bool, reason: str, figures: dict[str, Any] | None = None) -> dict[str, Any]:
        decision.update(decision="promoted" if promote else "refused", reason=reason, figures=figures or {},
                        champion_after=version if promote else decision["champion_before"])
        if promote:
            client.set_registered_model_alias(task_name, registry.CHAMPION, version)
            client.set_model_version_tag(task_name, version, "promoted_to_champion", now)
        record(task_name, version, decision)
        if champion_mv is not None:
            client.set_model_version_tag(task_name, champion_mv.version, "retrain_last_challenge",
                                         json.dumps({"challenger": version, "decision": decision["decision"],
                                                     "at": now, "by": decision["by"], "reason": reason})[:5000])
        (log.info if promote else log.warning)("%s: %s v%s: %s", task_name, decision["decision"], version, reason)
        return decision

    if champion is None:
        return finish(True, "no champion yet: the first model becomes champion")
    trained_until = champion.info.get("cutoffs", {}).get("as_of")
    if trained_until is None or pd.Timestamp(trained_until) > test_cutoff:
        return finish(False, f"champion v{champion_mv.version} was trained on data up to {trained_until}, not before "
                             f"the comparison rows' cutoff {test_cutoff.date()}: it may have learnt their outcomes, "
                             f"so the comparison would favour it; champion kept")
    if champion.kind != challenger.kind or champion.targets != challenger.targets:
        return finish(False, f"champion v{champion_mv.version} predicts something else than the challenger "
                             f"({champion.kind} {champion.targets[:3]}); champion kept")
    y, p_new, p_old = comparison_predictions(challenger, champion, rows, data)
    figures = paired_bootstrap(challenger, y, p_new, p_old, mcfg.bootstrap, mcfg.confidence, settings.seed)
    figures["metric"] = challenger.primary_metric
    label = registry.METRIC_LABELS.get(figures["metric"], figures["metric"])
    span = (f"{label} {figures['challenger']:.4f} vs {figures['champion']:.4f} on {figures['rows']:,} out-of-time "
            f"customers at {test_cutoff.date()}; {figures['confidence']:.0%} paired-bootstrap interval of the "
            f"difference [{figures['interval_low']:+.4f}, {figures['interval_high']:+.4f}]")
    if figures["interval_low"] > 0:
        return finish(True, f"challenger better than champion v{champion_mv.version}: {span}", figures)
    return finish(False, f"challenger not better than champion v{champion_mv.version} by more than noise: {span}; "
                         f"champion kept", figures)
