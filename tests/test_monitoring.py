"""Monitoring on the synthetic generator's planted changes (crmscore.synthetic.plant_*): a shift of one
feature is flagged on that feature only; a change of the churn mechanism (customers leave abruptly after
redeeming coupons, a sign the champion cannot have seen) lowers the realised ROC-AUC and makes
`retrain --if-drifted` promote a challenger that does better on the same rows; an unchanged world leads to
no drift and no promotion. The promotion and the refusal hold at every seed and tree count measured
(bench/monitoring_promotion.py; README "Monitoring"), not at a chosen one.

One champion serves every world: the worlds share all data before the change day (the planted changes
only touch what comes after it), and the champion is trained as of that day.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, tracking_store

CHANGE = "2024-01-01"
CUSTOMERS = 5000
SETTINGS = {"horizon_days": 60, "snapshots": 3, "num_boost_round": 40}


def _world(root: Path, name: str, data) -> Path:
    from crmscore import synthetic
    from crmscore.config import config_on_folder

    synthetic.write(data, root / name)
    return config_on_folder(REPO / "training" / "configs" / "synthetic.yaml", root / name, {"churn": SETTINGS})


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Configs of three worlds with six years of history (so all-history features are stable): plain, a
    planted order-hour shift and a planted churn change, both from CHANGE."""
    from crmscore import synthetic

    root = tmp_path_factory.mktemp("worlds")
    plain = synthetic.generate(CUSTOMERS, seed=11, start="2019-01-01", end="2025-01-01")
    yield {"plain": _world(root, "plain", plain),
           "shift": _world(root, "shift", synthetic.plant_order_hour_shift(plain, CHANGE)),
           "churn": _world(root, "churn", synthetic.plant_churn_change(plain, CHANGE, seed=11))}
    _data.cache_clear()


@pytest.fixture(scope="module")
def tracking(tmp_path_factory, worlds):
    """A private MLflow store with churn v1 trained as of CHANGE (on data every world shares) as @champion."""
    from crmscore.config import load_config
    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task

    root = tmp_path_factory.mktemp("mlflow")
    saved = {k: os.environ.get(k) for k in ("CRMSCORE_TRACKING_URI", "CRMSCORE_ARTIFACT_LOCATION", "CRMSCORE_HOME")}
    os.environ.update({"CRMSCORE_TRACKING_URI": tracking_store(root),
                       "CRMSCORE_ARTIFACT_LOCATION": str(root / "mlruns"), "CRMSCORE_HOME": str(root / "home")})
    try:
        cfg = load_config(worlds["plain"])
        task = get_task("churn")
        result = train_task(task, cfg, task.settings(cfg.tasks["churn"]), as_of=CHANGE)
        registry.promote("churn")
        yield {"root": root, "bundle": result.bundle, "version": result.version}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@functools.lru_cache(maxsize=None)
def _data(path: Path):
    """A world's config and data, loaded once for the module (the tests only read them)."""
    from crmscore.config import load_config
    from crmscore.data.loader import load_customer_data

    cfg = load_config(path)
    return cfg, load_customer_data(cfg)


def _scores(bundle, version: str, data, as_of: str) -> pd.DataFrame:
    from crmscore.scoring.batch import score_frame, transactional_population

    out = score_frame(bundle, transactional_population(bundle, data, as_of), top_k=0, version=version)
    out["as_of"] = pd.Timestamp(as_of)
    return out.rename(columns={"rfm_segment": "segment"})


def _reset_champion(version: str) -> None:
    from mlflow.tracking import MlflowClient

    from crmscore.models import registry

    registry.configure()
    MlflowClient().set_registered_model_alias("churn", registry.CHAMPION, version)


def test_the_reference_is_kept_with_the_model(tracking):
    ref = tracking["bundle"].info["reference"]
    assert ref["rows"] > 1000 and set(ref["features"]) == set(tracking["bundle"].features)
    hour = ref["features"]["mean_order_hour"]
    assert hour["kind"] == "numeric" and len(hour["shares"]) == len(hour["edges"]) + 1
    assert abs(sum(hour["shares"]) - 1) < 1e-9 and len(hour["sample"]) > 100
    assert ref["features"]["attr_region"]["kind"] == "categorical"
    assert abs(sum(ref["features"]["attr_region"]["levels"].values()) - 1) < 1e-9
    assert abs(sum(ref["score"]["shares"]) - 1) < 1e-9
    assert set(ref["segments"]["lifecycle_stage"]) >= {"active"}
    # the segments are on the model's own RFM scale: more than two RFM segments occur
    assert len(ref["segments"]["rfm_segment"]) > 4


