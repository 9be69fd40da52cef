"""Uplift: campaign data in the contract, the uplift learners on the synthetic campaign's planted effects, the
marketer's measures, "did it work?", and the CLI from training to scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, SHARED_DATA, requires_shared, tracking_store, write_config, write_frames
from crmscore import synthetic
from crmscore.config import load_config
from crmscore.data.loader import load_customer_data
from crmscore.errors import DataContractError


@pytest.fixture(scope="module")
def campaign_dir(tmp_path_factory):
    """6,000 synthetic customers with the documented campaign (planted persuadables and do-not-disturb)."""
    out = tmp_path_factory.mktemp("campaign")
    data = synthetic.generate(customers=6000, seed=2)
    synthetic.write(data, out)
    camp = synthetic.campaign(data)
    synthetic.write_campaign(camp, out / "campaign")
    return out, data, camp


@pytest.fixture(scope="module")
def campaign_config(campaign_dir, tmp_path_factory):
    out, _, _ = campaign_dir
    cfg = yaml.safe_load((REPO / "training/configs/synthetic_campaign.yaml").read_text())
    for source in cfg["data"].values():
        source["path"] = str(out / source["path"].removeprefix("data/demo/"))
    cfg["validation"]["quarantine_dir"] = str(out / "quarantine")
    path = out / "campaign.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def fitted(campaign_config):
    from crmscore.models.pipeline import fit_and_evaluate
    from crmscore.models.tasks import get_task

    cfg = load_config(campaign_config)
    data = load_customer_data(cfg)
    task = get_task("uplift-winback")
    s = task.settings(cfg.tasks.get("uplift"))
    ds = task.dataset(task, cfg, data, s, None, False)
    bundle, metrics, base, curves = fit_and_evaluate(task, ds, s)
    return ds, bundle, metrics, base, curves, data


# -- the generator ---------------------------------------------------------------------------------
def test_synthetic_campaign_plants_the_documented_effects_and_leaves_generate_alone(campaign_dir):
    _, data, camp = campaign_dir
    again = synthetic.generate(customers=6000, seed=2)
    pd.testing.assert_frame_equal(again.transactions, data.transactions)  # campaign() changed nothing in place
    truth = camp.truth
    assert set(truth["customer_id"]) == set(camp.treatments["customer_id"])
    assert abs(camp.treatments["treated"].mean() - 0.5) < 0.03
    by = truth.groupby(["planted_segment", "treated"])
    added = by["added_orders"].mean()
    assert added[("persuadable", 0)] == 0 and added[("none", 1)] == 0
    assert abs(added[("persuadable", 1)] - synthetic.PERSUADABLE_EXTRA_ORDER_PROB) < 0.06
    removed = by["removed_orders"].sum()
    assert removed[("do_not_disturb", 1)] > 0 and removed[("do_not_disturb", 0)] == 0
    added_lines = camp.transactions[camp.transactions["order_id"].str.startswith("C")]
    assert len(added_lines) == truth["added_orders"].sum()
    assert added_lines["ts"].between(camp.at, camp.at + pd.Timedelta(days=camp.horizon_days)).all()


# -- the contract ----------------------------------------------------------------------------------
def test_treatments_table_is_mapped_and_checked(tmp_path):
    from crmscore.models.uplift import campaign_rows

    tx = pd.DataFrame({"customer_id": ["a", "a", "b", "c", "c"],
                       "ts": ["2024-01-05", "2024-02-03", "2024-01-20", "2024-01-10", "2024-03-20"],
                       "amount": [10.0, 5.0, 7.0, 3.0, 4.0]})
    tr = pd.DataFrame({"cust": ["a", "b", "c"], "camp": "spring", "grp": ["treatment", "control", "treatment"],
                       "when": ["2024-02-01 10:00", "2024-02-01 10:00", "2024-02-01 10:00"]})
    frames = write_frames(tmp_path, {"transactions": tx, "treatments": tr})
    frames["treatments"]["columns"] = {"customer_id": "cust", "campaign": "camp", "ts": "when",
                                       "treated": "CASE WHEN grp = 'treatment' THEN 1 ELSE 0 END"}
    data = load_customer_data(load_config(write_config(tmp_path, frames)))
    rows = campaign_rows(data, "spring", 30).set_index("customer_id")
    # a buys on 02-03 (2 days after treatment), b's last purchase is before, c's next is after the 30 days
    assert rows.loc["a", ["treated", "purchase", "spend", "pre_purchase"]].tolist() == [1, 1, 5.0, 1]
    assert rows.loc["b", ["treated", "purchase", "pre_purchase"]].tolist() == [0, 0, 1]
    assert rows.loc["c", ["treated", "purchase", "pre_purchase"]].tolist() == [1, 0, 1]
    with pytest.raises(DataContractError, match=r"no rows for campaign 'autumn' \(campaigns: spring\)"):
        campaign_rows(data, "autumn", 30)
    frames["treatments"]["columns"]["treated"] = "grp"  # text that is not 1/0: a contract violation
    cfg = load_config(write_config(tmp_path, frames, validation={"quarantine_dir": str(tmp_path / "q"),
                                                                 "max_bad_share": 1.0}))
    bad = load_customer_data(cfg, strict=False)
    assert bad.reports["treatments"].rows_bad == 3 and "treated" in bad.reports["treatments"].issues[0].column


# -- the marketer's measures -----------------------------------------------------------------------
def test_qini_and_uplift_curves_on_a_hand_computed_example():
    from crmscore.models.uplift_evaluation import uplift_metrics, uplift_table

    # ranked by score: T buys, T buys, C buys, T does not, C does not, C does not
    y = [1, 1, 1, 0, 0, 0]
    t = [1, 1, 0, 1, 0, 0]
    score = [6, 5, 4, 3, 2, 1]
    tab = uplift_table(y, t, score)
    # Qini Y_t - Y_c N_t / N_c and uplift (rate_t - rate_c) x k at k = 0..6:
    # k=1, 2: no control yet: Q = 1, 2; uplift = 1 x 1, 1 x 2. k=3: Q = 2 - 1 x 2/1 = 0; uplift = (1 - 1) x 3 = 0
    # k=4: Q = 2 - 1 x 3/1 = -1; uplift = (2/3 - 1) x 4 = -4/3. k=5: Q = 2 - 1 x 3/2 = 0.5; uplift = (2/3 - 1/2) x 5
    # k=6: Q = 2 - 1 x 3/3 = 1; uplift = (2/3 - 1/3) x 6 = 2. The table holds them per customer (/ 6).
    assert np.allclose(tab["qini"] * 6, [0, 1, 2, 0, -1, 0.5, 1])
    assert np.allclose(tab["uplift"] * 6, [0, 1, 2, 0, -4 / 3, 5 / 6, 2])
    m = uplift_metrics(y, t, score, share=1 / 3)
    assert m["ate"] == pytest.approx(2 / 3 - 1 / 3)
    assert m["lift_at_share"] != m["lift_at_share"]  # the top third holds no control row: not measurable
    assert uplift_metrics(y, t, np.zeros(6))["qini"] == pytest.approx(0.0)  # a constant score is the random line
    # area by trapezoids: (0.5 + 1.5 + 1 - 0.5 - 0.25 + 0.75) / 36 = 1/12, less the random line's (1/6) / 2
    assert m["qini"] == pytest.approx(0.0)
    good = [6, 5, 1, 4, 3, 2]  # treated buyers first, the control buyer last
    assert uplift_metrics(y, t, good)["qini"] > 0 > uplift_metrics(y, t, -np.asarray(good))["qini"]


# -- the model on planted effects -----------------------------------------------------------------
def test_uplift_model_beats_every_baseline_and_finds_the_persuadables(fitted, campaign_dir):
    ds, bundle, metrics, base, curves, _ = fitted
    _, _, camp = campaign_dir
    assert set(base) == {"target everyone", "churn score", "purchase probability"}
    for name, result in base.items():
        assert metrics["qini"] > result["qini"], (name, metrics["qini"], result["qini"])
    assert metrics["auuc"] > metrics["auuc_random"]
    segment = camp.truth.set_index("customer_id").loc[ds.test["customer_id"], "planted_segment"].to_numpy()
    lift = curves["scores"]["model"]
    top = np.argsort(-lift)[: len(lift) // 5]
    planted = (segment == "persuadable").mean()
    assert (segment[top] == "persuadable").mean() > 2.5 * planted  # the top fifth is mostly the planted segment
    assert lift[segment == "persuadable"].mean() > lift[segment != "persuadable"].mean() + 0.05
    assert lift[segment == "do_not_disturb"].mean() < lift[segment == "persuadable"].mean()


def test_scores_carry_lift_reasons_and_quadrants(fitted, tmp_path):
    from crmscore.models.bundle import TrainedModel

    from crmscore.scoring.explained import score_with_reasons

    ds, bundle, *_ = fitted
    out = score_with_reasons(bundle, ds.test.head(100), top_k=3)
    assert {"score", "p_control", "p_treated", "quadrant", "reasons", "base_value"} <= set(out.columns)
    assert set(out["quadrant"]) <= {"persuadable", "sure_thing", "lost_cause", "do_not_disturb"}
    # the reasons explain the lift itself: base value + every contribution = the score
    expl = bundle.model.explain(ds.test.head(40)[ds.features])
    assert np.allclose(expl.base_value + expl.contributions.sum(1), out["score"].head(40))
    assert all(len(r) == 3 and "lift" in r[0]["text"] for r in out["reasons"])
    persuadable = out["quadrant"] == "persuadable"
    assert (out.loc[persuadable, "score"] >= bundle.settings["min_lift"]).all()
    loaded = TrainedModel.load(bundle.save(tmp_path / "b"))
    assert loaded.kind == "uplift"
    assert np.allclose(loaded.predict(ds.test[ds.features]), bundle.predict(ds.test[ds.features]))


# -- did it work? ----------------------------------------------------------------------------------
def test_cuped_narrows_the_interval_and_both_cover_a_known_effect():
    from crmscore.models.campaign_effect import measured_effect

    rng = np.random.default_rng(3)
    n, effect = 20_000, 0.5
    pre = rng.normal(10, 3, n)
    t = rng.integers(0, 2, n)
    y = pre + effect * t + rng.normal(0, 1, n)  # past behaviour explains most of the outcome's variance
    r = measured_effect(y, t, pre)
    assert r["ci_low"] < effect < r["ci_high"] and r["ci_low_cuped"] < effect < r["ci_high_cuped"]
    assert r["method"] == "cuped" and r["variance_reduction"] > 0.8
    assert (r["ci_high_cuped"] - r["ci_low_cuped"]) < (r["ci_high"] - r["ci_low"]) / 2
    noise = measured_effect(y, t, rng.normal(size=n))  # a useless pre-period: not used when it does not help
    assert noise["best_effect"] == noise["effect"] or noise["best_ci_high"] - noise["best_ci_low"] <= \
        noise["ci_high"] - noise["ci_low"]


def test_campaign_effect_per_segment_finds_where_it_worked(fitted, campaign_dir):
    from crmscore.models.campaign_effect import campaign_effect

    *_, data = fitted
    table = campaign_effect(data, "winback", 30).set_index("segment")
    overall = table.loc["all"]
    assert overall["best_ci_low"] > 0  # the planted winback works on average
    lapsed = [s for s in table.index if s.startswith("lapsed")]
    assert lapsed and max(table.loc[lapsed, "best_ci_low"]) > 0
    assert table.loc["prospect", "best_ci_low"] < 0 < table.loc["prospect", "best_ci_high"]  # no effect planted


# -- end to end: CLI, MLflow, report ---------------------------------------------------------------
def _cli(*args):
    """The CLI in this process (the subprocess start-up, mostly imports, cost more than the work here)."""
    from typer.testing import CliRunner

    from crmscore.cli import _register, app

    _register()
    return CliRunner().invoke(app, list(args))


def test_cli_train_promote_score_and_campaign_effect(campaign_config, tmp_path, monkeypatch):
    import mlflow

    from crmscore.models.evaluation import quality_grade

    monkeypatch.setenv("CRMSCORE_TRACKING_URI", tracking_store(tmp_path))
    monkeypatch.setenv("CRMSCORE_ARTIFACT_LOCATION", str(tmp_path / "mlruns"))
    # the plumbing, not the choice of learner (test_uplift_model_beats... fits them all, out-of-fold): two learners
    # whose reasons are one TreeSHAP pass, chosen on the validation rows, and fewer trees keep this the cheap end
    cfg = yaml.safe_load(campaign_config.read_text())
    cfg["tasks"]["uplift"].update({"methods": ["x", "to"], "num_boost_round": 200, "selection": "validation"})
    campaign_config = tmp_path / "campaign.yaml"
    campaign_config.write_text(yaml.safe_dump(cfg))
    res = _cli("train", "uplift", "--campaign", "winback", "--config", str(campaign_config), "--json")
    assert res.exit_code == 0, res.output[-2000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result["task"] == "uplift-winback" and result["registered_version"] == "1"
    metrics = result["metrics"]
    assert metrics["qini"] > result["baselines"]["purchase probability"]["qini"]
    # the learner's choice is on the run: each candidate's AUUC where it was chosen and its gap's standard error
    logged = mlflow.get_run(result["run_id"]).data.metrics
    assert {f"validation_{k}_{m}" for k in ("auuc", "gap_se") for m in ("x", "to")} <= set(logged)
    # the grade's A margin is on the Qini scale: a tenth of random targeting's AUUC on the same rows
    assert metrics["grade_margin"] == pytest.approx(0.1 * abs(metrics["auuc_random"]))
    assert result["grade"] == quality_grade(metrics["qini"], metrics["best_baseline_qini"], metrics["grade_margin"])
    report = mlflow.artifacts.download_artifacts(run_id=result["run_id"], artifact_path="evaluation/report.html",
                                                 dst_path=str(tmp_path / "dl"))
    html = open(report).read()
    for text in ("Qini curve", "Uplift by decile", "purchase probability", "churn score", "persuadable",
                 "data:image/png;base64,"):
        assert text in html, text
    res = _cli("promote", "uplift-winback")
    assert res.exit_code == 0 and "now @champion" in res.output, res.output
    out = tmp_path / "scores.parquet"
    res = _cli("score", "uplift", "--campaign", "winback", "--config", str(campaign_config), "--out", str(out),
               "--top-k", "2")
    assert res.exit_code == 0, res.output[-2000:]
    scores = pd.read_parquet(out)
    assert {"customer_id", "score", "p_control", "p_treated", "quadrant", "reason_1", "model_version"} <= \
        set(scores.columns)
    assert len(scores) >= 6000 * 0.9 and scores["quadrant"].nunique() >= 3
    res = _cli("campaign", "effect", "--campaign", "winback", "--config", str(campaign_config), "--json")
    assert res.exit_code == 0, res.output[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])[0]["segment"] == "all"
    res = _cli("train", "uplift", "--campaign", "nope", "--config", str(campaign_config))
    assert isinstance(res.exception, DataContractError) and "no rows for campaign 'nope'" in str(res.exception)

    # served: the service's answer for one customer, and the operations page's model view with the report
    from types import SimpleNamespace

    from crmscore.explain import i18n
    from crmscore.scoring.online import ScoringEngine
    from crmscore.scoring.publish import publish_snapshot
    from crmscore.settings import get_settings
    from crmscore.ui.routes import campaign_report, model_context, templates
    from crmscore.ui.views import PageViews

    monkeypatch.setenv("CRMSCORE_HOME", str(tmp_path / "home"))
    publish_snapshot(load_customer_data(load_config(campaign_config)), None, get_settings())
    engine = ScoringEngine(get_settings())
    batch = scores.set_index("customer_id")
    cid = str(batch["score"].idxmax())
    (served,) = engine.score("uplift-winback", [{"customer_id": cid}], True, 2, "r-uplift")
    assert served["score"] == pytest.approx(batch.loc[cid, "score"], abs=1e-9)  # the service and batch agree
    assert served["details"]["quadrant"] == batch.loc[cid, "quadrant"] == "persuadable"
    assert served["reasons"][0]["text"] == batch.loc[cid, "reason_1"]
    (zh,) = engine.score("uplift-winback", [{"customer_id": cid}], True, 2, "r-zh", lang="zh")
    assert all("营销活动" in r["text"] for r in zh["reasons"])
    overview = PageViews(engine).model_overview("uplift-winback", sample=50, scored=300)  # the same for both languages
    for lang in ("en", "zh"):
        page = SimpleNamespace(lang=lang, t=lambda key, _l=lang, **values: i18n.text(_l, key, **values))
        ctx = model_context(overview, engine.models["uplift-winback"], page)
        assert ctx["campaign_report"] and {r["label"] for r in ctx["rows"]} >= {i18n.text(lang, "metrics.qini")}
        html = templates().get_template("model.html").render(t=page.t, lang=lang, session=None, path="/ui/models/x",
                                                             other_lang="en", other_lang_name="", switch_url="", **ctx)
        assert 'href="/ui/models/uplift-winback/report"' in html
    body = campaign_report("uplift-winback", page, engine).body.decode()
    assert "Qini curve" in body and "data:image/png;base64," in body


# -- a ready experiment table (the shared Starbucks promotion) --------------------------------------
@requires_shared
def test_ready_experiment_table_trains_with_a_treatment_column(tmp_path):
    src = SHARED_DATA / "uplift" / "starbucks_training.parquet"
    if not src.exists():
        pytest.skip(f"{src} is absent")
    df = pd.read_parquet(src).sample(20_000, random_state=0)
    df.to_parquet(tmp_path / "sb.parquet", index=False)
    cfg = load_config(write_config(tmp_path, {"features": {"path": str(tmp_path / "sb.parquet"), "id": "ID",
                                                          "label": "purchase", "positive": 1,
                                                          "treatment": "Promotion", "treated_value": "Yes"}}))
    from crmscore.models.pipeline import fit_and_evaluate
    from crmscore.models.tasks import get_task

    task = get_task("uplift-starbucks")
    # the ready table's plumbing, not the learners (one cheap one; all five are tested on the synthetic campaign)
    s = task.settings({"min_positives": 20, "min_negatives": 20, "methods": ["x"], "num_boost_round": 200})
    ds = task.dataset(task, cfg, None, s, None, False)
    assert "Promotion" not in ds.features and set(ds.test["treated"]) == {0, 1}
    _, metrics, base, _ = fit_and_evaluate(task, ds, s)
    assert np.isfinite(metrics["qini"]) and set(base) == {"target everyone", "churn score", "purchase probability"}


def test_s_learner_lift_follows_a_response_scaled_effect_and_its_reasons_add_up_exactly(tmp_path):
    """A campaign that shifts every customer's log-odds by the same amount moves likely buyers more points than
    unlikely ones: the S-learner recovers that ranking, and its interventional SHAP difference adds up to its own
    lift (categorical column included), before and after a save."""
    from crmscore.models.uplift_learner import UpliftModel

    rng = np.random.default_rng(3)
    n = 6000
    X = pd.DataFrame({"visits": rng.normal(size=n), "noise": rng.normal(size=n),
                      "region": pd.Categorical(rng.choice(["north", "south", "west"], n))})
    t = rng.integers(0, 2, n)
    base = -2.5 + 1.2 * X["visits"] + 0.6 * (X["region"] == "north")
    true_lift = 1 / (1 + np.exp(-(base + 1.0))) - 1 / (1 + np.exp(-base))
    y = (rng.random(n) < 1 / (1 + np.exp(-(base + 1.0 * t)))).astype(float)
    tr, va, te = slice(0, 3600), slice(3600, 4800), slice(4800, n)
    model = UpliftModel("binary", {}, 300, 17, method="s").fit(X[tr], y[tr], t[tr], X[va], y[va], t[va])
    assert model.method_ == "s" and model.selection_auuc_ == {}  # forced: nothing to choose
    lift = model.predict(X[te])
    assert pd.Series(lift).corr(pd.Series(true_lift[te].to_numpy()), method="spearman") > 0.8
    expl = model.explain(X[te].head(100))
    assert expl.contributions.shape == (100, 3) and expl.feature_names == ["visits", "noise", "region"]
    assert np.allclose(expl.base_value + expl.contributions.sum(1), lift[:100], atol=1e-6)
    # the feature that drives the response drives the lift; the noise column barely moves it
    assert np.abs(expl.contributions[:, 0]).mean() > 2 * np.abs(expl.contributions[:, 1]).mean()
    loaded = UpliftModel.load(model.save(tmp_path / "s"))
    assert loaded.method_ == "s" and np.allclose(loaded.predict(X[te]), lift)
    assert np.allclose(loaded.explain(X[te].head(20)).contributions, expl.contributions[:20])


def test_x_learner_and_response_scaled_lifts_have_exact_reasons_and_validation_applies_the_one_se_rule(tmp_path):
    """The X-learner (a weighted sum of two effect models) and the response-scaled lift (a constant share of one
    response model) both rank a log-odds-shift campaign's customers like the truth, and their SHAP reasons add up to
    their own lift; left to choose, the model keeps the most constrained method within one standard error."""
    from crmscore.models.uplift_learner import METHODS, UpliftModel

    rng = np.random.default_rng(5)
    n = 5000
    X = pd.DataFrame({"visits": rng.normal(size=n), "noise": rng.normal(size=n),
                      "region": pd.Categorical(rng.choice(["north", "south", "west"], n))})
    t = (rng.random(n) < 0.7).astype(int)  # an unequal split, as in Lenta's (75% treated)
    base = -2.0 + 1.2 * X["visits"] + 0.6 * (X["region"] == "north")
    true_lift = (1 / (1 + np.exp(-(base + 1.0))) - 1 / (1 + np.exp(-base))).to_numpy()
    y = (rng.random(n) < 1 / (1 + np.exp(-(base + 1.0 * t)))).astype(float)
    tr, va, te = slice(0, 3000), slice(3000, 4000), slice(4000, n)
    for method, agreement in (("x", 0.6), ("rs", 0.8)):
        model = UpliftModel("binary", {}, 200, 17, method=method).fit(X[tr], y[tr], t[tr], X[va], y[va], t[va])
        lift = model.predict(X[te])
        assert pd.Series(lift).corr(pd.Series(true_lift[te]), method="spearman") > agreement, method
        expl = model.explain(X[te].head(100))
        assert expl.feature_names == ["visits", "noise", "region"]
        assert np.allclose(expl.base_value + expl.contributions.sum(1), lift[:100], atol=1e-6), method
        loaded = UpliftModel.load(model.save(tmp_path / method))
        assert loaded.method_ == method and np.allclose(loaded.predict(X[te]), lift)
    # the rule on validation rows (the cheaper selection; the out-of-fold one is the same rule on other rows)
    auto = UpliftModel("binary", {}, 200, 17, methods=("to", "x", "rs"), selection="validation").fit(
        X[tr], y[tr], t[tr], X[va], y[va], t[va])
    scores, se = auto.selection_auuc_, auto.selection_gap_se_
    assert set(scores) == set(se) == {"to", "x", "rs"}
    best = max(scores, key=scores.get)
    assert se[best] == 0 and all(se[m] > 0 for m in scores if m != best)
    within = [m for m in METHODS if m in scores and scores[best] - scores[m] <= se[m]]
    assert auto.method_ == within[0]


def test_out_of_fold_selection_reads_training_and_validation_rows_never_test_rows(tmp_path):
    """The learner is chosen on out-of-fold AUUC over the training and validation rows: other outcomes in the test
    rows leave the choice and every candidate's score unchanged; other outcomes in the validation rows move them."""
    from crmscore.models.tasks import get_task
    from crmscore.models.uplift import fit_uplift

    rng = np.random.default_rng(11)
    n = 2000
    frame = pd.DataFrame({"row_id": np.arange(n), "visits": rng.normal(size=n), "noise": rng.normal(size=n),
                          "group": rng.integers(0, 2, n)})
    p = 1 / (1 + np.exp(-(-1.5 + frame["visits"] + 0.8 * frame["group"] * (frame["visits"] > 0))))
    frame["bought"] = (rng.random(n) < p).astype(int)
    frame.to_parquet(tmp_path / "exp.parquet", index=False)
    cfg = load_config(write_config(tmp_path, {"features": {"path": str(tmp_path / "exp.parquet"), "id": "row_id",
                                                          "label": "bought", "positive": 1, "treatment": "group",
                                                          "treated_value": 1}}))
    task = get_task("uplift-oof")
    s = task.settings({"methods": ["rs", "to"], "num_boost_round": 40, "min_positives": 20, "min_negatives": 20})
    assert s.selection == "out_of_fold"
    ds = task.dataset(task, cfg, None, s, None, False)

    def choice():
        bundle, metrics, _ = fit_uplift(task, ds, s, s.params)
        return bundle.info["uplift_method"], {k: v for k, v in metrics.items() if k.startswith("out_of_fold_")}

    method, scores = choice()
    assert set(scores) == {"out_of_fold_auuc_rs", "out_of_fold_auuc_to", "out_of_fold_gap_se_rs",
                           "out_of_fold_gap_se_to"}
    ds.test["label"] = 1 - ds.test["label"]
    assert choice() == (method, scores)
    ds.valid["label"] = 1 - ds.valid["label"]  # validation rows are in the pool: the test above can fail
    assert choice()[1] != scores


def test_the_grade_margin_is_on_the_qini_scale():
    """A ROC-AUC's 0.02 is twice a whole Qini coefficient at a 1-point campaign effect; the uplift grade's margin is
    a tenth of random targeting's AUUC on the same rows."""
    from crmscore.models.evaluation import quality_grade
    from crmscore.models.tasks import get_task
    from crmscore.models.uplift_evaluation import uplift_metrics

    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 4000)
    y = (rng.random(4000) < 0.10 + 0.01 * t).astype(float)  # a 1-point campaign effect
    m = uplift_metrics(y, t, rng.random(4000))
    margin = get_task("uplift-any").grade_margin(m)
    assert margin == pytest.approx(abs(m["ate"]) / 20) and 0 < margin < 0.002
    assert quality_grade(0.0030 + 1.01 * margin, 0.0030, margin) == "A"
    assert quality_grade(0.0030 + 0.5 * margin, 0.0030, margin) == "B"
    assert quality_grade(0.0029, 0.0030, margin) == "C"
    assert get_task("churn").grade_margin is None  # ROC-AUC tasks keep 0.02
