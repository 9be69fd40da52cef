"""Cross-sell: the list leaves out every category bought in the lookback (synthetic data anywhere, Ta-Feng when the
team's data is here), the next-category baselines, and the timing of each listed category."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.models.tasks import get_task

from conftest import SHARED_DATA

LOOKBACK = 60  # days


def _bought_in_lookback(data, as_of: pd.Timestamp, days: int) -> set[tuple[str, str]]:
    """(customer, category) pairs with a positive line in the `days` before as_of, read from the lines table
    directly (not through the features the mask is built from)."""
    lo = as_of - pd.Timedelta(days=days)
    rows = data.con.execute(
        "SELECT DISTINCT CAST(customer_id AS VARCHAR), CAST(category AS VARCHAR) FROM lines WHERE amount > 0 "
        "AND ts >= ? AND ts < ?", [lo.to_pydatetime(), as_of.to_pydatetime()]).fetchall()
    return {(c, k) for c, k in rows}


@pytest.fixture(scope="module")
def crosssell(synthetic_config):
    from crmscore.models.pipeline import fit_and_evaluate, transactional_dataset

    data = load_customer_data(load_config(synthetic_config))
    task = get_task("next-category")
    s = task.settings(snapshots=3, cross_sell_lookback_days=LOOKBACK, category_timing=True)
    ds = transactional_dataset(task, data, s)
    return data, ds, *fit_and_evaluate(task, ds, ds.settings)


def test_cross_sell_list_leaves_out_what_was_bought_in_the_lookback(crosssell):
    data, ds, bundle, metrics, baselines, _ = crosssell
    test = ds.test
    as_of = pd.Timestamp(test["as_of"].iloc[0])
    bought = _bought_in_lookback(data, as_of, LOOKBACK)
    listed = bundle.score(test, explain=False, max_targets=0)
    pairs = {(str(c), item["category"]) for c, items in zip(listed["customer_id"], listed["next_categories"])
             for item in items}
    assert pairs and not pairs & bought
    # every target not bought in the lookback is listed: the exclusion takes out nothing else
    targets = set(bundle.targets)
    for c, items in zip(listed["customer_id"].head(200), listed["next_categories"].head(200)):
        assert {i["category"] for i in items} == {t for t in targets if (str(c), t) not in bought}
    # some customers did buy targets in the lookback (else the check above proves nothing), and keep_regular
    # puts them back
    assert any((str(c), t) in bought for c in listed["customer_id"] for t in targets)
    untimed = dataclasses.replace(bundle, companions={})  # the lists' lengths only: no timing needed
    kept = untimed.score(test, explain=False, max_targets=0, keep_regular=True)["next_categories"]
    assert (kept.map(len) == len(bundle.targets)).all()
    # the cross-sell metrics are measured on that view: fewer (customer, category) positives than next basket
    assert metrics["xsell_rows"] < metrics["rows"]
    assert {"popularity", "segment_popularity", "copurchase", "history", "most_bought", "most_recent"} == set(baselines)


def test_each_listed_category_has_its_timing(crosssell):
    _, ds, bundle, metrics, _, _ = crosssell
    horizon = ds.settings.horizon_days
    listed = bundle.score(ds.test.head(300), explain=False, max_targets=3)["next_categories"]
    items = [i for items in listed for i in items]
    assert items
    for i in items:
        assert 0 <= i["days_low"] <= i["days"] <= i["days_high"] <= horizon
    # measured on the held-out buyers of their top cross-sell category, next to the usual-gap baseline
    assert metrics["days_to_category_test_rows"] > 50
    assert metrics["days_to_category_mae"] < metrics["days_to_category_mae_baseline"]
    assert 0.5 < metrics["days_to_category_interval_coverage"] <= 1.0


def test_repeat_blend_reorders_the_customers_own_categories_and_leaves_the_cross_sell_list(crosssell):
    """repeat_blend adds the customer's repeat rate per category (order share) to the ranking, the cross-sell list
    keeps the order of the categories not bought in the share's window, and
    every run logs the blends it would give so that the weight is chosen on validation."""
    from crmscore.features.definitions import slug

    _, ds, trained, metrics, _, _ = crosssell
    test = ds.test.head(300)
    bundle = dataclasses.replace(trained, companions={})  # the lists' order only: no timing needed
    targets = bundle.targets
    share = np.nan_to_num(test[[f"category_order_share_{slug(t)}" for t in targets]].to_numpy(float))
    assert (share > 0).any(1).mean() > 0.2  # customers with repeat categories, else nothing is checked
    plain = bundle.predict(test)
    unbought = [{t for t, v in zip(targets, row) if v == 0} for row in share]
    before = [[i["category"] for i in items if i["category"] in keep] for items, keep in
              zip(bundle.score(test, explain=False, max_targets=0)["next_categories"], unbought)]
    for w in (0.05, 1.0):
        blended = dataclasses.replace(bundle, settings={**bundle.settings, "repeat_blend": w})
        np.testing.assert_allclose(blended.predict(test), (1 - w) * plain + w * share)
    # a category not bought in the share's window gets nothing from the blend: the cross-sell list keeps their order
    # (with cross_sell_lookback_days at least that window, as in Ta-Feng's config, that is the whole list)
    small = dataclasses.replace(bundle, settings={**bundle.settings, "repeat_blend": 0.05})
    after = [[i["category"] for i in items if i["category"] in keep] for items, keep in
             zip(small.score(test, explain=False, max_targets=0)["next_categories"], unbought)]
    assert after == before and sum(map(len, after)) > len(test)
    assert {f"repeat_{w:g}_hit_rate_at_3" for w in (0, 0.05, 0.1)} <= set(metrics)
    assert metrics["repeat_0_hit_rate_at_3"] == pytest.approx(metrics["hit_rate_at_3"])  # the run's own blend: 0


def test_personal_baselines_rank_the_customers_own_categories():
    """most_bought ranks by the customer's orders with a category, most_recent by how recently it was bought."""
    from crmscore.models.baselines import MOST_BOUGHT, MOST_RECENT
    from crmscore.models.bundle import label_column
    from crmscore.models.tasks import BaselineInput

    targets = ["milk", "bread", "tea"]
    test = pd.DataFrame({"frequency_90d": [5, 5],
                         "category_orders_90d_milk": [4, 0], "category_orders_90d_bread": [1, 2],
                         "category_orders_90d_tea": [0, 2],
                         "category_recency_milk": [30.0, np.nan], "category_recency_bread": [2.0, 9.0],
                         "category_recency_tea": [np.nan, 1.0]})
    train = pd.DataFrame({label_column(t): [1, 0, 0, 0] if t == "tea" else [0, 0, 0, 0] for t in targets})
    inp = BaselineInput(train, test, get_task("next-category").settings(categories=targets))
    most = MOST_BOUGHT.score(inp)
    assert [targets[j] for j in np.argsort(-most[0])] == ["milk", "bread", "tea"]
    assert [targets[j] for j in np.argsort(-most[1])] == ["tea", "bread", "milk"]  # a tie: the more recent first
    recent = MOST_RECENT.score(inp)
    assert [targets[j] for j in np.argsort(-recent[0])] == ["bread", "milk", "tea"]
    assert [targets[j] for j in np.argsort(-recent[1])] == ["tea", "bread", "milk"]