def test_a_planted_shift_is_flagged_on_that_feature_only(tracking, worlds):
    from crmscore.monitoring.check import check_model

    bundle, version = tracking["bundle"], tracking["version"]
    cfg, shifted = _data(worlds["shift"])
    check = check_model(bundle, version, shifted, "2024-12-01", cfg.monitoring)
    flagged = {f.feature: f for f in check.features if f.status != "ok"}
    assert set(flagged) == {"mean_order_hour"}, {k: round(f.psi, 3) for k, f in flagged.items()}
    assert flagged["mean_order_hour"].psi >= cfg.monitoring.psi_watch
    assert flagged["mean_order_hour"].p_value < cfg.monitoring.p_value
    # the same model in the unchanged world: nothing flagged, the score stable
    _, plain = _data(worlds["plain"])
    calm = check_model(bundle, version, plain, "2024-12-01", cfg.monitoring)
    assert [f.feature for f in calm.features if f.status != "ok"] == []
    assert calm.score.status == "ok" and calm.verdict["retrain"] is False


def test_a_churn_change_lowers_the_realised_roc_auc(tracking, worlds):
    from crmscore.monitoring.realised import realised_performance

    bundle, version = tracking["bundle"], tracking["version"]
    settings = {version: bundle.settings}
    realised = {}
    for name in ("plain", "churn"):
        _, data = _data(worlds[name])
        scores = pd.concat([_scores(bundle, version, data, "2024-02-01"), _scores(bundle, version, data, "2024-12-15")])
        realised[name] = realised_performance("churn", scores, data, settings)
        # the horizon of the December scores has not passed: they wait, and are not judged
        assert realised[name].waiting == int((scores["as_of"] == "2024-12-15").sum()) > 0
        assert realised[name].waiting_until == "2025-02-13"
    plain_auc = realised["plain"].overall(version)["roc_auc"]
    churn_auc = realised["churn"].overall(version)["roc_auc"]
    assert churn_auc < plain_auc - 0.03, (plain_auc, churn_auc)
    # the plain world keeps what the model promised, within noise
    assert abs(plain_auc - bundle.info["metrics"]["roc_auc"]) < 0.05
    segments = [g for g in realised["churn"].groups if g["segment"] != "all"]
    assert segments and sum(g["rows"] for g in segments) == realised["churn"].judged


def test_retrain_if_drifted_promotes_a_challenger_after_the_churn_change(tracking, worlds):
    from mlflow.tracking import MlflowClient

    from crmscore.monitoring.retrain import retrain
    from crmscore.monitoring.run import monitor

    _reset_champion(tracking["version"])
    cfg, data = _data(worlds["churn"])
    checks = monitor(cfg, data, models=["churn"], score_files=[], log_to_mlflow=True)
    assert checks[0].verdict["retrain"], checks[0].verdict
    decision = retrain("churn", cfg, data, cfg.monitoring, evidence=checks[0].verdict)
    fig = decision["figures"]
    assert decision["decision"] == "promoted", decision["reason"]
    assert fig["interval_low"] > 0 and fig["challenger"] > fig["champion"]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("churn", "champion").version) == decision["challenger"]
    tags = client.get_model_version("churn", decision["challenger"]).tags
    assert tags["retrain_decision"] == "promoted" and tags["retrain_by"] and tags["retrain_at"]
    assert json.loads(tags["retrain_figures"])["rows"] == fig["rows"]
    old = client.get_model_version("churn", tracking["version"]).tags
    assert json.loads(old["retrain_last_challenge"])["decision"] == "promoted"
    assert old["monitor_retrain"] == "True"  # the monitoring check was logged on the version


def test_an_unchanged_world_leads_to_no_promotion(tracking, worlds, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from crmscore.cli import _register, app
    from crmscore.monitoring.retrain import retrain

    _reset_champion(tracking["version"])
    _register()
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["retrain", "churn", "--if-drifted", "--config", str(worlds["plain"]), "--json"])
    assert res.exit_code == 0, res.output
    decision = json.loads(res.stdout.strip().splitlines()[-1])[0]
    assert decision["decision"] == "skipped"
    # retrained anyway, the challenger is not better by more than noise: the champion stays
    cfg, data = _data(worlds["plain"])
    forced = retrain("churn", cfg, data, cfg.monitoring)
    assert forced["decision"] == "refused", forced["reason"]
    assert forced["figures"]["interval_low"] <= 0 < forced["figures"]["interval_high"] or \
        forced["figures"]["difference"] <= 0
    from mlflow.tracking import MlflowClient

    assert str(MlflowClient().get_model_version_by_alias("churn", "champion").version) == tracking["version"]


