"""Lookalike audiences: seeds, excluded features, the PU model, scoring and expansion, the CLI."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from crmscore.models.audience_evaluation import needed_seed_size, recall_at
from crmscore.models.seeds import (
    CampaignResponses,
    Seed,
    SeedError,
    campaign_seed,
    excluded_features,
    query_columns,
    query_seed,
    read_seed_file,
)
from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.models import lookalike as la
from crmscore.models.pipeline import GuardrailError
from crmscore.scoring.batch import score_audience

from conftest import tracking_store, write_config


@pytest.fixture
def mlflow_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("CRMSCORE_TRACKING_URI", tracking_store(tmp_path))
    monkeypatch.setenv("CRMSCORE_ARTIFACT_LOCATION", str(tmp_path / "mlruns"))
    return tmp_path


@pytest.fixture(scope="module")
def population(synthetic_config):
    cfg = load_config(synthetic_config)
    data = load_customer_data(cfg)
    return cfg, la.load_population(cfg, la.LookalikeSettings(), data=data)


@pytest.fixture(scope="module")
def young_family(synthetic_dir, population):
    """The PU model trained on a seed of the latent segment's customers (from truth.parquet only)."""
    cfg, pop = population
    truth = pd.read_parquet(synthetic_dir / "truth.parquet")
    seed = Seed("file", "truth young_family", truth.loc[truth["latent_segment"] == "young_family",
                                                        "customer_id"].astype(str).tolist())
    s = la.LookalikeSettings()
    member = la.check_seed(seed, pop, s)
    return la.fit_and_evaluate("young-family", pop, seed, member, s, {})


# -- seeds -----------------------------------------------------------------------------------------
def test_seed_files_in_every_format(tmp_path):
    (tmp_path / "plain.txt").write_text("customer_id\nC1\n C2 \n\nC1\n\"C3\"\n")
    assert read_seed_file(tmp_path / "plain.txt").ids == ["C1", "C2", "C3"]  # header, blanks, dups, quotes
    (tmp_path / "noheader.txt").write_text("1029\n165\n")
    assert read_seed_file(tmp_path / "noheader.txt").ids == ["1029", "165"]
    pd.DataFrame({"email": ["a", "b"], "customer_id": ["C9", "C8"]}).to_csv(tmp_path / "with_col.csv", index=False)
    assert read_seed_file(tmp_path / "with_col.csv").ids == ["C9", "C8"]
    pd.DataFrame({"customer_id": [5, 6]}).to_parquet(tmp_path / "ids.parquet")
    assert read_seed_file(tmp_path / "ids.parquet").ids == ["5", "6"]
    pd.DataFrame({"customerID": ["K1"], "x": [1]}).to_csv(tmp_path / "telco.csv", index=False)
    assert read_seed_file(tmp_path / "telco.csv", ("customer_id", "customerID")).ids == ["K1"]
    with pytest.raises(SeedError, match=r"columns \['customerID', 'x'\] but none named 'customer_id'"):
        read_seed_file(tmp_path / "telco.csv")
    with pytest.raises(SeedError, match="does not exist"):
        read_seed_file(tmp_path / "nope.txt")


def test_query_seed_selects_and_names_unknown_columns():
    frame = pd.DataFrame({"customer_id": ["a", "b", "c"], "monetary_365d": [100.0, 600.0, 700.0],
                          "category_share_baby": [0.5, 0.1, 0.3], "rfm_segment": ["loyal", "champions", "loyal"]})
    seed = query_seed(frame, "monetary_365d >= 500 and category_share_baby > 0.2")
    assert seed.ids == ["c"] and seed.defining_features == ["monetary_365d", "category_share_baby"]
    assert query_seed(frame, "rfm_segment in ('loyal') or abs(monetary_365d - 600) < 1").ids == ["a", "b", "c"]
    with pytest.raises(SeedError, match=r"unknown columns 'monetry_365d' \(did you mean 'monetary_365d'\?\), 'foo'"):
        query_seed(frame, "monetry_365d >= 500 and foo > 1")
    with pytest.raises(SeedError, match="Could not convert string 'abc'"):
        query_seed(frame, "monetary_365d >= 'abc'")


