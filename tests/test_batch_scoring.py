"""Batch scoring at array speed: the column-wise reasons agree with the reasons of each customer built on its
own, the streamed batch file is the in-memory one, and model shapes are chosen by what they cost to explain.

A real feature table (the session's synthetic data through DuckDB) and real LightGBM models, small enough
to fit in seconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.explain.reasons import build_reasons
from crmscore.features.build import build_features
from crmscore.models.bundle import TrainedModel
from crmscore.models.estimator import CustomerModel

UP, DOWN = "raises churn risk", "lowers churn risk"


@pytest.fixture(scope="module")
def table(synthetic_config):
    """Features of every customer at a cutoff, a label that depends on them, and a categorical column."""
    data = load_customer_data(load_config(synthetic_config))
    feats = build_features(data, "2024-10-01")
    rng = np.random.default_rng(3)
    label = (feats["recency_days"].fillna(999).to_numpy() + rng.normal(0, 40, len(feats)) > 90).astype(float)
    fs_names = [c for c in feats.columns if c != "customer_id" and c in {f.name for f in _fs(data).features}]
    return feats, label, fs_names, _fs(data)


def _fs(data):
    from crmscore.features.build import feature_set_for

    return feature_set_for(data, "2024-10-01")


@pytest.fixture(scope="module")
def model(table):
    feats, label, names, _ = table
    half = len(feats) // 2
    X = feats[names]
    return CustomerModel("binary", {"num_leaves": 7, "max_depth": 3}, num_boost_round=60).fit(
        X.iloc[:half], label[:half], X.iloc[half:], label[half:])


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_column_wise_reasons_are_each_customers_own(table, model, lang):
    """The batch builder (templates filled per distinct value) gives every customer exactly what the one-customer
    call (each sentence made on its own) gives: features, values, contributions, effects and texts, including
    missing values, a negative zero and repeated values."""
    feats, _, names, fs = table
    frame = feats[names].copy()
    frame.loc[frame.index[:40], "recency_days"] = np.nan  # missing: "...: unknown"
    frame.loc[frame.index[40:80], "recency_days"] = -0.0  # reads "-0 days", not "0 days"
    frame.loc[frame.index[80:200], "recency_days"] = 1.4  # one day, repeated
    expl = model.explain(frame)
    contributions = expl.contributions.copy()
    contributions[:200, names.index("recency_days")] = 9.0  # make it everyone's first reason there
    batch = build_reasons(fs, contributions, expl.base_value, expl.link, names, frame, 4, UP, DOWN, lang)
    rows = frame.to_dict("records")
    records = batch.records()
    assert len(records) == len(frame)
    texts = set()
    for r, row in enumerate(rows):
        alone = build_reasons(fs, contributions[r], expl.base_value, expl.link, names, row, 4, UP, DOWN, lang)
        assert records[r] == alone, r
        texts.add(alone[0]["text"])
    if lang == "en":
        assert "No purchase for -0 days: raises churn risk" in texts
        assert "No purchase for 1 day: raises churn risk" in texts
        assert any(t.endswith(": unknown: raises churn risk") for t in texts)
    # the Arrow column: the same reasons, each value as text
    arrow = batch.arrow().to_pylist()
    for r in (0, 45, 100, len(rows) - 1):
        assert [x["text"] for x in arrow[r]] == [x["text"] for x in records[r]]
        assert [x["value"] for x in arrow[r]] == [None if x["value"] is None else str(x["value"]) for x in records[r]]
        assert [x["probability_change"] for x in arrow[r]] == [x["probability_change"] for x in records[r]]


def test_streamed_file_is_the_in_memory_one(table, model, tmp_path):
    """stream_scores over many small chunks (written by a second thread) writes the same table as scoring the
    whole frame at once and writing it."""
    from crmscore.scoring.batch import score_frame, stream_scores, write_scores

    feats, _, names, fs = table
    bundle = TrainedModel("churn", "transactional", model, fs, {}, UP, DOWN)
    frame = feats[["customer_id", *names]]
    rows = stream_scores(bundle, frame, tmp_path / "streamed.parquet", top_k=3, version="7", chunk_rows=333)
    write_scores(score_frame(bundle, frame, top_k=3, version="7", reasons="records"), tmp_path / "whole.parquet")
    assert rows == len(frame) and len(frame) > 3 * 333
    streamed, whole = pq.read_table(tmp_path / "streamed.parquet"), pq.read_table(tmp_path / "whole.parquet")
    assert streamed.schema.remove_metadata() == whole.schema.remove_metadata()
    assert streamed.equals(whole)
    back = pd.read_parquet(tmp_path / "streamed.parquet")
    assert (back["reason_1"] == [r[0]["text"] for r in back["reasons"]]).all()


def test_shape_choice_takes_the_cheapest_within_tolerance(table):
    from crmscore.models.explain_cost import choose_shape, explain_cost, shap_work

    feats, label, names, _ = table
    half = len(feats) // 2
    X, Xv, y, yv = feats[names].iloc[:half], feats[names].iloc[half:], label[:half], label[half:]
    shapes = [(15, 5), (4, 2)]
    loose, trials = choose_shape("binary", shapes, 1.0, X, y, Xv, yv, {}, 60)
    cheapest = min(trials, key=lambda t: t.shap_work)
    assert trials[0].shap_work > trials[1].shap_work  # deeper trees: more TreeSHAP work per row
    assert loose == {"num_leaves": cheapest.num_leaves, "max_depth": cheapest.max_depth}
    strict, _ = choose_shape("binary", shapes, 0.0, X, y, Xv, yv, {}, 60)
    best = max(trials, key=lambda t: t.valid_metric)
    assert strict == {"num_leaves": best.num_leaves, "max_depth": best.max_depth}
    m = CustomerModel("binary", {"num_leaves": 4, "max_depth": 2}, 60).fit(X, y, Xv, yv)
    cost = explain_cost(m, Xv)
    assert cost["engine_us"] > 0 and cost["predict_us"] > 0 and cost["shap_work"] == shap_work(m)
