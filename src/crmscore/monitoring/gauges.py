"""The monitoring headline as Prometheus gauges on the service's /metrics.

`crmscore monitor` writes its headline to `<CRMSCORE_HOME>/monitoring/latest.json`; the service reads that
file when /metrics is asked for and it changed, and sets one gauge per headline figure, labelled with the
model and version (a handful of label sets: one per served model). Gauges are "mostrecent" in
prometheus_client's multiprocess mode, so every worker reports the same last value.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
LATEST = Path("monitoring") / "latest.json"
GAUGES = {
    "feature_psi_max": "Largest PSI of a feature against the model's training reference",
    "features_act": "Features whose drift is past the act threshold",
    "features_watch": "Features whose drift is past the watch threshold",
    "score_psi": "PSI of the score distribution against the training reference",
    "realised_roc_auc": "ROC-AUC of written scores against what customers then did",
    "realised_roc_auc_gap": "Realised ROC-AUC minus the ROC-AUC the model was promoted on",
    "scores_waiting": "Written scores whose horizon has not passed yet",
    "retrain": "1 when monitoring says retrain, else 0",
    "checked_timestamp": "When monitoring last checked the model (Unix seconds)",
}


def write_latest(home: Path, models: list[dict[str, Any]]) -> Path:
    """models: [{model, version, as_of, headline: {...}, retrain: bool, ...the check}]; also what the
    operations page's Monitoring view shows."""
    import time

    path = Path(home) / LATEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"checked": time.time(), "models": models}, allow_nan=False, default=str))
    tmp.replace(path)
    return path


@functools.cache
def _gauges() -> dict[str, Any]:
    from prometheus_client import Gauge

    return {k: Gauge(f"crmscore_monitor_{k}", doc, ["model", "version"], multiprocess_mode="mostrecent")
            for k, doc in GAUGES.items()}


_seen: dict[str, float] = {}


def update_gauges(home: Path) -> bool:
    """Set the gauges from the latest monitoring file when it changed since the last call; True when set."""
    path = Path(home) / LATEST
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return False
    if _seen.get(str(path)) == mtime:
        return False
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("monitoring figures in %s unreadable: %s", path, exc)
        return False
    gauges = _gauges()
    for m in body.get("models", []):
        values = {**m.get("headline", {}), "retrain": 1.0 if m.get("retrain") else 0.0,
                  "checked_timestamp": body.get("checked")}
        for key, gauge in gauges.items():
            value = values.get(key)
            if value is not None:
                gauge.labels(m["model"], str(m["version"])).set(float(value))
    _seen[str(path)] = mtime
    return True


def read_latest(home: Path) -> dict[str, Any] | None:
    """The last `crmscore monitor` result written to CRMSCORE_HOME, or None."""
    try:
        return json.loads((Path(home) / LATEST).read_text())
    except (OSError, ValueError):
        return None
