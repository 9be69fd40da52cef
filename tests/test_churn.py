"""Churn on the training framework: labels, the --as-of promise, guardrails, explanations, promotion."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.models.churn import churn_labels
from crmscore.models.pipeline import GuardrailError, transactional_dataset
from crmscore.models.tasks import get_task

from conftest import cli_here, served_copy, tracking_store, write_config, write_frames


@pytest.fixture
def mlflow_tmp(tmp_path, monkeypatch):
    """A private SQLite tracking store and artifact folder for one test."""
    monkeypatch.setenv("CRMSCORE_TRACKING_URI", tracking_store(tmp_path))
    monkeypatch.setenv("CRMSCORE_ARTIFACT_LOCATION", str(tmp_path / "mlruns"))
    return tmp_path


def test_labels_on_hand_built_histories(tmp_path):
    rows = [("A", "2024-01-10"), ("A", "2024-03-05"),          # next purchase after the window: churned
            ("B", "2024-01-20"),                                # never again: churned
            ("C", "2023-01-01"),                                # last purchase before the lookback: not in population
            ("D", "2024-02-28"),                                # first purchase after the cutoff: not in population
            ("E", "2024-01-15"), ("E", "2024-03-01 23:59:59"),  # buys inside the window: stays
            ("F", "2024-01-15"), ("F", "2024-03-02 00:00:00")]  # exactly at the window's end: churned
    tx = pd.DataFrame(rows, columns=["customer_id", "ts"]).assign(amount=10.0)
    data = load_customer_data(load_config(write_config(tmp_path, write_frames(tmp_path, {"transactions": tx}))))
    settings = get_task("churn").settings(horizon_days=30, lookback_days=180)
    labels = churn_labels(data, pd.Timestamp("2024-02-01"), settings).set_index("customer_id")["label"]
    assert labels.to_dict() == {"A": 1, "B": 1, "E": 0, "F": 1}


def _append_future(synthetic_dir, tmp_path, as_of: str):
    """A copy of the synthetic data with extra transactions after as_of (that must change nothing)."""
    tx = pd.read_parquet(synthetic_dir / "transactions.parquet")
    rng = np.random.default_rng(0)
    extra = tx.sample(500, random_state=1).copy()
    extra["ts"] = pd.Timestamp(as_of) + pd.to_timedelta(rng.integers(0, 200 * 86400, len(extra)), unit="s")
    extra["order_id"] = [f"FUT{i}" for i in range(len(extra))]
    extra["amount"] = extra["amount"] * 7
    out = tmp_path / "future"
    out.mkdir()
    pd.concat([tx, extra]).to_parquet(out / "transactions.parquet")
    for name in ("products", "customers", "events"):
        (out / f"{name}.parquet").write_bytes((synthetic_dir / f"{name}.parquet").read_bytes())
    return out


def _config_for(folder, tmp_path, name):
    import yaml

    from conftest import REPO

    cfg = yaml.safe_load((REPO / "training/configs/synthetic.yaml").read_text())
    for source in cfg["data"].values():
        source["path"] = str(folder / source["path"].split("/")[-1])
    cfg["validation"]["quarantine_dir"] = str(tmp_path / "q")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def test_as_of_promise_data_after_t_changes_no_training_row(synthetic_dir, tmp_path):
    as_of = "2024-10-01"
    task = get_task("churn")
    settings = task.settings(snapshots=3)
    base = transactional_dataset(task, load_customer_data(_config_for(synthetic_dir, tmp_path, "a")), settings, as_of)
    future_dir = _append_future(synthetic_dir, tmp_path, as_of)
    more = transactional_dataset(task, load_customer_data(_config_for(future_dir, tmp_path, "b")), settings, as_of)
    assert base.cutoffs["test"] == pd.Timestamp(as_of) - pd.Timedelta(days=settings.horizon_days)
    assert base.feature_set.version == more.feature_set.version
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(base, part), getattr(more, part))
    # every label window ends by as_of, and training windows end before the validation cutoff
    cuts = base.cutoffs["train"]
    assert cuts[-1] + pd.Timedelta(days=settings.horizon_days) <= base.cutoffs["test"]
    assert all(c + pd.Timedelta(days=settings.horizon_days) <= cuts[-1] for c in cuts[:-1])


def test_history_refusal_names_the_minimum_and_the_earliest_as_of(synthetic_config):
    """Too little data is refused with the minimum an out-of-time evaluation needs (min_history_days + 3 x
    horizon) and the earliest --as-of that works; that --as-of then trains (the lookback is no longer needed
    before the first cutoff)."""
    data = load_customer_data(load_config(synthetic_config))
    start = data.ts_range()[0].normalize()
    task = get_task("churn")
    s = task.settings()
    need = s.min_history_days + 3 * s.horizon_days
    earliest = start + pd.Timedelta(days=need)
    with pytest.raises(GuardrailError, match=rf"not enough history: .* = {need} days\. The earliest --as-of that "
                                             rf"works is {earliest.date()}"):
        transactional_dataset(task, data, s, earliest - pd.Timedelta(days=1))
    ds = transactional_dataset(task, data, s, earliest)
    assert min(ds.cutoffs["train"]) == start + pd.Timedelta(days=s.min_history_days)
    assert len(ds.train) and len(ds.valid) and len(ds.test)


def test_guardrail_refuses_too_few_positives(synthetic_config, mlflow_tmp):
    from crmscore.models.pipeline import train_task

    cfg = load_config(synthetic_config)
    task = get_task("churn")
    with pytest.raises(GuardrailError, match=r"too few labels to train: the training rows have \d+ positives and \d+ "
                                             r"negatives; at least 100000 of each"):
        train_task(task, cfg, task.settings(min_positives=100_000), register=False)


def _cli(*args, env=None, cwd=None):
    import os

    proc = subprocess.run([sys.executable, "-m", "crmscore", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)
    return proc


def test_train_promote_score_end_to_end(synthetic_config, mlflow_tmp):
    env = {"CRMSCORE_TRACKING_URI": f"sqlite:///{mlflow_tmp / 'mlflow.db'}",
           "CRMSCORE_ARTIFACT_LOCATION": str(mlflow_tmp / "mlruns")}
    # train and promote in this process (the commands' code, without a new process's imports); scoring runs as
    # real `crmscore` processes: the exit code of a refusal, and the file a separate process writes
    result = json.loads(cli_here("train", "churn", "--config", synthetic_config, "--json", env=env).stdout)
    assert result["registered_version"] == "1"
    assert set(result["baselines"]) == {"recency", "rfm", "bgnbd"}
    assert result["metrics"]["roc_auc"] > max(b["roc_auc"] for b in result["baselines"].values())
    assert _cli("score", "churn", "-c", str(synthetic_config), "-o", str(mlflow_tmp / "s.parquet"),
                env=env).returncode != 0  # no champion yet
    assert "version 1 is now @champion" in cli_here("promote", "churn", env=env).stdout
    proc = _cli("score", "churn", "-c", str(synthetic_config), "-o", str(mlflow_tmp / "s.parquet"), "--top-k", "3",
                env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = pd.read_parquet(mlflow_tmp / "s.parquet")
    for col in ("customer_id", "score", "decile", "segment", "lifecycle_stage", "model_version", "reasons",
                "reason_1", "reason_3"):
        assert col in scores.columns
    assert scores["customer_id"].is_unique and scores["score"].between(0, 1).all()
    assert set(scores["decile"]) <= set(range(1, 11)) and (scores["model_version"] == "1").all()
    assert scores["reason_1"].str.contains("churn risk").all()


def test_promote_refuses_a_worse_challenger(served_home, tmp_path, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.registry import PromotionRefused

    # the champion: churn v1 trained on 3 snapshots and promoted, in a copy of the session's served home
    served = served_copy(served_home, tmp_path / "home")
    for k, v in served["env"].items():
        monkeypatch.setenv(k, v)
    cfg, data, good = served["cfg"], served["data"], served["result"]
    assert str(MlflowClient().get_model_version_by_alias("churn", "champion").version) == good.version == "1"
    task = get_task("churn")
    # a crippled challenger: one shallow tree
    weak = train_task(task, cfg, task.settings(snapshots=3, num_boost_round=1, params={"num_leaves": 2}), data=data)
    with pytest.raises(PromotionRefused, match=r"does not beat champion v1 .* @champion stays on v1"):
        registry.promote("churn")
    client = MlflowClient(mlflow.get_tracking_uri())
    assert str(client.get_model_version_by_alias("churn", "champion").version) == good.version
    with pytest.raises(PromotionRefused, match="--force needs --reason"):
        registry.promote("churn", force=True)
    outcome = registry.promote("churn", force=True, reason="testing a forced rollout")
    assert outcome["promoted"] and str(client.get_model_version_by_alias("churn", "champion").version) == weak.version
    assert client.get_model_version("churn", weak.version).tags["promotion_forced_reason"] == "testing a forced rollout"


def test_feature_table_typing_and_training(tmp_path, mlflow_tmp):
    from crmscore.models.feature_table import load_feature_table
    from crmscore.models.pipeline import train_task

    rng = np.random.default_rng(3)
    n = 1500
    tenure = rng.integers(0, 72, n)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n)
    charges = np.round(rng.uniform(20, 110, n), 2)
    total = (tenure * charges).round(2).astype(str)
    total[:7] = " "  # numbers stored as text, with blanks for new subscribers
    logit = -1.0 - 0.05 * tenure + 1.5 * (contract == "Month-to-month") + 0.01 * charges
    churn = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    df = pd.DataFrame({"cid": [f"K{i}" for i in range(n)], "tenure": tenure, "Contract": contract,
                       "Monthly": charges, "Total": total, "Churn": churn, "note": [f"free text {i}" for i in range(n)]})
    df.to_parquet(tmp_path / "table.parquet")
    cfg = load_config(write_config(tmp_path, {"features": {"path": str(tmp_path / "table.parquet"), "id": "cid",
                                                           "label": "Churn", "positive": "Yes"}}))
    table = load_feature_table(cfg)
    assert table.decisions["Total"].startswith("text holding numbers") and "7 blank" in table.decisions["Total"]
    assert table.decisions["Contract"].startswith("text -> category")
    assert "left out" in table.decisions["note"] and "note" not in table.frame
    assert table.frame["Total"].isna().sum() == 7 and table.frame["label"].sum() == (churn == "Yes").sum()
    task = get_task("churn")
    result = train_task(task, cfg, task.settings(), register=False)
    assert set(result.baselines) == {"logistic"}
    assert result.metrics["roc_auc"] > 0.7 and "cv_roc_auc_mean" in result.metrics
