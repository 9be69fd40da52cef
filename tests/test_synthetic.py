"""Tests for crmscore.synthetic: schema, determinism and the documented drivers."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmscore import synthetic as syn
from crmscore.synthetic import CATEGORIES, CROSS_SELL_PAIRS, SyntheticData, generate, write

N = 2000
START = pd.Timestamp("2023-01-01")
END = pd.Timestamp("2025-01-01")


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate(N, seed=0)


@pytest.fixture(scope="module")
def tx(data: SyntheticData) -> pd.DataFrame:
    """Transactions with category and latent segment attached."""
    out = data.transactions.merge(data.products[["product_id", "category"]], on="product_id")
    seg = data.truth.set_index("customer_id")["latent_segment"]
    out["segment"] = seg.reindex(out["customer_id"]).to_numpy()
    return out


@pytest.fixture(scope="module")
def purchases(tx: pd.DataFrame) -> pd.DataFrame:
    return tx[tx["amount"] > 0]


@pytest.fixture(scope="module")
def orders(purchases: pd.DataFrame) -> pd.DataFrame:
    return purchases.drop_duplicates("order_id")


# --------------------------------------------------------------- API basics
def test_fast_for_small_n() -> None:
    t0 = time.perf_counter()
    generate(N, seed=5)
    assert time.perf_counter() - t0 < 5.0


def test_deterministic_for_seed() -> None:
    a = generate(300, seed=7)
    b = generate(300, seed=7)
    for name in ("transactions", "products", "customers", "events", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))


def test_different_seeds_differ() -> None:
    a = generate(300, seed=1)
    b = generate(300, seed=2)
    assert not a.transactions.equals(b.transactions)
    assert not a.truth.equals(b.truth)
    # The catalogue is documented as seed-independent.
    pd.testing.assert_frame_equal(a.products, b.products)


def test_progress_stages() -> None:
    stages: list[str] = []
    generate(50, seed=0, progress=stages.append)
    assert stages == ["customers", "orders", "lines", "events"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"customers": 0}, "customers"), ({"start": "2024-01-01", "end": "2024-01-01"}, "end")],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate(**kwargs)  # type: ignore[arg-type]


def test_constants() -> None:
    assert 12 <= len(CATEGORIES) <= 20
    assert len(set(CATEGORIES)) == len(CATEGORIES)
    assert all(c == c.lower() and " " not in c for c in CATEGORIES)
    for a, b, delay in CROSS_SELL_PAIRS:
        assert a in CATEGORIES and b in CATEGORIES and a != b
        assert isinstance(delay, int) and delay > 0


# ------------------------------------------------------------------- schema
def _is_str(s: pd.Series) -> bool:
    return s.dtype == "str"


def test_schema(data: SyntheticData) -> None:
    t = data.transactions
    assert list(t.columns) == [
        "customer_id", "ts", "amount", "order_id", "product_id", "quantity", "channel", "store_id",
    ]
    for c in ("customer_id", "order_id", "product_id", "channel", "store_id"):
        assert _is_str(t[c]), c
    assert t["ts"].dtype == "datetime64[us]"
    assert t["amount"].dtype == np.float64
    assert t["quantity"].dtype == np.int64

    p = data.products
    assert list(p.columns) == ["product_id", "category", "product_name"]
    assert all(_is_str(p[c]) for c in p.columns)

    c = data.customers
    assert list(c.columns) == ["customer_id", "signup_ts", "region", "age_band", "email_opt_in"]
    assert _is_str(c["customer_id"]) and _is_str(c["region"]) and _is_str(c["age_band"])
    assert c["signup_ts"].dtype == "datetime64[us]"
    assert c["email_opt_in"].dtype == bool
    assert "latent_segment" not in c.columns

    e = data.events
    assert list(e.columns) == ["customer_id", "ts", "event_type"]
    assert _is_str(e["customer_id"]) and _is_str(e["event_type"])
    assert e["ts"].dtype == "datetime64[us]"

    tr = data.truth
    assert list(tr.columns) == [
        "customer_id", "latent_segment", "churn_date", "base_rate_per_30d",
        "top_affinity_category", *[f"affinity_{k}" for k in CATEGORIES],
    ]
    assert tr["churn_date"].dtype == "datetime64[us]"
    assert tr["base_rate_per_30d"].dtype == np.float64
    assert _is_str(tr["latent_segment"]) and _is_str(tr["top_affinity_category"])


def test_ids_and_keys(data: SyntheticData) -> None:
    c, t, p = data.customers, data.transactions, data.products
    assert len(c) == N and c["customer_id"].is_unique
    assert c["customer_id"].str.fullmatch(r"C\d{4}").all()  # width of N=2000
    assert c["customer_id"].iloc[0] == "C0001" and c["customer_id"].iloc[-1] == "C2000"
    assert (data.truth["customer_id"] == c["customer_id"]).all()
    assert p["product_id"].is_unique and p["product_id"].str.fullmatch(r"P\d{5}").all()
    assert set(p["category"]) == set(CATEGORIES)
    per_cat = p.groupby("category").size()
    assert per_cat.between(20, 40).all()
    assert p["product_name"].str.len().gt(0).all() and p["product_name"].is_unique
    assert set(t["customer_id"]) <= set(c["customer_id"])
    assert set(data.events["customer_id"]) <= set(c["customer_id"])
    assert set(t["product_id"]) <= set(p["product_id"])
    # An order belongs to one customer at one instant and one channel/store.
    per_order = t.groupby("order_id").agg(
        c=("customer_id", "nunique"), ts=("ts", "nunique"), ch=("channel", "nunique"),
        st=("store_id", "nunique"),
    )
    assert (per_order == 1).all().all()
    assert t["order_id"].str.fullmatch(r"O\d+").all()


def test_values(data: SyntheticData) -> None:
    t = data.transactions
    assert set(t["channel"]) == {"store", "online", "app"}
    assert ((t["store_id"] == "online") == (t["channel"] != "store")).all()
    stores = set(t.loc[t["channel"] == "store", "store_id"])
    assert stores <= {f"S{i:02d}" for i in range(1, 51)} and len(stores) >= 40
    assert t["quantity"].between(1, 3).all()
    assert (t["amount"] != 0).all()
    assert np.allclose(t["amount"], t["amount"].round(2), atol=1e-9, rtol=0)
    assert set(data.events["event_type"]) == {"app_visit", "email_click", "coupon_use"}
    assert set(data.customers["region"]).issubset(set(syn.REGIONS))
    assert data.customers["region"].nunique() == 5
    assert set(data.customers["age_band"]) == set(syn.AGE_BANDS)
    assert set(data.truth["latent_segment"]) == {"young_family", "other"}
    aff = data.truth[[f"affinity_{k}" for k in CATEGORIES]].to_numpy()
    assert np.allclose(aff.sum(axis=1), 1.0)
    assert (aff >= 0).all()
    top = np.array(CATEGORIES)[aff.argmax(axis=1)]
    assert (data.truth["top_affinity_category"].to_numpy() == top).all()
    assert (data.truth["base_rate_per_30d"] > 0).all()


def test_sorted_by_customer_then_time(data: SyntheticData) -> None:
    for df in (data.transactions, data.events):
        key = df[["customer_id", "ts"]]
        assert key.equals(key.sort_values(["customer_id", "ts"], kind="stable"))


def test_volume(data: SyntheticData) -> None:
    lines_per_customer = len(data.transactions) / N
    lines_per_order = len(data.transactions) / data.transactions["order_id"].nunique()
    assert 8.0 < lines_per_customer < 12.5
    assert 1.7 < lines_per_order < 2.3
    # ~1 young-family customer in 8.
    share = (data.truth["latent_segment"] == "young_family").mean()
    assert 0.09 < share < 0.15


# ------------------------------------------------------------- time window
def test_all_timestamps_in_window(data: SyntheticData) -> None:
    for ts in (data.transactions["ts"], data.events["ts"]):
        assert ts.min() >= START and ts.max() < END
    # Signups are spread over [start - 1 year, end - 30 days).
    s = data.customers["signup_ts"]
    assert s.min() >= START - pd.Timedelta(days=365) and s.max() < END - pd.Timedelta(days=30)
    assert (s < START).mean() > 0.2


def test_no_activity_before_signup(data: SyntheticData) -> None:
    signup = data.customers.set_index("customer_id")["signup_ts"]
    for df in (data.transactions, data.events):
        assert (df["ts"] >= df["customer_id"].map(signup)).all()


def test_custom_window() -> None:
    d = generate(200, seed=4, start="2024-03-01", end=date(2024, 6, 1))
    lo, hi = pd.Timestamp("2024-03-01"), pd.Timestamp("2024-06-01")
    for ts in (d.transactions["ts"], d.events["ts"]):
        assert len(ts) > 0 and ts.min() >= lo and ts.max() < hi
    cd = d.truth["churn_date"].dropna()
    assert ((cd >= lo) & (cd < hi)).all()


# --------------------------------------------------------------------- churn
def test_nothing_at_or_after_churn(data: SyntheticData) -> None:
    churn = data.truth.set_index("customer_id")["churn_date"]
    for df in (data.transactions, data.events):
        cd = df["customer_id"].map(churn)
        assert not (cd.notna() & (df["ts"] >= cd)).any()
    cd = data.truth["churn_date"].dropna()
    assert ((cd >= START) & (cd < END)).all()
    never = data.truth["churn_date"].isna().mean()
    assert 0.25 < never < 0.55


def test_gaps_lengthen_before_churn(orders: pd.DataFrame, data: SyntheticData) -> None:
    churn = data.truth.set_index("customer_id")["churn_date"].dropna()
    o = orders.loc[orders["customer_id"].isin(churn.index), ["customer_id", "ts"]]
    o = o.sort_values(["customer_id", "ts"])
    o["gap"] = o.groupby("customer_id")["ts"].diff().dt.total_seconds() / 86400
    o["late"] = o["ts"] >= o["customer_id"].map(churn) - pd.Timedelta(days=syn.DECLINE_DAYS)
    o = o.dropna(subset=["gap"])
    n_gaps = o.groupby(["customer_id", "late"]).size().unstack(fill_value=0)
    enough = n_gaps[(n_gaps[False] >= 3) & (n_gaps[True] >= 2)].index
    mean_gap = o[o["customer_id"].isin(enough)].groupby(["customer_id", "late"])["gap"].mean()
    mean_gap = mean_gap.unstack()
    assert len(mean_gap) >= 50
    ratio = mean_gap[True] / mean_gap[False]
    assert ratio.median() > 1.1


def test_churners_order_less_in_decline_window(orders: pd.DataFrame, data: SyntheticData) -> None:
    # Order counts per day in the last 120 days vs the 120 days before that,
    # for churners active over the whole 240 days (intensity 60% vs 100%).
    tr = data.truth.set_index("customer_id")
    signup = data.customers.set_index("customer_id")["signup_ts"]
    churn = tr["churn_date"].dropna()
    d120 = pd.Timedelta(days=120)
    ok = churn[(churn - 2 * d120 >= START) & (churn - 2 * d120 >= signup.reindex(churn.index))]
    o = orders[orders["customer_id"].isin(ok.index)]
    cd = o["customer_id"].map(ok)
    late = ((o["ts"] >= cd - d120) & (o["ts"] < cd)).sum()
    early = ((o["ts"] >= cd - 2 * d120) & (o["ts"] < cd - d120)).sum()
    assert early > 100
    assert 0.45 < late / early < 0.75


# ---------------------------------------------------------------- segments
def test_young_family_baby_kids_share(purchases: pd.DataFrame) -> None:
    spend = purchases.groupby(["segment", "category"])["amount"].sum().unstack(fill_value=0)
    share = spend.div(spend.sum(axis=1), axis=0)
    bk = share["baby"] + share["kids"]
    assert bk["young_family"] > 0.35
    assert bk["other"] < 0.15
    assert bk["young_family"] > 3 * bk["other"]


def test_young_family_behaviour(orders: pd.DataFrame, purchases: pd.DataFrame,
                                data: SyntheticData) -> None:
    weekend = orders.groupby("segment")["ts"].apply(lambda s: (s.dt.day_of_week >= 5).mean())
    assert weekend["young_family"] > 0.45 and weekend["other"] < 0.35
    app = orders.groupby("segment")["channel"].apply(lambda s: (s == "app").mean())
    assert app["young_family"] > 2.5 * app["other"]
    value = purchases.groupby(["segment", "order_id"])["amount"].sum().groupby("segment").mean()
    assert 1.2 < value["young_family"] / value["other"] < 1.7
    seg = data.truth.set_index("customer_id")["latent_segment"]
    ages = data.customers.set_index("customer_id")["age_band"]
    yf_ages = ages[seg.reindex(ages.index) == "young_family"]
    assert yf_ages.isin(["25-34", "35-44"]).mean() > 0.7


def test_hours(orders: pd.DataFrame) -> None:
    h = orders["ts"].dt.hour
    assert h.between(8, 21).mean() > 0.9
    by_hour = h.value_counts()
    assert by_hour.idxmax() in (17, 18, 19)


# -------------------------------------------------------------- affinities
def test_realised_top_category_matches_affinity(purchases: pd.DataFrame,
                                                data: SyntheticData) -> None:
    counts = purchases.groupby(["customer_id", "category"]).size().unstack(fill_value=0)
    counts = counts[counts.sum(axis=1) >= 10]
    assert len(counts) >= 200
    top = data.truth.set_index("customer_id")["top_affinity_category"].reindex(counts.index)
    match = (counts.idxmax(axis=1) == top).mean()
    assert match > 0.55


def test_past_shares_predict_future(purchases: pd.DataFrame) -> None:
    mid = START + (END - START) / 2
    first = purchases[purchases["ts"] < mid].groupby(["customer_id", "category"]).size()
    second = purchases[purchases["ts"] >= mid].groupby(["customer_id", "category"]).size()
    both = pd.concat([first.rename("a"), second.rename("b")], axis=1).fillna(0)
    wide_a = both["a"].unstack(fill_value=0)
    wide_b = both["b"].unstack(fill_value=0)
    keep = (wide_a.sum(axis=1) >= 5) & (wide_b.sum(axis=1) >= 5)
    sa = wide_a[keep].div(wide_a[keep].sum(axis=1), axis=0)
    sb = wide_b[keep].div(wide_b[keep].sum(axis=1), axis=0)
    corr = np.corrcoef(sa.to_numpy().ravel(), sb.to_numpy().ravel())[0, 1]
    assert corr > 0.5


# -------------------------------------------------------------- cross-sell
@pytest.mark.parametrize(("a", "b", "delay"), CROSS_SELL_PAIRS)
def test_cross_sell(purchases: pd.DataFrame, a: str, b: str, delay: int) -> None:
    first_a = purchases[purchases["category"] == a].groupby("customer_id")["ts"].min()
    p = purchases[purchases["customer_id"].isin(first_a.index)]
    after = p["ts"] > p["customer_id"].map(first_a) + pd.Timedelta(days=delay)
    share_after = (p.loc[after, "category"] == b).mean()
    share_before = (p.loc[~after, "category"] == b).mean()
    assert after.sum() > 200
    assert share_after > share_before + 0.1


# ------------------------------------------------------------------ amounts
def test_refunds(tx: pd.DataFrame) -> None:
    refunds = tx[tx["amount"] < 0]
    share = len(refunds) / len(tx)
    assert 0.01 <= share <= 0.02
    # Each refund mirrors an earlier purchase line of the same customer.
    buys = tx[tx["amount"] > 0]
    m = refunds.reset_index().merge(
        buys[["customer_id", "product_id", "quantity", "amount", "ts"]].assign(
            amount=lambda d: -d["amount"]
        ),
        on=["customer_id", "product_id", "quantity", "amount"],
        suffixes=("", "_buy"),
    )
    m = m[(m["ts_buy"] < m["ts"]) & (m["ts"] - m["ts_buy"] <= pd.Timedelta(days=21))]
    assert m["index"].nunique() == len(refunds)
    # Refunds are single-line orders.
    assert (tx[tx["order_id"].isin(refunds["order_id"])]["amount"] < 0).all()


def test_category_prices(purchases: pd.DataFrame) -> None:
    unit = (purchases["amount"] / purchases["quantity"]).groupby(purchases["category"]).median()
    assert unit["wine"] > 2 * unit["produce"]
    assert unit["baby"] > 2 * unit["dairy"]


def test_home_store(orders: pd.DataFrame) -> None:
    store = orders[orders["channel"] == "store"]
    counts = store.groupby("customer_id")["store_id"].agg(["size", lambda s: s.value_counts().iloc[0]])
    counts.columns = ["n", "top"]
    share = counts.loc[counts["n"] >= 5, "top"].sum() / counts.loc[counts["n"] >= 5, "n"].sum()
    assert 0.72 < share < 0.9


# ------------------------------------------------------------------- events
def test_events(data: SyntheticData, orders: pd.DataFrame) -> None:
    e = data.events
    seg = data.truth.set_index("customer_id")["latent_segment"]
    e_seg = e["customer_id"].map(seg)
    visits = (e["event_type"] == "app_visit").groupby(e_seg).sum()
    per_order = visits / orders.groupby("segment").size()
    assert 2.0 < per_order["young_family"] < 4.0
    assert 0.6 < per_order["other"] < 1.5
    # Email clicks only for opted-in customers.
    opt = data.customers.set_index("customer_id")["email_opt_in"]
    clicks = e[e["event_type"] == "email_click"]
    assert len(clicks) > 0 and clicks["customer_id"].map(opt).all()
    counts = e["event_type"].value_counts()
    assert counts["app_visit"] > counts["email_click"]
    assert counts["app_visit"] > counts["coupon_use"]


# -------------------------------------------------------------------- write
def test_write_round_trip(data: SyntheticData, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "synthetic"
    paths = write(data, out)
    assert set(paths) == {"transactions", "products", "customers", "events", "truth"}
    for name, path in paths.items():
        assert path == out / f"{name}.parquet" and path.exists()
        back = pd.read_parquet(path)
        pd.testing.assert_frame_equal(back, getattr(data, name))
