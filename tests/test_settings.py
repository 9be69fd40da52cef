"""Settings from the environment: MLflow's own variables apply when the CRMSCORE_ ones are unset."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from crmscore.models import registry
from crmscore.settings import get_settings


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env file of the checkout
    for name in ("CRMSCORE_TRACKING_URI", "CRMSCORE_REGISTRY_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CRMSCORE_ARTIFACT_LOCATION", str(tmp_path / "mlruns"))
    yield tmp_path
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_mlflow_tracking_uri_is_respected(clean_env, monkeypatch):
    store = f"sqlite:///{clean_env / 'team.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    settings = registry.configure()
    assert settings.tracking_uri == store and mlflow.get_tracking_uri() == store
    exp_id = registry.experiment("churn")  # written to the store MLflow's variable names, nowhere else
    assert MlflowClient(tracking_uri=store).get_experiment(exp_id).name == "crmscore-churn"
    assert not (clean_env / "mlflow.db").exists()


def test_crmscore_variables_win_over_mlflows(clean_env, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{clean_env / 'mlflow-var.db'}")
    monkeypatch.setenv("CRMSCORE_TRACKING_URI", f"sqlite:///{clean_env / 'crmscore-var.db'}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{clean_env / 'registry.db'}")
    settings = get_settings()
    assert settings.tracking_uri.endswith("crmscore-var.db")
    assert settings.registry_uri.endswith("registry.db")  # no CRMSCORE_REGISTRY_URI: MLflow's applies
    monkeypatch.setenv("CRMSCORE_REGISTRY_URI", f"sqlite:///{clean_env / 'ours.db'}")
    assert get_settings().registry_uri.endswith("ours.db")


def test_without_any_variable_the_default_store(clean_env):
    assert get_settings().tracking_uri == "sqlite:///mlflow.db" and get_settings().registry_uri is None