@pytest.mark.parametrize("query, message", [
    ("x > 1); DROP TABLE features; SELECT (1", "not a valid predicate"),
    ("x IN (SELECT 1)", "subquery expressions are not allowed"),
    ("EXISTS (SELECT * FROM read_csv('/etc/passwd'))", "subquery expressions are not allowed"),
    ("getenv('HOME') = 'x'", "function 'getenv' is not allowed"),
    ("count(*) > 1", "is not allowed"),
    ("   ", "the seed query is empty"),
])
def test_query_seed_refuses_anything_but_a_predicate(query, message):
    with pytest.raises(SeedError, match=message):
        query_columns(query)


def test_excluded_features_for_a_query_seed(population):
    cfg, pop = population
    seed = query_seed(pop.frame, "monetary_365d >= 100 and category_share_kids > 0.1")
    out = excluded_features(pop.feature_set, seed.defining_features, ["channel_share_*"])
    assert out["monetary_365d"] == out["category_share_kids"] == "defines the seed"
    assert out["avg_order_value_365d"] == "computed from monetary_365d"  # derived from a defining feature
    assert {"channel_share_store", "channel_share_app"} <= set(out)
    assert "monetary_180d" not in out and "category_share_meat" not in out
    champions = query_seed(pop.frame, "rfm_segment = 'champions'")
    via_segment = excluded_features(pop.feature_set, champions.defining_features)
    assert {"recency_days", "frequency_365d", "monetary_365d", "recency_gap_ratio"} <= set(via_segment)


def test_seed_below_fifty_is_refused_and_ids_outside_the_population_are_counted(population, caplog):
    cfg, pop = population
    ids = pop.frame["customer_id"].astype(str).tolist()
    with pytest.raises(GuardrailError, match=r"the seed has 49 members in the population at \d{4}-\d\d-\d\d "
                                             r"\(52 given\); a lookalike model needs at least 50"):
        la.check_seed(Seed("file", "f", ids[:49] + ["X1", "X2", "X3"]), pop, la.LookalikeSettings())
    assert "3 of 52 seed ids are not in the population" in caplog.text
    with pytest.raises(GuardrailError, match="too few others"):
        la.check_seed(Seed("file", "f", ids[: int(len(ids) * 0.8)]), pop, la.LookalikeSettings())
    assert la.check_seed(Seed("file", "f", ids[:50]), pop, la.LookalikeSettings()).sum() == 50


def test_campaign_seed_reads_responses_before_the_cutoff(tmp_path):
    pd.DataFrame({"hh": ["1", "2", "2", "3", "4"], "camp": [26, 26, 26, 8, 26],
                  "day": pd.to_datetime(["2017-01-03", "2017-02-01", "2017-05-01", "2017-01-05", "2017-09-01"])}
                 ).to_parquet(tmp_path / "redemptions.parquet")
    source = CampaignResponses(path="redemptions.parquet",
                               columns={"customer_id": "hh", "campaign": "camp", "ts": "day"})
    seed = campaign_seed(source, "26", tmp_path, pd.Timestamp("2017-07-01"))
    assert seed.kind == "campaign" and seed.ids == ["1", "2"]  # household 4 responded after the cutoff
    with pytest.raises(SeedError, match="campaign '99' has no responses .* campaigns there: 26, 8"):
        campaign_seed(source, "99", tmp_path, None)
    with pytest.raises(SeedError, match="add tasks.lookalike.campaign_responses"):
        campaign_seed(None, "26", tmp_path, None)


# -- the model -------------------------------------------------------------------------------------
def test_averaged_booster_is_the_mean_of_the_bags_scores_and_explanations():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400),
                      "c": pd.Categorical(rng.choice(["x", "y", "z"], 400))})
    y = ((X["a"] + (X["c"] == "y") + rng.normal(scale=0.5, size=400)) > 0.5).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbosity": -1, "num_threads": 1, "bagging_fraction": 0.7,
              "bagging_freq": 1}
    bags = [lgb.train({**params, "seed": k}, lgb.Dataset(X, y), 10 + 5 * k) for k in range(3)]
    merged = la.average_boosters(bags)
    assert merged.num_trees() == sum(b.num_trees() for b in bags)
    np.testing.assert_allclose(merged.predict(X, raw_score=True),
                               np.mean([b.predict(X, raw_score=True) for b in bags], 0), atol=1e-9)
    np.testing.assert_allclose(merged.predict(X, pred_contrib=True),
                               np.mean([b.predict(X, pred_contrib=True) for b in bags], 0), atol=1e-9)