def test_monitor_command_writes_report_and_logs_figures(tracking, worlds, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from crmscore.cli import _register, app

    _reset_champion(tracking["version"])
    _register()
    monkeypatch.chdir(tmp_path)
    _, data = _data(worlds["shift"])
    scores = _scores(tracking["bundle"], tracking["version"], data, "2024-06-01")
    scores["model"] = "churn"
    scores.to_parquet(tmp_path / "scores.parquet")
    res = CliRunner().invoke(app, ["monitor", "--config", str(worlds["shift"]), "--as-of", "2024-12-01",
                                   "--scores", str(tmp_path / "scores.parquet"), "--out", "report"])
    assert res.exit_code == 0, res.output
    body = json.loads((tmp_path / "report" / "monitor.json").read_text())
    churn = body["models"][0]
    assert churn["model"] == "churn" and churn["as_of"] == "2024-12-01"
    assert [f["feature"] for f in churn["features"] if f["status"] != "ok"] == ["mean_order_hour"]
    assert churn["realised"]["judged"] == len(scores) - churn["realised"]["waiting"] > 0
    assert {m["column"] for m in churn["migration"]} == {"rfm_segment", "lifecycle_stage"}
    html = (tmp_path / "report" / "monitor.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http" not in html.split("<body>")[0]
    assert "mean_order_hour" in html and "Realised performance" in html
    tags = MlflowClient().get_model_version("churn", tracking["version"]).tags
    assert tags["monitor_as_of"] == "2024-12-01" and float(tags["monitor_realised_roc_auc"]) == pytest.approx(
        churn["headline"]["realised_roc_auc"], abs=1e-4)
    assert np.isfinite(churn["headline"]["score_psi"])


def test_defaults_keep_the_generator_byte_identical():
    """The planted changes are separate functions: generate() alone is what it always was."""
    from crmscore import synthetic

    a = synthetic.generate(300, seed=3)
    b = synthetic.generate(300, seed=3)
    shifted = synthetic.plant_order_hour_shift(a, "2024-06-01")
    assert a.transactions.equals(b.transactions)
    moved = shifted.transactions["ts"] != a.transactions.sort_values(["customer_id", "ts"], kind="stable")[
        "ts"].reset_index(drop=True)
    assert moved.any()
    changed = synthetic.plant_churn_change(a, "2024-06-01", seed=3)
    assert len(changed.transactions) < len(a.transactions)
    assert (changed.transactions.merge(changed.truth[["customer_id", "churn_date"]])
            .pipe(lambda t: (t["ts"] >= t["churn_date"]).sum())) == 0
    # the warning sign: the only events added are coupon redemptions in the 60 days before leaving (a leaving
    # day after the data's end is not in truth: those redemptions lie in the data's last 60 days)
    added = changed.events.merge(a.events, how="left", indicator=True).query("_merge == 'left_only'")
    added = added.merge(changed.truth[["customer_id", "churn_date"]])
    end, warning = a.events["ts"].max(), pd.Timedelta(days=synthetic.CHURN_CHANGE_WARNING_DAYS)
    assert len(added) > 100 and set(added["event_type"]) == {"coupon_use"} and (added["ts"] >= "2024-06-01").all()
    before_leaving = (added["churn_date"] - added["ts"]).between(pd.Timedelta(0), warning)
    assert (before_leaving | (added["churn_date"].isna() & (added["ts"] >= end - warning))).all()


@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "completejourney").is_dir(),
                    reason="the team's real datasets (../shared/data) are absent")
