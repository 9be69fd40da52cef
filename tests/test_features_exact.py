"""Exact feature values on a small fixture whose answers are computed by hand in the comments."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.features import build_features

from conftest import write_config, write_frames

AS_OF = "2024-01-01"


@pytest.fixture
def fixture_features(tmp_path):
    tx = pd.DataFrame([
        # customer A, order a1: Fri 2023-12-22 12:00 -> 9.5 days before as_of
        ("A", "2023-12-22 12:00:00", 10.0, "a1", "dairy", "app", "S1"),
        ("A", "2023-12-22 12:00:00", 5.0, "a1", "bakery", "app", "S1"),
        # a2: Wed 2023-11-22 18:00 -> 39.25 days
        ("A", "2023-11-22 18:00:00", 20.0, "a2", "dairy", "store", "S1"),
        # a3: Sat 2023-09-23 09:00 -> 99.625 days; a 5.00 refund on the same order
        ("A", "2023-09-23 09:00:00", 30.0, "a3", "meat", "store", "S2"),
        ("A", "2023-09-23 09:00:00", -5.0, "a3", "meat", "store", "S2"),
        # on the cutoff itself: must be ignored (strictly before as_of)
        ("A", "2024-01-01 00:00:00", 999.0, "a4", "wine", "app", "S9"),
        # a5: Sat 2023-12-30 12:00 -> 1.5 days; a refund-only order: not a purchase (no recency, order, gap,
        # order value, habit, channel or store), only the refund features see it
        ("A", "2023-12-30 12:00:00", -12.0, "a5", "meat", "app", "S3"),
        # customer B: Thu 2023-06-01 10:00 -> 213.583 days
        ("B", "2023-06-01 10:00:00", 50.0, "b1", "dairy", "store", "S2"),
    ], columns=["customer_id", "ts", "amount", "order_id", "category", "channel", "store_id"])
    customers = pd.DataFrame({"customer_id": ["A", "B", "C", "D"],
                              "signup_ts": ["2023-01-01", None, "2023-12-01", "2024-02-01"],
                              "tier": ["gold", "silver", "bronze", "gold"]})
    events = pd.DataFrame({"customer_id": ["A", "A", "A"],
                           "ts": ["2023-12-31 00:00:00", "2023-10-01 00:00:00", "2024-01-05 00:00:00"],
                           "event_type": ["app_visit", "coupon_use", "app_visit"]})
    data = write_frames(tmp_path, {"transactions": tx, "customers": customers, "events": events})
    cfg = load_config(write_config(tmp_path, data))
    df = build_features(load_customer_data(cfg), AS_OF)
    return df.set_index("customer_id")


def test_population_is_customers_known_before_as_of(fixture_features):
    # A and B bought before; C signed up before without buying; D signed up after the cutoff
    assert sorted(fixture_features.index) == ["A", "B", "C"]


def test_recency_frequency_monetary_windows(fixture_features):
    a = fixture_features.loc["A"]
    assert a["recency_days"] == pytest.approx(9.5)
    assert a["first_purchase_days"] == pytest.approx(99.625)
    assert (a["frequency_30d"], a["frequency_90d"], a["frequency_180d"], a["frequency_365d"]) == (1, 2, 3, 3)
    assert a["monetary_30d"] == pytest.approx(15.0)
    assert a["monetary_90d"] == pytest.approx(35.0)
    assert a["monetary_365d"] == pytest.approx(60.0)  # 15 + 20 + (30 - 5)
    assert a["frequency_total"] == 3 and a["monetary_total"] == pytest.approx(60.0)
    assert a["avg_order_value_365d"] == pytest.approx(20.0)
    b = fixture_features.loc["B"]
    assert b["recency_days"] == pytest.approx(213 + 14 / 24)
    assert (b["frequency_180d"], b["frequency_365d"]) == (0, 1)


def test_gaps_trend_and_habits(fixture_features):
    a = fixture_features.loc["A"]
    gaps = [39.25 - 9.5, 99.625 - 39.25]
    assert a["gap_mean_days"] == pytest.approx(sum(gaps) / 2)
    assert a["gap_std_days"] == pytest.approx(abs(gaps[1] - gaps[0]) / math.sqrt(2))
    assert a["recency_gap_ratio"] == pytest.approx(9.5 / (sum(gaps) / 2))
    # last 90 days: 35.0 over 2 orders; the 90 before: 25.0 over 1 order
    assert (a["frequency_prev_90d"], a["monetary_prev_90d"]) == (1, pytest.approx(25.0))
    assert a["spend_trend_90d"] == pytest.approx((35 - 25) / (35 + 25))
    assert a["frequency_trend_90d"] == pytest.approx(1 / 3)
    assert a["weekend_share"] == pytest.approx(1 / 3)  # the Saturday order
    assert a["evening_share"] == pytest.approx(1 / 3)  # the 18:00 order
    assert a["mean_order_hour"] == pytest.approx((12 + 18 + 9) / 3)
    assert math.isnan(fixture_features.loc["B", "gap_mean_days"])  # one order: no gap


def test_categories_refunds_channels_stores(fixture_features):
    a = fixture_features.loc["A"]
    gross = 10 + 5 + 20 + 30  # positive spend only
    assert a["distinct_categories_365d"] == 3
    assert a["category_share_dairy"] == pytest.approx(30 / gross)
    assert a["category_share_meat"] == pytest.approx(30 / gross)
    assert a["category_share_bakery"] == pytest.approx(5 / gross)
    assert a["top_category_share_365d"] == pytest.approx(30 / gross)
    assert a["refund_share_365d"] == pytest.approx((5 + 12) / gross)  # the refund-only order's refund too
    assert a["channel_share_app"] == pytest.approx(1 / 3)
    assert a["channel_share_store"] == pytest.approx(2 / 3)
    assert a["distinct_stores_365d"] == 2
    assert a["top_store_share_365d"] == pytest.approx(2 / 3)
    assert "category_share_wine" not in fixture_features.columns  # wine is only bought on the cutoff


def test_events_tenure_and_attributes(fixture_features):
    a, c = fixture_features.loc["A"], fixture_features.loc["C"]
    assert (a["events_30d"], a["events_90d"]) == (1, 1)
    assert a["event_recency_days"] == pytest.approx(1.0)
    assert (a["event_app_visit_90d"], a["event_coupon_use_90d"]) == (1, 0)
    assert a["tenure_days"] == pytest.approx(365.0)  # signed up a year before: longer than first purchase
    assert fixture_features.loc["B", "tenure_days"] == pytest.approx(213 + 14 / 24)
    assert a["attr_tier"] == "gold"
    assert math.isnan(c["recency_days"]) and c["frequency_365d"] == 0 and c["monetary_365d"] == 0
    assert c["tenure_days"] == pytest.approx(31.0)
    assert c["lifecycle_stage"] == "prospect" and c["rfm_segment"] == "prospect"


def test_category_purchase_history(tmp_path):
    """Per-category recency, order counts and order share (next-category's feature set), by hand."""
    from crmscore.features import feature_set_for
    from crmscore.features.definitions import FeatureSet, declare_category_history

    tx = pd.DataFrame([
        # x1: Mon 2023-12-11 12:00 -> 20.5 days; a wine refund alone is not a wine purchase
        ("X", "2023-12-11 12:00:00", -3.0, "x1", "wine"),
        ("X", "2023-12-11 12:00:00", 4.0, "x1", "dairy"),
        # x4: 2023-12-02 00:00 -> exactly 30 days: outside the 30-day window, inside the 90-day one
        ("X", "2023-12-02 00:00:00", 6.0, "x4", "dairy"),
        # x2: 2023-10-02 00:00 -> 91 days; two wine lines in one order are one order with wine
        ("X", "2023-10-02 00:00:00", 12.0, "x2", "wine"),
        ("X", "2023-10-02 00:00:00", 3.0, "x2", "wine"),
        # x3: 2022-11-01 -> 426 days: counts for recency (all history), not for the 365-day window
        ("X", "2022-11-01 00:00:00", 5.0, "x3", "wine"),
        # on the cutoff itself: ignored
        ("X", "2024-01-01 00:00:00", 50.0, "x5", "meat"),
    ], columns=["customer_id", "ts", "amount", "order_id", "category"])
    customers = pd.DataFrame({"customer_id": ["X", "Y"], "signup_ts": ["2022-01-01", "2023-06-01"]})
    cfg = load_config(write_config(tmp_path, write_frames(tmp_path, {"transactions": tx, "customers": customers})))
    data = load_customer_data(cfg)
    base = feature_set_for(data, AS_OF)
    history = declare_category_history(["wine", "dairy", "meat"], [30, 90, 365])
    fs = FeatureSet((*base.features, *history), base.vocabulary, base.windows, base.evening_hour)
    df = build_features(data, AS_OF, fs).set_index("customer_id")
    x = df.loc["X"]
    assert x["frequency_365d"] == 3  # x1, x4, x2: the denominator of the order shares
    assert x["category_recency_wine"] == pytest.approx(91.0)
    assert (x["category_orders_30d_wine"], x["category_orders_90d_wine"], x["category_orders_365d_wine"]) == (0, 0, 1)
    assert x["category_order_share_wine"] == pytest.approx(1 / 3)
    assert x["category_recency_dairy"] == pytest.approx(20.5)
    dairy = [x[f"category_orders_{w}d_dairy"] for w in (30, 90, 365)]
    assert dairy == [1, 2, 2]
    assert x["category_order_share_dairy"] == pytest.approx(2 / 3)
    # meat was bought only on the cutoff: never before it
    assert math.isnan(x["category_recency_meat"])
    assert (x["category_orders_365d_meat"], x["category_order_share_meat"]) == (0, 0.0)
    # a customer known only by sign-up: no purchase, no recency, no orders, no share
    y = df.loc["Y"]
    assert math.isnan(y["category_recency_wine"]) and y["category_orders_365d_wine"] == 0
    assert math.isnan(y["category_order_share_wine"])
    assert fs.get("category_recency_wine").description == "days since wine was last bought"
    # the operations page explains them in Chinese too
    from crmscore.features.translations import translated

    assert all(translated(f, "zh") for f in history)
    assert translated(fs.get("category_orders_90d_wine"), "zh") == "近90天含wine的订单数"
    assert translated(fs.get("category_order_share_dairy"), "zh") == "近365天含dairy的订单占比"
