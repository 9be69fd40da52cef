"""Ready feature tables: the typing decided at training is the model's, saved with it and applied at
scoring; identifier-like columns and free text are left out with the reason, unless the config keeps them.

The fixture is shaped like the public bank-churn CSV (RowNumber, CustomerId, Surname, CreditScore,
Geography, Gender, Age, ..., Exited), generated here with a known churn driver.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from crmscore.config import load_config
from crmscore.models.feature_table import load_feature_table

from conftest import cli_here, tracking_store, write_config


def bank_table(n: int, seed: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    surnames = [f"Name{i:04d}" for i in range(n // 3)]  # ~3 rows a surname: a name, not a category
    geography = rng.choice(["France", "Spain", "Germany"], n, p=[0.5, 0.25, 0.25])
    age = rng.integers(18, 80, n)
    active = rng.integers(0, 2, n)
    products = rng.choice([1, 2, 3, 4], n, p=[0.5, 0.4, 0.07, 0.03])
    logit = -3.0 + 0.06 * (age - 18) + 0.8 * (geography == "Germany") - 0.9 * active + 1.2 * (products >= 3)
    return pd.DataFrame({
        "RowNumber": np.arange(1, n + 1),
        "CustomerId": rng.choice(np.arange(15_565_701, 15_815_690), n, replace=False),
        "Surname": rng.choice(surnames, n),
        "CreditScore": rng.integers(350, 851, n),
        "Geography": geography,
        "Gender": rng.choice(["Female", "Male"], n),
        "Age": age,
        "Tenure": rng.integers(0, 11, n),
        "Balance": np.round(np.where(rng.random(n) < 0.35, 0.0, rng.normal(120_000, 30_000, n)), 2),
        "NumOfProducts": products,
        "HasCrCard": rng.integers(0, 2, n),
        "IsActiveMember": active,
        "EstimatedSalary": np.round(rng.uniform(11, 200_000, n), 2),
        "Exited": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
    })


def _config(tmp_path, path, **features):
    return write_config(tmp_path, {"features": {"path": str(path), "id": "CustomerId", "label": "Exited",
                                                "positive": 1, **features}})


def test_identifiers_and_free_text_are_left_out_with_the_reason(tmp_path, caplog):
    df = bank_table(3000)
    df.to_csv(tmp_path / "bank.csv", index=False)
    with caplog.at_level(logging.INFO, logger="crmscore.models.feature_table"):
        table = load_feature_table(load_config(_config(tmp_path, tmp_path / "bank.csv")))
    assert set(table.schema.left_out) == {"RowNumber", "Surname"}
    assert "row number" in table.schema.left_out["RowNumber"]
    assert "free text" in table.schema.left_out["Surname"]
    assert f"{df['Surname'].nunique():,} distinct values in 3,000 rows" in table.schema.left_out["Surname"]
    logged = caplog.text
    assert "RowNumber: left out" in logged and "Surname: left out" in logged
    # measurements stay, even those different on every row (salaries with cents)
    assert {"CreditScore", "Age", "Balance", "EstimatedSalary", "Geography"} <= set(table.schema.names)
    assert df["EstimatedSalary"].is_unique
    assert "Surname" not in table.frame and "RowNumber" not in table.frame
    # a whole number different on every row (no row number) is an identifier too
    df.rename(columns={"CustomerId": "AccountNo"}).assign(CustomerId=[f"K{i}" for i in range(3000)]).to_csv(
        tmp_path / "bank2.csv", index=False)
    table = load_feature_table(load_config(_config(tmp_path, tmp_path / "bank2.csv")))
    assert "identifier" in table.schema.left_out["AccountNo"]
    # the config keeps what it names
    kept = load_feature_table(load_config(_config(tmp_path, tmp_path / "bank.csv", keep=["Surname", "RowNumber"])))
    assert not kept.schema.left_out
    surname = next(c for c in kept.schema.columns if c.name == "Surname")
    assert surname.kind == "category" and len(surname.levels) == df["Surname"].nunique()


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "crmscore", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_scoring_a_smaller_file_with_other_levels_gives_the_same_scores(tmp_path, monkeypatch):
    """The issue's case: trained on the full file, scored on a part of it with fewer distinct surnames per
    row and a country the model never saw; scoring used to re-type the file and fail on 'Surname'."""
    env = {"CRMSCORE_TRACKING_URI": tracking_store(tmp_path),
           "CRMSCORE_ARTIFACT_LOCATION": str(tmp_path / "mlruns")}
    full = bank_table(4000)
    full.to_csv(tmp_path / "train.csv", index=False)
    # keep Surname as a category, so the model uses a column a smaller file would have typed otherwise
    (tmp_path / "t").mkdir()
    train_cfg = _config(tmp_path / "t", tmp_path / "train.csv", keep=["Surname"])
    # train, promote and score in this process (the commands' code, without a new process's imports each); the
    # refusal below runs as a real `crmscore` process: its exit code and last line
    cli_here("train", "churn", "--config", train_cfg, "--json", env=env)
    cli_here("promote", "churn", env=env)

    small = full.sample(600, random_state=1).drop(columns=["Exited"]).reset_index(drop=True)
    assert small["Surname"].nunique() / len(small) > 0.5  # re-typed on its own, Surname would be free text
    small.loc[:9, "Geography"] = "Italy"  # a level unseen in training
    small["Balance"] = small["Balance"].astype(object)
    small.loc[10:14, "Balance"] = "n/a"  # text in a number column
    small.to_csv(tmp_path / "score.csv", index=False)
    (tmp_path / "s").mkdir()
    score_cfg = write_config(tmp_path / "s", {"features": {"path": str(tmp_path / "score.csv"), "id": "CustomerId"}})
    said = " ".join(cli_here("score", "churn", "-c", score_cfg, "-o", tmp_path / "small.parquet", env=env).stderr.split())
    assert "Geography: 10 of 600 rows have levels not seen in training" in said, said[-2000:]
    assert "Balance: 5 of 600 rows have values that are not numbers" in said
    cli_here("score", "churn", "-c", train_cfg, "-o", tmp_path / "full.parquet", env=env)
    # a scoring file without a column the model uses: one line naming it, exit 2
    small.drop(columns=["Geography"]).to_csv(tmp_path / "no_geo.csv", index=False)
    (tmp_path / "g").mkdir()
    no_geo = write_config(tmp_path / "g", {"features": {"path": str(tmp_path / "no_geo.csv"), "id": "CustomerId"}})
    proc = _cli("score", "churn", "-c", str(no_geo), "-o", str(tmp_path / "x.parquet"), env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: features.Geography: the model was trained with "
                                                           "column 'Geography'")

    got = pd.read_parquet(tmp_path / "small.parquet").set_index("customer_id")["score"]
    ref = pd.read_parquet(tmp_path / "full.parquet").set_index("customer_id")["score"]
    assert len(got) == 600 and got.notna().all()
    ids = small["CustomerId"].astype(str)
    untouched = ids[15:]
    np.testing.assert_allclose(got.loc[untouched].to_numpy(), ref.loc[untouched].to_numpy(), rtol=0, atol=1e-12)
    # an unseen country is scored as a missing country: the same score as the row with Geography blank
    from crmscore.models import registry

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    registry.configure()
    bundle, _ = registry.load_bundle("churn", "champion")
    assert bundle.table_schema is not None and "Surname" in bundle.table_schema.names
    blanked = small.iloc[:10].assign(Geography=None)
    expected = bundle.predict(bundle.table_schema.apply(blanked).assign(customer_id=ids[:10].to_numpy()))
    np.testing.assert_allclose(got.loc[ids[:10]].to_numpy(), expected, atol=1e-12)


# -- the leakage alarm ------------------------------------------------------------------------------
def test_leakage_alarm_refuses_a_label_copy_unless_allowed(tmp_path, monkeypatch, caplog):
    from crmscore.models.leakage import LeakageError
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task

    monkeypatch.setenv("CRMSCORE_TRACKING_URI", tracking_store(tmp_path))
    monkeypatch.setenv("CRMSCORE_ARTIFACT_LOCATION", str(tmp_path / "mlruns"))
    df = bank_table(3000)
    rng = np.random.default_rng(2)
    # a complaint flag exported after the fact: the label with 0.5% of rows flipped (ROC-AUC ~0.99), and a
    # closing date that is there only for customers who left
    df["Complain"] = np.where(rng.random(len(df)) < 0.005, 1 - df["Exited"], df["Exited"])
    df["ClosedOn"] = np.where(df["Exited"] == 1, "2024-05-01", None)
    df.to_parquet(tmp_path / "bank.parquet")
    task = get_task("churn")
    cfg = load_config(_config(tmp_path, tmp_path / "bank.parquet"))
    with pytest.raises(LeakageError, match=r"feature (Complain|ClosedOn) alone reaches validation ROC-AUC "
                                           r"(0\.9\d\d|1\.000) \(above 0\.98\); also (ClosedOn|Complain)"):
        train_task(task, cfg, task.settings(), register=False)
    # allowed by name: measured and logged, not refused
    cfg = load_config(_config(tmp_path, tmp_path / "bank.parquet", exclude=["ClosedOn"]))
    cfg.leakage.allow = ["Complain"]
    with caplog.at_level(logging.WARNING, logger="crmscore.models.leakage"):
        result = train_task(task, cfg, task.settings(), register=False)
    assert "Complain alone reaches validation ROC-AUC" in caplog.text and "allowed by leakage.allow" in caplog.text
    assert result.metrics["roc_auc"] > 0.95  # the copy is used, as the config asked
    strongest = result.bundle.info["single_feature_strength"][0]
    assert strongest["feature"] == "Complain" and strongest["value"] > 0.98 and strongest["metric"] == "ROC-AUC"


def test_leakage_strength_per_kind():
    """Binary: max(auc, 1 - auc) with missing values ranked either way; regression: |normalised Gini|;
    multilabel: the highest over targets, reported with the target."""
    from crmscore.models.leakage import measure_features

    rng = np.random.default_rng(0)
    n = 4000
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({
        "label": y, "label_b": rng.integers(0, 2, n),
        "reversed": -y + rng.normal(0, 0.01, n),  # a perfect predictor upside down
        "only_if_positive": np.where(y == 1, rng.normal(0, 1, n), np.nan),  # filled only for positives
        "noise": rng.normal(0, 1, n),
        "level": np.where(y == 1, "closed", "open"),  # a category copying the label
    })
    train, valid = frame.iloc[:2000], frame.iloc[2000:]
    feats = ["reversed", "only_if_positive", "noise", "level"]
    got = {s.feature: s for s in measure_features(train, valid, feats, {None: "label"}, regression=False)}
    assert got["reversed"].value > 0.99 and got["only_if_positive"].value > 0.99 and got["level"].value > 0.99
    assert got["noise"].value < 0.6
    per_target = {s.feature: s for s in measure_features(train, valid, feats, {"a": "label", "b": "label_b"},
                                                        regression=False)}
    assert per_target["level"].target == "a" and per_target["level"].value > 0.99
    amount = frame.assign(label=np.where(y == 1, rng.gamma(2, 50, n), 0.0))
    reg = {s.feature: s for s in measure_features(amount.iloc[:2000], amount.iloc[2000:], ["reversed", "noise"],
                                                  {None: "label"}, regression=True)}
    assert reg["reversed"].metric == "normalised Gini" and reg["reversed"].value > 0.5 > reg["noise"].value