def test_report_on_complete_journey_at_two_cutoffs(tmp_path, monkeypatch):
    """Churn trained as of 2017-10-01 on Complete Journey; scores written at two cutoffs; the report at two
    later cutoffs: the October scores are judged, the December ones wait for their horizon."""
    from crmscore.config import load_config
    from crmscore.data.loader import load_customer_data
    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task
    from crmscore.monitoring.report import write_html
    from crmscore.monitoring.run import monitor, write_json

    monkeypatch.setenv("CRMSCORE_TRACKING_URI", tracking_store(tmp_path))
    monkeypatch.setenv("CRMSCORE_ARTIFACT_LOCATION", str(tmp_path / "mlruns"))
    monkeypatch.chdir(REPO)  # the config's data paths are relative to the repo root
    cfg = load_config(REPO / "training" / "configs" / "completejourney.yaml")
    data = load_customer_data(cfg)
    task = get_task("churn")
    result = train_task(task, cfg, task.settings(cfg.tasks.get("churn"), num_boost_round=60), as_of="2017-10-01",
                        data=data)
    registry.promote("churn")
    files = []
    for cut in ("2017-10-01", "2017-12-01"):
        s = _scores(result.bundle, result.version, data, cut)
        s["model"] = "churn"
        files.append(tmp_path / f"scores-{cut}.parquet")
        s.to_parquet(files[-1])
    reports = {}
    for cut in ("2017-12-01", "2018-01-01"):
        checks = monitor(cfg, data, as_of=cut, models=["churn"], score_files=files, log_to_mlflow=cut == "2018-01-01")
        write_html(checks, cfg.monitoring, tmp_path / cut / "monitor.html")
        reports[cut] = json.loads(write_json(checks, tmp_path / cut / "monitor.json").read_text())["models"][0]
    early, late = reports["2017-12-01"], reports["2018-01-01"]
    assert early["as_of"] == "2017-12-01" and late["as_of"] == "2018-01-01" and early["rows"] != late["rows"]
    assert len(late["features"]) == len(result.bundle.features) and all(f["psi"] is not None for f in late["features"])
    horizon = int(result.bundle.settings["horizon_days"])
    december = len(pd.read_parquet(files[1]))
    assert late["realised"]["waiting"] == december  # 2017-12-01 + horizon is after the data's end
    assert late["realised"]["judged"] > 500 and 0.5 < late["headline"]["realised_roc_auc"] <= 1
    assert late["realised"]["waiting_until"] == str((pd.Timestamp("2017-12-01") + pd.Timedelta(days=horizon)).date())
    assert {m["column"] for m in late["migration"]} == {"rfm_segment", "lifecycle_stage"}
    for cut in reports:
        assert (tmp_path / cut / "monitor.html").read_text().count("data:image/png;base64,") == 2


def test_psi_uses_the_reference_bins_and_counts_missing_as_a_bin():
    from crmscore.config import MonitoringConfig
    from crmscore.models.reference import profile_feature
    from crmscore.monitoring.drift import categorical_drift, migration, numeric_drift, psi

    rng = np.random.default_rng(0)
    ref = profile_feature(pd.Series(rng.normal(0, 1, 5000)), categorical=False)
    cfg = MonitoringConfig()
    same = numeric_drift("x", ref, pd.Series(rng.normal(0, 1, 5000)), cfg)
    moved = numeric_drift("x", ref, pd.Series(rng.normal(0.5, 1, 5000)), cfg)
    assert same.psi < 0.02 and same.status == "ok" and same.p_value > 0.01
    assert moved.psi > cfg.psi_watch and moved.p_value < 1e-6
    # by hand: ten equal bins, half the values become missing -> each bin 5%, missing 50%
    half = pd.Series(np.where(rng.random(5000) < 0.5, np.nan, rng.normal(0, 1, 5000)))
    expected = psi(np.append(np.full(10, 0.1), 0.0), np.append(np.full(10, 0.05), 0.5))
    assert numeric_drift("x", ref, half, cfg).psi == pytest.approx(expected, rel=0.05)
    assert numeric_drift("x", ref, half, cfg).status == "act" and expected > 0.25
    levels = profile_feature(pd.Series(["a"] * 500 + ["b"] * 500), categorical=True)
    new = categorical_drift("c", levels, pd.Series(["a"] * 400 + ["b"] * 400 + ["z"] * 200), cfg, 1000)
    assert "new levels: ['z']" in new.detail and new.status != "ok" and new.p_value < 1e-6
    before = pd.DataFrame({"customer_id": ["1", "2", "3"], "lifecycle_stage": ["active", "active", "new"]})
    after = pd.DataFrame({"customer_id": ["1", "3", "4"], "lifecycle_stage": ["lapsed_30", "active", "new"]})
    m = migration(before, after, "lifecycle_stage")
    assert m["transitions"] == {"active": {"lapsed_30": 1, "(gone)": 1}, "new": {"active": 1}, "(new)": {"new": 1}}
    assert m["stayed_share"] == 0.0