def test_pu_model_recovers_the_latent_segment(young_family):
    m, centroid = young_family.metrics, young_family.baselines["centroid"]
    assert m["seed_hidden"] >= 20
    assert m["recall_top10"] >= 0.6, m
    assert m["recall_top10"] > centroid["recall_top10"] > young_family.baselines["random"]["recall_top10"]
    assert m["lift_top10"] == pytest.approx(m["recall_top10"] / 0.1, rel=0.05)
    curve = young_family.curves["seed_size_curve"]
    assert curve["seed_size"].iloc[-1] == m["seed_train"] and curve["total_seed_size"].iloc[-1] == m["seed_size"]
    # similarity is calibrated "seed rather than average": the hidden members score far above the rest
    ev = young_family.dataset.test.assign(score_model=young_family.curves["scores"]["model"])  # the candidates
    assert ev.loc[ev["label"] == 1, "score_model"].median() > 0.5 > ev.loc[ev["label"] == 0, "score_model"].median()


def test_recall_metrics_and_needed_seed_size():
    hidden = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 1])
    out = recall_at(hidden, np.arange(10)[::-1], (0.1, 0.2, 0.5))
    assert out["recall_top10"] == pytest.approx(1 / 3) and out["recall_top50"] == pytest.approx(2 / 3)
    assert out["lift_top10"] == pytest.approx(10 / 3)
    curve = pd.DataFrame({"seed_size": [25, 50, 100, 150], "model": [0.3, 0.5, 0.4, 0.6],
                          "centroid": [0.4, 0.4, 0.45, 0.5]})
    assert needed_seed_size(curve) == 150  # ahead at 50, behind at 100: only from 150 on
    assert needed_seed_size(curve.assign(model=0.1)) is None


# -- scoring and expansion ---------------------------------------------------------------------------
def test_score_and_expand_outputs(young_family, population):
    cfg, pop = population
    bundle = young_family.bundle
    scores = score_audience(bundle, pop.frame, top_k=3, version="7")
    seed = set(bundle.info["seed_ids"])  # every given id, also those outside this population
    assert len(seed) > young_family.metrics["seed_size"]
    assert len(scores) == (~pop.frame["customer_id"].isin(seed)).sum() and not scores["customer_id"].isin(seed).any()
    for col in ("customer_id", "audience", "similarity", "percentile", "band", "reasons", "reason_1", "reason_3",
                "rfm_segment", "lifecycle_stage", "model_version"):
        assert col in scores.columns, col
    assert scores["similarity"].between(0, 1).all() and scores["percentile"].between(0, 100).all()
    assert scores["similarity"].is_monotonic_decreasing and scores["percentile"].is_monotonic_decreasing
    expected = np.where(scores["similarity"] >= 0.85, "high", np.where(scores["similarity"] >= 0.7, "medium",
                        np.where(scores["similarity"] >= 0.55, "low", "none")))
    assert (scores["band"].to_numpy() == expected).all() and {"high", "none"} <= set(scores["band"])
    top = scores.iloc[0]
    assert top["reason_1"].endswith(("makes them more like the seed", "makes them less like the seed"))
    assert [r["text"] for r in top["reasons"]][0] == top["reason_1"]
    # the plain-language sentence comes from the feature's declaration
    assert any(r["text"].startswith(("Share of", "Spent", "Average spend", "Customer attribute", "Days since",
                                     "Interactions", "App visit", "Usual"))
               for rs in scores["reasons"].head(20) for r in rs)
    part = la.expand(scores, top=la.parse_top("5%"))
    assert len(part) == round(len(scores) * 0.05) and list(part.columns[:3]) == ["customer_id", "similarity", "rank"]
    assert part["rank"].tolist() == list(range(1, len(part) + 1))
    assert part["similarity"].min() >= scores["similarity"].iloc[len(part)]
    assert len(la.expand(scores, size=17)) == 17
    with pytest.raises(SeedError, match="exactly one"):
        la.expand(scores, top=0.1, size=3)
    with pytest.raises(SeedError, match="give a share such as 5%"):
        la.parse_top("150%")
    one = la.describe_customer(bundle, top["customer_id"], top["similarity"])
    assert one["band"] == top["band"] and one["percentile"] == pytest.approx(top["percentile"]) and not one["in_seed"]


