"""Point-in-time correctness: nothing on or after `as_of` may change any feature or segment.

Property: for random small histories, the feature table built from all the data equals the one built
from the same data with every transaction, event, customer sign-up and attribute change on or after
`as_of` removed (the default feature set plus next-category's per-category purchase history). Customer
attributes: the listed static ones, plus a `status` column the "today" export has changed (not listed, so
never a feature), plus a plan history whose rows are valid from a timestamp and are joined point-in-time.
Rows exactly at `as_of` midnight (and one second before it) are generated on purpose, order ids are
shared across the cutoff, and timestamps are written either naive (local wall time of the config's
timezone) or as UTC instants with an offset, so the boundary is checked in both forms.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.features import build_features, feature_set_for
from crmscore.features.definitions import FeatureSet, declare_category_history
from crmscore.features.segments import SEGMENT_COLUMNS

from conftest import write_config, write_frames

AS_OF = pd.Timestamp("2024-01-01")
POOL = ["c0", "c1", "c2", "c3", "c4"]  # customers that may exist before the cutoff
NEW = ["n0", "n1", "n2"]  # customers that only appear (and sign up) on or after the cutoff
CATEGORIES = ["dairy", "meat", "bakery", "wine", None]
CHANNELS = ["app", "store", "online"]
STORES = ["S1", "S2", "S3", None]
ORDERS = ["o1", "o2", "o3", "o4", "o5", None]  # shared across the cutoff on purpose; None: no order id
EVENT_TYPES = ["app_visit", "login", "coupon_use"]
DAY = 86_400

# seconds before as_of (>= 1) and on/after it (>= 0), with the boundaries made likely
before_s = st.one_of(st.just(1), st.just(DAY), st.integers(1, 400 * DAY))
after_s = st.one_of(st.just(0), st.just(1), st.integers(0, 120 * DAY))
amounts = st.one_of(
    st.decimals(min_value=-60, max_value=250, places=2).map(float),  # negatives are refunds
    st.just(0.0),
)


@st.composite
def _tx_rows(draw, customers, seconds, sign, categories=CATEGORIES):
    n = draw(st.integers(1, 12)) if sign < 0 else draw(st.integers(0, 12))
    rows = []
    for _ in range(n):
        rows.append({
            "customer_id": draw(st.sampled_from(customers)),
            "local": AS_OF + sign * pd.Timedelta(seconds=draw(seconds)),
            "amount": draw(amounts),
            "order_id": draw(st.sampled_from(ORDERS)),
            "category": draw(st.sampled_from(categories)),
            "channel": draw(st.sampled_from(CHANNELS)),
            "store_id": draw(st.sampled_from(STORES)),
        })
    return rows


@st.composite
def _ev_rows(draw, customers, seconds, sign, types=EVENT_TYPES):
    n = draw(st.integers(1, 6)) if sign < 0 else draw(st.integers(0, 6))
    return [{"customer_id": draw(st.sampled_from(customers)),
             "local": AS_OF + sign * pd.Timedelta(seconds=draw(seconds)),
             "event_type": draw(st.sampled_from(types))} for _ in range(n)]


@st.composite
def histories(draw):
    timezone = draw(st.sampled_from(["UTC", "America/New_York"]))
    fmt = draw(st.sampled_from(["csv", "parquet"]))
    tx_before = draw(_tx_rows(POOL, before_s, -1))
    tx_after = draw(_tx_rows(POOL + NEW, after_s, +1, CATEGORIES + ["toys"]))  # 'toys' only after
    ev_before = draw(_ev_rows(POOL, before_s, -1))
    ev_after = draw(_ev_rows(POOL + NEW, after_s, +1, EVENT_TYPES + ["survey"]))
    # the customers table always has someone before the cutoff (an empty file has no column types)
    with_row = draw(st.lists(st.sampled_from(POOL), min_size=1, unique=True))
    customers_before = []
    for cid in POOL:
        if cid in with_row:
            signup = draw(st.one_of(st.none(), before_s.map(lambda s: AS_OF - pd.Timedelta(seconds=s))))
            customers_before.append({"customer_id": cid, "local": signup,
                                     "tier": draw(st.sampled_from(["gold", "silver"])),
                                     "score": draw(st.integers(0, 9))})
    customers_after = [{"customer_id": cid, "local": AS_OF + pd.Timedelta(seconds=draw(after_s)),
                        "tier": draw(st.sampled_from(["gold", "silver", "platinum"])),
                        "score": draw(st.integers(0, 9))}
                       for cid in NEW if draw(st.booleans())]
    # plan changes: valid from a moment before or on/after the cutoff (the latter only in the full data)
    plans_before = [{"customer_id": draw(st.sampled_from(POOL)),
                     "local": AS_OF - pd.Timedelta(seconds=draw(before_s)),
                     "plan": draw(st.sampled_from(["basic", "plus"])), "credit": draw(st.integers(0, 500))}
                    for _ in range(draw(st.integers(1, 8)))]
    plans_after = [{"customer_id": draw(st.sampled_from(POOL + NEW)),
                    "local": AS_OF + pd.Timedelta(seconds=draw(after_s)),
                    "plan": draw(st.sampled_from(["basic", "plus", "closed"])), "credit": draw(st.integers(0, 500))}
                   for _ in range(draw(st.integers(0, 8)))]
    # per row: write the timestamp as naive local wall time, or as the same instant in UTC with an offset
    offsets = draw(st.booleans())
    return {"timezone": timezone, "fmt": fmt, "offsets": offsets,
            "seed": draw(st.integers(0, 2**16)),
            "tx": (tx_before, tx_after), "ev": (ev_before, ev_after),
            "cust": (customers_before, customers_after), "plans": (plans_before, plans_after)}


def _render(local: pd.Timestamp | None, tz: str, as_offset: bool) -> str | None:
    if local is None:
        return None
    if as_offset:
        instant = local.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")
        return instant.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return local.strftime("%Y-%m-%d %H:%M:%S")  # also midnight as '... 00:00:00', never a bare date


def _frame(rows: list[dict], ts_col: str, tz: str, offsets: bool, rng, columns: list[str]) -> pd.DataFrame:
    out = []
    for r in rows:
        r = dict(r)
        r[ts_col] = _render(r.pop("local"), tz, offsets and bool(rng.integers(0, 2)))
        out.append(r)
    return pd.DataFrame(out, columns=columns)


def _build(folder: Path, h: dict, with_after: bool) -> tuple[pd.DataFrame, str]:
    tz, off = h["timezone"], h["offsets"]

    def rng(table: int):  # one stream per table: the rows both builds share are rendered alike
        return np.random.default_rng([h["seed"], table])

    def pick(pair):
        return pair[0] + (pair[1] if with_after else [])

    tx_cols = ["customer_id", "ts", "amount", "order_id", "category", "channel", "store_id"]
    frames = {
        "transactions": _frame(pick(h["tx"]), "ts", tz, off, rng(0), tx_cols),
        "events": _frame(pick(h["ev"]), "ts", tz, off, rng(1), ["customer_id", "ts", "event_type"]),
        "customers": _frame(pick(h["cust"]), "signup_ts", tz, off, rng(2),
                            ["customer_id", "signup_ts", "tier", "score"]),
        "attribute_history": _frame(pick(h["plans"]), "valid_from", tz, off, rng(3),
                                    ["customer_id", "valid_from", "plan", "credit"]),
    }
    # today's export has closed accounts that were open at the cutoff: a column never listed as an attribute
    frames["customers"]["status"] = "closed" if with_after else "open"
    sources = write_frames(folder, frames, h["fmt"])
    sources["customers"]["attributes"] = ["tier", "score"]
    sources["attribute_history"]["attributes"] = ["plan", "credit"]
    cfg = load_config(write_config(folder, sources, timezone=tz))
    data = load_customer_data(cfg)
    assert all(rep.rows_bad == 0 for rep in data.reports.values()), data.reports
    fs = feature_set_for(data, AS_OF)
    # next-category's per-category purchase history, for every category including one bought only after as_of
    history = declare_category_history([c for c in CATEGORIES if c] + ["toys"], list(fs.windows))
    fs = FeatureSet((*fs.features, *history), fs.vocabulary, fs.windows, fs.evening_hour)
    return build_features(data, AS_OF, fs), fs.version


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(h=histories())
def test_rows_on_or_after_as_of_never_change_features(h):
    with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
        full, v_full = _build(Path(d1), h, with_after=True)
        cut, v_cut = _build(Path(d2), h, with_after=False)
    assert v_full == v_cut
    assert set(SEGMENT_COLUMNS) <= set(full.columns)
    # the population is exactly the customers with a purchase or a sign-up strictly before as_of
    known = {r["customer_id"] for r in h["tx"][0]} | {
        r["customer_id"] for r in h["cust"][0] if r["local"] is not None}
    assert set(full["customer_id"]) == known
    assert {"attr_tier", "attr_score", "attr_plan", "attr_credit"} <= set(full.columns)
    assert "attr_status" not in full.columns
    pd.testing.assert_frame_equal(full, cut)


def test_rows_exactly_at_as_of_are_excluded(tmp_path):
    """A concrete case of the property (fails loudly, without shrinking): a 999 purchase at midnight."""
    tx = pd.DataFrame({"customer_id": ["a", "a", "b"],
                       "ts": ["2023-12-31 23:59:59", "2024-01-01 00:00:00", "2024-01-01 00:00:00"],
                       "amount": [10.0, 999.0, 5.0], "order_id": ["o1", "o1", "o2"]})
    cfg = load_config(write_config(tmp_path, write_frames(tmp_path, {"transactions": tx})))
    df = build_features(load_customer_data(cfg), AS_OF).set_index("customer_id")
    assert list(df.index) == ["a"]  # b only bought at the cutoff itself
    assert df.loc["a", "monetary_total"] == pytest.approx(10.0)
    assert df.loc["a", "frequency_total"] == 1
    assert df.loc["a", "recency_days"] == pytest.approx(1 / 86_400)


def _fixture_config(tmp_path: Path, **extra) -> Path:
    tx = pd.DataFrame({
        "customer_id": ["a", "a", "b", "c", "c"],
        "ts": ["2023-03-01 10:00:00", "2023-11-20 18:30:00", "2023-12-24 09:00:00", "2023-07-07 12:00:00",
               "2024-02-01 12:00:00"],
        "amount": [12.5, 30.0, -4.0, 8.0, 100.0],
        "order_id": ["o1", "o2", "o3", "o4", "o5"],
        "category": ["dairy", "meat", "dairy", "wine", "toys"],
        "channel": ["app", "store", "store", "online", "app"],
    })
    return write_config(tmp_path, write_frames(tmp_path, {"transactions": tx}), **extra)


def test_feature_set_version_is_stable_for_the_same_data(tmp_path):
    cfg_path = _fixture_config(tmp_path)
    v1 = feature_set_for(load_customer_data(load_config(cfg_path)), AS_OF)
    v2 = feature_set_for(load_customer_data(load_config(cfg_path)), AS_OF)  # a fresh load, a fresh connection
    assert v1.version == v2.version and v1.version.startswith("fs-")
    assert v1.names == v2.names
    assert type(v1).from_dict(v1.to_dict()).version == v1.version
    # the version does identify the set: other windows, or a cutoff before 'wine' was bought, change it
    other = tmp_path / "other"
    other.mkdir()
    cfg_other = _fixture_config(other, features={"windows": [30, 90, 365]})
    assert feature_set_for(load_customer_data(load_config(cfg_other)), AS_OF).version != v1.version
    earlier = feature_set_for(load_customer_data(load_config(cfg_path)), "2023-06-01")
    assert "category_share_wine" in v1.names and "category_share_wine" not in earlier.names
    assert earlier.version != v1.version
    # a category bought only after the cutoff ('toys' on 2024-02-01) is not part of the set
    assert "category_share_toys" not in v1.names


def test_attribute_history_is_joined_as_of_the_cutoff(tmp_path):
    """A concrete case: a plan valid from a second before the cutoff counts; one valid from the cutoff
    itself (or later) does not; a customer whose only row is later has no plan yet."""
    tx = pd.DataFrame({"customer_id": ["a", "b"], "ts": ["2023-12-01 10:00:00", "2023-12-02 10:00:00"],
                       "amount": [10.0, 20.0]})
    plans = pd.DataFrame({"customer_id": ["a", "a", "a", "b"],
                          "valid_from": ["2023-06-01 00:00:00", "2023-12-31 23:59:59", "2024-01-01 00:00:00",
                                         "2024-01-02 00:00:00"],
                          "plan": ["basic", "plus", "closed", "closed"]})
    sources = write_frames(tmp_path, {"transactions": tx, "attribute_history": plans})
    sources["attribute_history"]["attributes"] = ["plan"]
    df = build_features(load_customer_data(load_config(write_config(tmp_path, sources))), AS_OF).set_index(
        "customer_id")
    assert df.loc["a", "attr_plan"] == "plus"
    assert pd.isna(df.loc["b", "attr_plan"])


def test_customer_columns_are_features_only_when_listed(tmp_path, caplog):
    import logging

    from crmscore.errors import DataContractError

    tx = pd.DataFrame({"customer_id": ["a", "b"], "ts": ["2023-12-01 10:00:00", "2023-12-02 10:00:00"],
                       "amount": [10.0, 20.0]})
    customers = pd.DataFrame({"customer_id": ["a", "b"], "region": ["north", "south"], "status": ["open", "closed"],
                              "ltv": [100.0, 5.0]})

    def names(**customers_cfg):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        sources = write_frames(folder, {"transactions": tx, "customers": customers})
        sources["customers"].update(customers_cfg)
        return set(feature_set_for(load_customer_data(load_config(write_config(folder, sources))), AS_OF).names)

    with caplog.at_level(logging.INFO, logger="crmscore.data.loader"):
        assert not any(n.startswith("attr_") for n in names())
    assert "region, status, ltv are not features" in caplog.text
    assert {n for n in names(attributes=["region"]) if n.startswith("attr_")} == {"attr_region"}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="crmscore.data.loader"):
        chosen = names(attributes="all", exclude_attributes=["status"])
    assert {n for n in chosen if n.startswith("attr_")} == {"attr_region", "attr_ltv"}
    assert "every column but ['status'] becomes a feature: region, ltv" in caplog.text
    with pytest.raises(DataContractError, match=r"customers.tier: listed under data.customers.attributes but not"):
        names(attributes=["tier"])