TA_FENG = SHARED_DATA / "ta_feng" / "ta_feng.parquet"


@pytest.mark.skipif(not TA_FENG.exists(), reason=f"Ta-Feng is not here ({TA_FENG} is absent: the team's real "
                                                  f"datasets live in ../shared/data; a machine outside the team "
                                                  f"has none)")
def test_ta_feng_cross_sell_list_leaves_out_the_lookbacks_categories(tmp_path, monkeypatch):
    from conftest import REPO
    from crmscore.models.pipeline import fit_and_evaluate, transactional_dataset
    from crmscore.scoring.batch import transactional_population

    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "training" / "configs" / "ta_feng.yaml")
    cfg.validation.quarantine_dir = str(tmp_path / "quarantine")
    data = load_customer_data(cfg)
    task = get_task("next-category")
    # the shipped settings, made small: five categories and two training snapshots
    s = task.settings(cfg.tasks.get("next-category"), top_categories=5, snapshots=2)
    ds = transactional_dataset(task, data, s, as_of="2001-02-01")
    bundle = fit_and_evaluate(task, ds, ds.settings)[0]
    as_of = pd.Timestamp("2001-02-01")
    frame = transactional_population(bundle, data, as_of)
    listed = bundle.score(frame, explain=False, max_targets=0)
    lookback = int(ds.settings.cross_sell_lookback_days)
    bought = _bought_in_lookback(data, as_of, lookback)
    pairs = {(str(c), i["category"]) for c, items in zip(listed["customer_id"], listed["next_categories"])
             for i in items}
    assert pairs and not pairs & bought
    assert sum((str(c), t) in bought for c in listed["customer_id"] for t in bundle.targets) > 1000
    first = next(items for items in listed["next_categories"] if items)[0]
    assert 0 <= first["days_low"] <= first["days"] <= first["days_high"] <= ds.settings.horizon_days
