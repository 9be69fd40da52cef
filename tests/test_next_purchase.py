"""Next purchase on the training framework: labels, metrics, the synthetic drivers, scoring, promotion, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.models.bundle import label_column
from crmscore.models.evaluation import decile_mape, multilabel_metrics, normalized_gini, regression_metrics
from crmscore.models.next_purchase import category_labels, purchase_labels, spend_labels
from crmscore.models.tasks import get_task

from conftest import cli_here, write_config, write_frames
from test_churn import mlflow_tmp  # noqa: F401  (a private MLflow store per test)

FAST = {"snapshots": 3}  # fewer snapshots keep each training a few seconds


# -- labels --------------------------------------------------------------------------------------
def test_labels_on_hand_built_histories(tmp_path):
    rows = [("A", "2024-01-10", 10.0, "dairy"), ("A", "2024-02-05 12:00", 30.0, "wine"),   # buys on day 4.5
            ("A", "2024-02-20", 5.0, "dairy"),
            ("B", "2024-01-20", 8.0, "dairy"),                                              # never again
            ("C", "2023-01-01", 9.0, "dairy"),                                              # outside the lookback
            ("D", "2024-02-10", 7.0, "wine"),                                               # new after the cutoff
            ("E", "2024-01-15", 20.0, "wine"), ("E", "2024-02-01", 20.0, "wine"),           # buys at the cutoff
            ("E", "2024-02-03", -25.0, "wine"),                                             # then a refund
            ("F", "2024-01-15", 4.0, "dairy"), ("F", "2024-03-02", 50.0, "wine")]           # at the window's end
    tx = pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "category"])
    data = load_customer_data(load_config(write_config(tmp_path, write_frames(tmp_path, {"transactions": tx}))))
    cut = pd.Timestamp("2024-02-01")
    s = get_task("next-purchase").settings(lookback_days=180)   # horizon_days defaults to 30
    assert s.horizon_days == 30
    lab = purchase_labels(data, cut, s).set_index("customer_id")
    assert lab["label"].to_dict() == {"A": 1, "B": 0, "E": 1, "F": 0}
    assert lab.loc["A", "days_to_next"] == pytest.approx(4.5) and lab.loc["E", "days_to_next"] == 0.0
    assert lab.loc[["B", "F"], "days_to_next"].isna().all()
    spend = spend_labels(data, cut, get_task("expected-spend").settings(lookback_days=180)).set_index("customer_id")
    assert spend["label"].to_dict() == {"A": 35.0, "B": 0.0, "E": 0.0, "F": 0.0}  # E: 20 - 25 floored at 0
    s = get_task("next-category").settings(lookback_days=180, categories=["dairy", "wine"])
    cat = category_labels(data, cut, s).set_index("customer_id")
    assert cat[label_column("dairy")].to_dict() == {"A": 1, "B": 0, "E": 0, "F": 0}
    assert cat[label_column("wine")].to_dict() == {"A": 1, "B": 0, "E": 1, "F": 0}  # a purchase, then a refund
    assert cat["label"].to_dict() == {"A": 1, "B": 0, "E": 1, "F": 0}


# -- metrics -------------------------------------------------------------------------------------
def test_regression_metrics_on_a_hand_computed_example():
    y = np.array([0.0, 0.0, 10.0, 30.0])
    # pred orders the customers 10, 30, 0, 0: cumulative spend shares 0.25, 1, 1, 1 at 1/4..4/4 of the customers,
    # area 0.6875 -> Gini 0.375; the perfect order (30, 10, 0, 0): area 0.8125 -> Gini 0.625; normalised 0.6
    pred = np.array([1.0, 2.0, 4.0, 3.0])
    assert normalized_gini(y, pred) == pytest.approx(0.6)
    assert normalized_gini(y, y) == pytest.approx(1.0) and normalized_gini(y, -y) == pytest.approx(-1.0)
    assert normalized_gini(y, np.ones(4)) == pytest.approx(0.0)  # one tie: no ordering, no Gini
    # deciles of 2: (rows 2, 3: pred mean 3.5, actual 20) and (rows 0, 1: actual 0, left out) -> |3.5 - 20| / 20
    assert decile_mape(y, pred, groups=2) == pytest.approx(16.5 / 20)
    m = regression_metrics(y, pred)
    assert m["total_spend_error"] == pytest.approx((10 - 40) / 40)
    assert m["spearman"] == pytest.approx(3.5 / np.sqrt(4.5 * 5))  # ranks y (1.5, 1.5, 3, 4) vs pred (1, 2, 4, 3)
    assert m["mae"] == pytest.approx((1 + 2 + 6 + 27) / 4)


def test_ranking_metrics_on_a_hand_computed_example():
    Y = np.array([[1, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]])   # the third customer bought nothing: left out
    S = np.array([[0.9, 0.8, 0.1, 0.2], [0.5, 0.4, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4]])
    m = multilabel_metrics(Y, S, ks=(1, 3))
    assert m["rows"] == 2
    assert m["hit_rate_at_1"] == 0.5 and m["hit_rate_at_3"] == 1.0
    assert m["precision_at_3"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    # customer 1: relevant at ranks 1 and 3 -> (1 + 1/2) / (1 + 1/log2(3)); customer 2: rank 3 -> 0.5 / 1
    assert m["ndcg_at_3"] == pytest.approx(((1 + 0.5) / (1 + 1 / np.log2(3)) + 0.5) / 2)
    # excluding a regular category removes it from the ranking and from the truth
    ex = np.zeros_like(Y, dtype=bool)
    ex[0, 0] = True
    assert multilabel_metrics(Y, S, exclude=ex, ks=(1,))["hit_rate_at_1"] == 0.0


# -- the three models, trained once (no MLflow) --------------------------------------------------
@pytest.fixture(scope="module")
def trained(synthetic_config):
    from crmscore.models.pipeline import fit_and_evaluate, transactional_dataset

    data = load_customer_data(load_config(synthetic_config))
    out = {}
    for name in ("next-purchase", "expected-spend", "next-category"):
        task = get_task(name)
        ds = transactional_dataset(task, data, task.settings(**FAST))
        out[name] = (ds, *fit_and_evaluate(task, ds, ds.settings))
    return data, out


def test_next_category_recovers_the_synthetic_affinities(trained, synthetic_dir):
    _, out = trained
    ds, bundle, metrics, baselines, curves = out["next-category"]
    assert bundle.targets and set(bundle.targets) <= set(
        __import__("crmscore.synthetic", fromlist=["CATEGORIES"]).CATEGORIES)
    # beats the same-for-everyone popularity ranking clearly
    assert metrics["hit_rate_at_3"] >= baselines["popularity"]["hit_rate_at_3"] + 0.03
    assert metrics["ndcg"] > baselines["popularity"]["ndcg"] + 0.03
    truth = pd.read_parquet(synthetic_dir / "truth.parquet").set_index("customer_id")
    A = truth.loc[ds.test["customer_id"].astype(str), [f"affinity_{c}" for c in bundle.targets]].to_numpy()
    P = bundle.predict(ds.test)
    rows = np.arange(len(A))
    # the category the model puts first is one the customer has a much higher affinity for than popularity's pick
    pop = curves["baselines"]["popularity"]
    assert A[rows, P.argmax(1)].mean() > 1.6 * A[rows, pop.argmax(1)].mean()
    # within a customer, the ranking follows the affinities: mean rank correlation well above zero
    from scipy.stats import spearmanr

    rho = np.nanmean([spearmanr(P[i], A[i]).statistic for i in range(len(A))])
    assert rho > 0.3
    # the documented cross-sell pair pet_food -> pet_care: pet food buyers are far likelier to buy pet care
    pet_food = ds.test["category_share_pet_food"].fillna(0).to_numpy() > 0
    j = bundle.targets.index("pet_care")
    assert P[pet_food, j].mean() > 3 * P[~pet_food, j].mean()


def test_next_category_features_carry_each_targets_purchase_history(trained):
    from crmscore.features import feature_set_for
    from crmscore.features.definitions import slug
    from crmscore.models.next_purchase import category_feature_set

    data, out = trained
    ds = out["next-category"][0]
    for t in ds.settings.categories:
        for name in ("category_share", "category_recency", "category_orders_30d", "category_orders_90d",
                     "category_orders_365d", "category_order_share"):
            assert f"{name}_{slug(t)}" in ds.features, (name, t)
    # only next-category's set has them: the other tasks' (and the default) set is unchanged
    for name in ("next-purchase", "expected-spend"):
        assert not any(f.startswith("category_recency_") for f in out[name][0].features)
    first = min(ds.train["as_of"])
    assert not any(f.group == "category_history" for f in feature_set_for(data, first).features)
    # history_windows [] leaves them out
    off = category_feature_set(data, first, ds.settings.model_copy(update={"history_windows": []}))
    assert not any(f.group == "category_history" for f in off.features)


def test_next_purchase_and_spend_beat_their_baselines(trained):
    _, out = trained
    _, purchase, m, base, _ = out["next-purchase"]
    assert set(base) == {"recency", "frequency", "bgnbd"}
    assert m["roc_auc"] > max(b["roc_auc"] for b in base.values())
    assert m["days_to_next_mae"] < m["days_to_next_mae_baseline"]
    assert 0.5 < m["days_to_next_interval_coverage"] <= 1.0
    _, spend, m, base, _ = out["expected-spend"]
    assert set(base) == {"bgnbd_gamma_gamma", "spend_rate"}
    assert m["normalized_gini"] > base["bgnbd_gamma_gamma"]["normalized_gini"]
    assert abs(m["total_spend_error"]) < 0.5 and spend.kind == "regression"


def test_score_output_columns(trained):
    from crmscore.scoring.batch import score_next_purchase

    data, out = trained
    models = {name: (v[1], "1") for name, v in out.items()}
    as_of = data.ts_range()[1].normalize() + pd.Timedelta(days=1)
    scores = score_next_purchase(models, data, as_of, top_k=3, max_categories=4)
    for col in ("customer_id", "score", "decile", "rfm_segment", "lifecycle_stage", "days_to_next", "days_to_next_low",
                "days_to_next_high", "expected_spend", "top_category", "top_category_probability", "next_categories",
                "reasons", "reason_1", "reason_3", "category_reasons", "category_reason_1", "model_version",
                "spend_model_version", "category_model_version"):
        assert col in scores.columns, col
    assert scores["customer_id"].is_unique and scores["score"].between(0, 1).all()
    assert (scores["expected_spend"] >= 0).all() and scores["expected_spend"].sum() > 0
    assert (scores["days_to_next_low"] <= scores["days_to_next"]).all()
    assert (scores["days_to_next"] <= scores["days_to_next_high"]).all() and (scores["days_to_next_high"] <= 30).all()
    assert scores["reason_1"].str.contains("makes a purchase (?:more|less) likely").all()
    listed = scores["next_categories"]
    # next-category's population is the customers with a purchase: those who never bought get no category
    has_category = scores["top_category"].notna()
    assert listed[has_category].map(len).between(1, 4).all() and (listed[~has_category].map(len) == 0).all()
    assert (scores.loc[~has_category, "lifecycle_stage"] == "prospect").all() and has_category.mean() > 0.5
    assert scores.loc[~has_category, "top_category_probability"].isna().all()
    for items in listed.head(50):
        probs = [c["probability"] for c in items]
        assert probs == sorted(probs, reverse=True)
    first = scores.dropna(subset=["top_category"]).iloc[0]
    assert first["category_reason_1"].endswith(f"buying {first['top_category']} more likely") or \
        first["category_reason_1"].endswith(f"buying {first['top_category']} less likely")
    # regular categories are left out by default, kept on request
    bundle = models["next-category"][0]
    frame = out["next-category"][0].test
    regular = bundle.regular_mask(frame)
    assert regular.any()
    left_out = bundle.score(frame, explain=False, max_targets=0)["next_categories"]
    kept = bundle.score(frame, explain=False, max_targets=0, keep_regular=True)["next_categories"]
    r = int(np.flatnonzero(regular.any(1))[0])
    regular_cats = {bundle.targets[j] for j in np.flatnonzero(regular[r])}
    assert not regular_cats & {c["category"] for c in left_out[r]}
    assert regular_cats <= {c["category"] for c in kept[r]} and len(kept[r]) == len(bundle.targets)
    # "regularly" counts the orders with the category, not all orders: one big basket of it among many
    # orders is not a habit
    from crmscore.features.definitions import slug

    t = slug(bundle.targets[0])
    share, orders = f"category_share_{t}", f"category_orders_365d_{t}"  # the longest window
    assert {share, orders, f"category_orders_90d_{t}"} <= set(frame.columns)
    two = frame.head(2).copy()
    two[share], two["frequency_365d"], two[orders] = 0.5, 12, [1, 3]
    assert bundle.regular_mask(two)[:, 0].tolist() == [False, True]


def test_bundle_round_trip_keeps_companions_and_heads(trained, tmp_path):
    from crmscore.models.bundle import TrainedModel
    from crmscore.scoring.explained import score_with_reasons

    _, out = trained
    for name in ("next-purchase", "next-category"):
        ds, bundle = out[name][0], out[name][1]
        loaded = TrainedModel.load(bundle.save(tmp_path / name))
        a = score_with_reasons(bundle, ds.test.head(20), top_k=2)
        b = score_with_reasons(loaded, ds.test.head(20), top_k=2)
        pd.testing.assert_frame_equal(a.drop(columns=["reasons"]), b.drop(columns=["reasons"]))
        assert a["reasons"].tolist() == b["reasons"].tolist()


# -- registry ------------------------------------------------------------------------------------
def test_promotion_of_a_regression_model(synthetic_config, mlflow_tmp):
    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.registry import PromotionRefused

    cfg = load_config(synthetic_config)
    data = load_customer_data(cfg)
    task = get_task("expected-spend")
    good = train_task(task, cfg, task.settings(**FAST), data=data)
    assert registry.promote("expected-spend")["promoted"]
    weak = train_task(task, cfg, task.settings(**FAST, num_boost_round=1, params={"num_leaves": 2}), data=data)
    with pytest.raises(PromotionRefused, match=r"normalised Gini .* does not beat champion v1 .* stays on v1"):
        registry.promote("expected-spend")
    tags = {str(v["version"]): v["tags"] for v in registry.describe("expected-spend")}
    assert tags[good.version]["primary_metric"] == "normalized_gini" and "normalized_gini" in tags[weak.version]
    bundle, mv = registry.load_bundle("expected-spend", "champion")
    assert str(mv.version) == good.version and bundle.kind == "regression"


def _cli(*args, env):
    """`crmscore ...` as a real process (its exit code, stdout and stderr): where the process itself is checked."""
    return subprocess.run([sys.executable, "-m", "crmscore", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_cli_train_promote_score_end_to_end(synthetic_config, mlflow_tmp, monkeypatch):
    cfg = yaml.safe_load(synthetic_config.read_text())
    cfg["tasks"] = {name: {**FAST, "num_boost_round": 200} for name in ("next-purchase", "expected-spend",
                                                                       "next-category")}
    config = mlflow_tmp / "np.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {"CRMSCORE_TRACKING_URI": f"sqlite:///{mlflow_tmp / 'mlflow.db'}",
           "CRMSCORE_ARTIFACT_LOCATION": str(mlflow_tmp / "mlruns")}
    # training and promotion in this process (the commands' code; a new process each costs its imports), the
    # scoring as a real `crmscore` process: its exit code and the file it writes
    for name, primary in (("next-purchase", "roc_auc"), ("expected-spend", "normalized_gini"),
                          ("next-category", "hit_rate_at_3")):
        res = cli_here("train", name, "--config", config, "--as-of", "2025-01-01", "--horizon-days", "30", "--json",
                        env=env)
        result = json.loads(res.stdout)
        assert result["registered_version"] == "1" and primary in result["metrics"]
        assert result["cutoffs"]["test"].startswith("2024-12-02")
        res = cli_here("promote", name, env=env)
        assert "version 1 is now @champion" in res.stdout, res.output[-2000:]
    out = mlflow_tmp / "np.parquet"
    proc = _cli("score", "next-purchase", "--config", str(config), "--as-of", "2025-01-01", "--out", str(out),
                "--top-k", "2", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = pd.read_parquet(out)
    for col in ("customer_id", "score", "segment", "days_to_next", "days_to_next_low", "days_to_next_high",
                "expected_spend", "next_categories", "reason_1", "reason_2", "category_reason_1"):
        assert col in scores.columns, col
    assert scores["score"].between(0, 1).all() and len(scores) > 100
    assert set(scores["next_categories"].iloc[0][0]) == {"category", "probability"}
    res = cli_here("models", "expected-spend", env={**env, "COLUMNS": "200"})
    assert "normalized_gini" in res.stdout and "@champion" in res.stdout, res.stdout

    # served: the operations page's customer view of every kind of model, and a cross-sell action rule
    from crmscore.scoring.online import ScoringEngine
    from crmscore.scoring.publish import publish_snapshot
    from crmscore.settings import get_settings
    from crmscore.ui.actions import parse_rules

    monkeypatch.setenv("CRMSCORE_HOME", str(mlflow_tmp / "home"))
    publish_snapshot(load_customer_data(load_config(config)), pd.Timestamp("2025-01-01"), get_settings())
    engine = ScoringEngine(get_settings())
    assert set(engine.models) == {"next-purchase", "expected-spend", "next-category"}
    described = {m["name"]: m for m in engine.describe_models()["models"]}  # GET /v1/models
    for name, metric in (("next-purchase", "roc_auc"), ("expected-spend", "normalized_gini"),
                         ("next-category", "hit_rate_at_3")):
        m = described[name]
        assert m["primary_metric"] == metric and 0 < m["test_metrics"][metric] <= 1, m
        assert m["baselines"] and all(isinstance(v, float) for v in m["baselines"].values()), m
    batch = scores.set_index("customer_id")
    cid = str(batch["expected_spend"].idxmax())
    from crmscore.ui.views import PageViews

    views = PageViews(engine)
    view = views.customer_view(cid, "req-view")
    by_model = {s["model"]: s for s in view["scores"]}
    assert all(s.get("error") is None and s["reasons"] for s in by_model.values()), by_model
    spend = by_model["expected-spend"]  # in currency, as the batch scores it; the waterfall ends on it
    assert spend["score"] == pytest.approx(batch.loc[cid, "expected_spend"], rel=1e-6) and spend["score"] > 1
    assert spend["waterfall"]["final"] == pytest.approx(spend["score"], rel=1e-6)
    assert by_model["next-purchase"]["score"] == pytest.approx(batch.loc[cid, "score"], rel=1e-6)
    category = by_model["next-category"]
    assert category["details"]["top_category"] == batch.loc[cid, "top_category"] and "waterfall" not in category
    # reasons in Chinese for every kind of model (the same contributions, the model's own effect translated)
    zh = {s["model"]: s for s in engine.customer(cid, "req-zh", 3, lang="zh")["scores"]}
    effects = {"next-purchase": ("提高购买可能性", "降低购买可能性"), "expected-spend": ("提高预期消费", "降低预期消费"),
               "next-category": tuple(f"{d}购买{category['details']['top_category']}的可能性" for d in ("提高", "降低"))}
    for name, words in effects.items():
        assert zh[name]["reasons"] and all(r["text"].endswith(words) for r in zh[name]["reasons"]), zh[name]
        assert [r["contribution"] for r in zh[name]["reasons"]] == [r["contribution"] for r in by_model[name]["reasons"][:3]]
    assert category["score"] == pytest.approx(batch.loc[cid, "top_category_probability"], rel=1e-6)
    rules = parse_rules(yaml.safe_dump({"rules": [{"id": "xsell", "action": {"en": "offer it"}, "when": {
        "scores": {"next-category": {"top_category": category["details"]["top_category"]}}}}]}))
    assert [a["id"] for a in rules.suggest(view["profile"], view["scores"], view["features"])] == ["xsell"]
    from types import SimpleNamespace

    from crmscore.explain import i18n
    from crmscore.ui.routes import customer_context

    page = SimpleNamespace(lang="zh", t=lambda key, **values: i18n.text("zh", key, **values))
    cards = {c["model"]: c for c in customer_context(view, engine, page)["scores"]}
    assert cards["next-category"]["next_categories"].startswith(category["details"]["top_category"])
    assert "waterfall" not in cards["next-category"] and "<svg" in cards["expected-spend"]["waterfall"]
    assert cards["next-category"]["value"].endswith("%") and not cards["expected-spend"]["value"].endswith("%")
    # the model pages: score distributions on each model's own scale; a beeswarm where there is one booster
    from crmscore.ui.routes import model_context

    spend_view, category_view = views.model_overview("expected-spend"), views.model_overview("next-category")
    assert max(g["p90"] for g in spend_view["by_segment"]) > 1 and spend_view["beeswarm"]  # currency, not 0-1
    assert category_view["by_segment"] and not category_view["beeswarm"]
    assert all(0 <= g["p10"] <= g["p90"] <= 1 for g in category_view["by_segment"])
    assert model_context(category_view, engine.models["next-category"], page)["title"]


def test_next_purchase_scores_alone_and_every_known_customer(synthetic_config, mlflow_tmp, monkeypatch):
    """Only next-purchase trained and promoted: `score next-purchase` writes its columns and leaves the absent
    models' out with one note; every customer known before the cutoff is scored, the lapsed (no purchase for
    a year and more) and those who signed up without buying too; the service scores it on its own."""
    cfg = yaml.safe_load(synthetic_config.read_text())
    cfg["tasks"] = {"next-purchase": {**FAST, "num_boost_round": 200}}
    config = mlflow_tmp / "alone.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {"CRMSCORE_TRACKING_URI": f"sqlite:///{mlflow_tmp / 'mlflow.db'}",
           "CRMSCORE_ARTIFACT_LOCATION": str(mlflow_tmp / "mlruns")}
    for args in (("train", "next-purchase", "--config", str(config), "--json"), ("promote", "next-purchase")):
        cli_here(*args, env=env)
    out = mlflow_tmp / "alone.parquet"
    proc = _cli("score", "next-purchase", "--config", str(config), "--as-of", "2025-01-01", "--out", str(out),
                "--top-k", "2", env={**env, "COLUMNS": "300"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = [line for line in proc.stderr.splitlines() if "next-purchase scores without" in line]
    assert len(notes) == 1 and "expected-spend or next-category" in notes[0], proc.stderr[-2000:]
    scores = pd.read_parquet(out)
    assert {"score", "days_to_next", "reason_1", "model_version"} <= set(scores.columns)
    assert not {"expected_spend", "top_category", "next_categories", "category_reason_1",
                "spend_model_version", "category_model_version"} & set(scores.columns)
    from crmscore.features.build import build_features

    data = load_customer_data(load_config(config))
    feats = build_features(data, "2025-01-01", segments=False).set_index("customer_id")
    assert set(scores["customer_id"]) == set(feats.index)  # every customer known before the cutoff
    scored = feats.loc[scores["customer_id"]]
    assert (scored["recency_days"] >= 365).sum() > 10 and scored["recency_days"].isna().sum() > 10
    assert scores["score"].between(0, 1).all() and scores["score"].notna().all()

    from crmscore.scoring.online import ScoringEngine
    from crmscore.scoring.publish import publish_snapshot
    from crmscore.settings import get_settings

    monkeypatch.setenv("CRMSCORE_HOME", str(mlflow_tmp / "home"))
    publish_snapshot(data, pd.Timestamp("2025-01-01"), get_settings())
    engine = ScoringEngine(get_settings())
    assert set(engine.models) == {"next-purchase"}
    prospect = str(scored.index[scored["recency_days"].isna()][0])
    (served,) = engine.score("next-purchase", [{"customer_id": prospect}], True, 2, "req-alone")
    batch = scores.set_index("customer_id").loc[prospect, "score"]
    assert served.get("error") is None and served["score"] == pytest.approx(batch, rel=1e-6)