def test_feature_table_seed_with_categories(tmp_path):
    rng = np.random.default_rng(5)
    n = 1200
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n)
    tenure = rng.integers(0, 72, n)
    target = (contract == "Month-to-month") & (tenure < 24) & (rng.random(n) < 0.7)
    df = pd.DataFrame({"cid": [f"K{i}" for i in range(n)], "tenure": tenure, "Contract": contract,
                       "Monthly": np.round(rng.uniform(20, 110, n), 2)})
    df.to_parquet(tmp_path / "table.parquet")
    cfg = load_config(write_config(tmp_path, {"features": {"path": str(tmp_path / "table.parquet"), "id": "cid"}}))
    s = la.LookalikeSettings(bags=4, curve_repeats=1)
    pop = la.load_population(cfg, s)
    (tmp_path / "seed.csv").write_text("cid\n" + "\n".join(df.loc[target, "cid"]))
    seed = la.resolve_seed(cfg, pop, s, seed_file=tmp_path / "seed.csv")
    result = la.fit_and_evaluate("table", pop, seed, la.check_seed(seed, pop, s), s, {})
    assert result.bundle.mode == "feature_table" and "Contract" in result.bundle.model.categories_
    assert result.metrics["recall_top20"] > 0.6 and result.metrics["roc_auc"] > 0.8


# -- the command line --------------------------------------------------------------------------------
def _cli(*args):
    from typer.testing import CliRunner

    from crmscore.cli import _register, app

    _register()
    return CliRunner().invoke(app, list(args))


def test_cli_query_seed_and_file_seed_end_to_end(synthetic_config, synthetic_dir, mlflow_tmp):
    from mlflow.tracking import MlflowClient

    out = mlflow_tmp
    res = _cli("train", "lookalike", "-c", str(synthetic_config), "--name", "kids-buyers",
               "--seed-query", "category_share_kids > 0.2", "--exclude", "channel_share_*", "--json")
    assert res.exit_code == 0, res.output[-3000:]
    import json

    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["model"] == "lookalike-kids-buyers" and summary["registered_version"] == "1"
    assert set(summary["excluded_features"]) >= {"category_share_kids", "channel_share_app"}
    assert {"centroid", "random"} == set(summary["baselines"]) and "seed_size_needed" in summary["metrics"]
    run = MlflowClient().get_run(summary["run_id"])
    assert {"recall_top1", "recall_top5", "recall_top10", "recall_top20", "lift_top10",
            "recall_top10_baseline_centroid", "recall_top10_baseline_random"} <= set(run.data.metrics)
    assert _cli("promote", "lookalike-kids-buyers").exit_code == 0
    assert _cli("score", "lookalike", "-a", "kids-buyers", "-c", str(synthetic_config), "-o",
                str(out / "kids.parquet"), "--top-k", "2").exit_code == 0
    scores = pd.read_parquet(out / "kids.parquet")
    assert {"customer_id", "similarity", "percentile", "band", "reason_1", "reason_2"} <= set(scores.columns)
    assert len(scores) == summary["metrics"]["population"] - summary["seed"]["size"]
    assert _cli("lookalike", "expand", "-a", "kids-buyers", "-c", str(synthetic_config), "--top", "10%",
                "-o", str(out / "kids.csv")).exit_code == 0
    export = pd.read_csv(out / "kids.csv", dtype={"customer_id": str})
    assert len(export) == round(len(scores) * 0.1)
    assert export["customer_id"].tolist() == scores["customer_id"].head(len(export)).tolist()

    truth = pd.read_parquet(synthetic_dir / "truth.parquet")
    families = truth.loc[truth["latent_segment"] == "young_family", "customer_id"].tolist()
    (out / "families.txt").write_text("\n".join(f for i, f in enumerate(families) if i % 4))  # a quarter left to find
    res = _cli("train", "lookalike", "-c", str(synthetic_config), "--name", "families", "--seed-file",
               str(out / "families.txt"))
    assert res.exit_code == 0, res.output[-3000:]
    assert "lookalike-families" in res.stdout and "hidden seed members in the top" in res.stdout
    res = _cli("lookalike", "expand", "-a", "families", "-c", str(synthetic_config), "--size", "25",
               "--alias", "challenger", "-o", str(out / "families.parquet"))
    assert res.exit_code == 0, res.output[-3000:]
    export = pd.read_parquet(out / "families.parquet")
    assert len(export) == 25 and (export["band"] != "none").all()
    found = export["customer_id"].isin(families).mean()
    assert found >= 0.3, found  # about 3% of the customers outside the seed are young families
    listing = _cli("lookalike", "list")
    assert "kids-buyers" in listing.stdout and "families" in listing.stdout
    res = _cli("train", "lookalike", "-c", str(synthetic_config), "--name", "tiny", "--seed-query",
               "monetary_365d > 1000")
    assert isinstance(res.exception, GuardrailError) and "a lookalike model needs at least 50" in str(res.exception)
