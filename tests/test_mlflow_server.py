"""Integration: the same training, registry and scoring code against a real `mlflow server` process.

The server's backend is PostgreSQL when CRMSCORE_TEST_POSTGRES_URI is set (.ci/run installs and starts
PostgreSQL and sets it), else SQLite. The server listens on 127.0.0.1 and is stopped by the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.serving.launcher import free_port

from conftest import tracking_store

pytestmark = pytest.mark.integration


@pytest.fixture
def mlflow_server(tmp_path):
    backend = os.environ.get("CRMSCORE_TEST_POSTGRES_URI") or tracking_store(tmp_path, "server.db")
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", backend, "--artifacts-destination", str(tmp_path / "artifacts"),
                             "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, backend
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its workers (its own process group), whether or not it is still running."""
    for sig, wait in ((15, 20), (9, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_train_register_promote_and_load_against_a_server(mlflow_server, synthetic_config, monkeypatch):
    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task
    from crmscore.scoring.batch import score_frame, transactional_population

    url, backend = mlflow_server
    monkeypatch.setenv("CRMSCORE_TRACKING_URI", url)
    cfg = load_config(synthetic_config)
    data = load_customer_data(cfg)
    task = get_task("churn")
    result = train_task(task, cfg, task.settings(snapshots=3), data=data)
    assert result.version == "1" and result.run_id
    registry.promote("churn")
    bundle, mv = registry.load_bundle("churn", "champion")
    assert str(mv.version) == "1" and bundle.info["run_id"] == result.run_id
    scores = score_frame(bundle, transactional_population(bundle, data, "2025-01-01").head(50), top_k=2)
    assert len(scores) == 50 and scores["score"].between(0, 1).all()
    import mlflow

    run = mlflow.get_run(result.run_id)
    assert run.data.metrics["roc_auc"] == pytest.approx(result.metrics["roc_auc"])
    assert "roc_auc_baseline_bgnbd" in run.data.metrics  # model and baselines side by side
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"churn-training", "churn-testing"}
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    assert {"plots/roc.png", "plots/pr.png", "plots/calibration.png", "plots/gains.png",
            "plots/shap_summary.png"} <= artifacts
