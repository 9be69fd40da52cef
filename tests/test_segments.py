"""RFM scores, named RFM segments and lifecycle stages (crmscore.features.segments), on hand-built frames, and
the `crmscore segment` command on the synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crmscore.config import LifecycleConfig, SegmentsConfig
from crmscore.features.segments import (
    LIFECYCLE_STAGES,
    RFM_SEGMENTS,
    SEGMENT_COLUMNS,
    RFMScorer,
    add_segments,
    lifecycle_stage,
    rfm_segment_name,
)

from conftest import cli_here


def _rfm_frame(recency, frequency, monetary, window: int = 365, **extra) -> pd.DataFrame:
    return pd.DataFrame({"recency_days": np.asarray(recency, dtype=float),
                         f"frequency_{window}d": np.asarray(frequency, dtype="int64"),
                         f"monetary_{window}d": np.asarray(monetary, dtype=float), **extra})


# ---------------------------------------------------------------- quintiles


def test_quintile_edges_are_learned_from_buyers_only():
    values = np.arange(21)  # 0..20: the 20/40/60/80% quantiles are exactly 4, 8, 12, 16
    df = _rfm_frame(np.append(values, np.nan), np.append(values, 0), np.append(values[::-1], 0.0))
    scorer = RFMScorer().fit(df)  # the last row is a prospect (no purchase): not part of the edges
    assert scorer.edges_ == {"r": [4.0, 8.0, 12.0, 16.0], "f": [4.0, 8.0, 12.0, 16.0], "m": [4.0, 8.0, 12.0, 16.0]}


def test_each_quintile_holds_a_fifth_of_the_buyers():
    rng = np.random.default_rng(3)
    df = _rfm_frame(rng.permutation(100) * 1.5, rng.permutation(100), rng.permutation(100) * 10.0)
    out = RFMScorer().fit(df).transform(df)
    for col in ("rfm_r", "rfm_f", "rfm_m"):
        assert out[col].value_counts().sort_index().to_dict() == {1: 20, 2: 20, 3: 20, 4: 20, 5: 20}


def test_values_on_an_edge_get_the_lower_score():
    scorer = RFMScorer(365, {"r": [4.0, 8.0, 12.0, 16.0], "f": [4.0, 8.0, 12.0, 16.0], "m": [4.0, 8.0, 12.0, 16.0]})
    v = [0, 3.9, 4, 4.1, 8, 12, 16, 16.1, 100]
    out = scorer.transform(_rfm_frame(v, np.floor(v), v))
    # R: fewer days is better; a recency exactly on an edge falls to the worse (lower) score
    assert out["rfm_r"].tolist() == [5, 5, 4, 4, 3, 2, 1, 1, 1]
    # F, M: more is better; a value exactly on an edge stays in the lower score
    assert out["rfm_m"].tolist() == [1, 1, 1, 2, 2, 3, 4, 5, 5]
    assert out["rfm_f"].tolist() == [1, 1, 1, 1, 2, 3, 4, 4, 5]  # floor(16.1) = 16 sits on the edge


def test_edge_counts_by_comparison_equal_numpy_searchsorted():
    """R, F and M are scored by comparing a million customers with the four edges, not by binary search: the
    same counts, for values on an edge, between, beyond, infinite or missing, and edges that repeat."""
    from crmscore.features.segments import _edges_below

    rng = np.random.default_rng(11)
    for edges in ([4.0, 8.0, 12.0, 16.0], [0.0, 0.0, 3.5, 3.5], [-1.0, 2.0, 2.0, 1e9]):
        values = np.r_[rng.choice(edges, 2000), rng.uniform(-5, 20, 2000).round(1), np.inf, -np.inf, np.nan, -0.0]
        for side in ("left", "right"):
            assert np.array_equal(_edges_below(edges, values, side), np.searchsorted(edges, values, side=side))


def test_r_direction_fewer_days_is_higher_r():
    rng = np.random.default_rng(11)
    rec = rng.uniform(0, 400, 300)
    df = _rfm_frame(rec, rng.integers(1, 20, 300), rng.uniform(1, 900, 300))
    out = RFMScorer().fit(df).transform(df)
    by_recency = out.assign(rec=rec).sort_values("rec")["rfm_r"].to_numpy()
    assert (np.diff(by_recency) <= 0).all()  # more days since the last purchase never raises R
    assert by_recency[0] == 5 and by_recency[-1] == 1
    # F and M go the other way: more orders / spend never lowers the score
    by_f = out.assign(f=df["frequency_365d"]).sort_values("f")["rfm_f"].to_numpy()
    assert (np.diff(by_f) >= 0).all() and by_f[0] == 1 and by_f[-1] == 5


def test_prospects_score_zero_and_empty():
    df = _rfm_frame([1.0, np.nan, 50.0], [3, 0, 1], [40.0, 0.0, 5.0])
    out = RFMScorer().fit(df).transform(df)
    p = out.iloc[1]
    assert (p["rfm_r"], p["rfm_f"], p["rfm_m"], p["rfm_score"], p["rfm_segment"]) == (0, 0, 0, "", "prospect")
    assert out["rfm_score"].tolist()[0] == f"{out['rfm_r'][0]}{out['rfm_f'][0]}{out['rfm_m'][0]}"


def test_fit_and_transform_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        RFMScorer().transform(_rfm_frame([1.0], [1], [1.0]))
    with pytest.raises(ValueError, match="at least one customer with a purchase"):
        RFMScorer().fit(_rfm_frame([np.nan], [0], [0.0]))
    with pytest.raises(ValueError, match=r"is 90 in features.windows"):
        RFMScorer(90).fit(_rfm_frame([1.0], [1], [1.0]))  # only the 365-day columns exist


# ---------------------------------------------------------------- named segments

# the 5x5 grid as written in the module docstring: R -> {FM: name}
EXPECTED_GRID = {
    5: {1: "new_customer", 2: "potential_loyalist", 3: "potential_loyalist", 4: "champions", 5: "champions"},
    4: {1: "promising", 2: "potential_loyalist", 3: "potential_loyalist", 4: "loyal", 5: "loyal"},
    3: {1: "about_to_sleep", 2: "about_to_sleep", 3: "need_attention", 4: "loyal", 5: "loyal"},
    2: {1: "hibernating", 2: "hibernating", 3: "at_risk", 4: "at_risk", 5: "cant_lose_them"},
    1: {1: "hibernating", 2: "hibernating", 3: "at_risk", 4: "at_risk", 5: "cant_lose_them"},
}


@pytest.mark.parametrize("r", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("fm", [1, 2, 3, 4, 5])
def test_named_segment_grid(r, fm):
    assert rfm_segment_name(r, fm) == EXPECTED_GRID[r][fm]


def test_segment_names_are_the_declared_ones_and_out_of_range_fails():
    assert {n for row in EXPECTED_GRID.values() for n in row.values()} == {n for _, n in RFM_SEGMENTS}
    for r, fm in [(0, 3), (6, 3), (3, 0), (3, 6)]:
        with pytest.raises(ValueError, match="out of range"):
            rfm_segment_name(r, fm)


@pytest.mark.parametrize(("recency", "f", "m", "name"), [
    (5, 4, 450, "champions"),        # R5, F4 M5: FM = 4.5 rounds up to 5
    (5, 1, 150, "potential_loyalist"),  # R5, F1 M2: FM = 1.5 -> 2, not new_customer
    (5, 1, 50, "new_customer"),      # R5, FM1
    (15, 1, 50, "promising"),        # R4, FM1
    (25, 2, 250, "need_attention"),  # R3, F2 M3: 2.5 -> 3
    (25, 1, 150, "about_to_sleep"),  # R3, 1.5 -> 2
    (35, 3, 350, "at_risk"),         # R2, 3.5 -> 4
    (45, 4, 450, "cant_lose_them"),  # R1, 4.5 -> 5 (banker's rounding would give 4: at_risk)
    (45, 2, 50, "hibernating"),      # R1, 1.5 -> 2
    (15, 5, 350, "loyal"),           # R4, 4.5 -> 5
])
def test_transform_names_segments_with_half_up_fm(recency, f, m, name):
    scorer = RFMScorer(365, {"r": [10.0, 20.0, 30.0, 40.0], "f": [1.0, 2.0, 3.0, 4.0],
                             "m": [100.0, 200.0, 300.0, 400.0]})
    out = scorer.transform(_rfm_frame([recency], [f], [m]))
    assert out.loc[0, "rfm_segment"] == name


# ---------------------------------------------------------------- lifecycle

CUSTOM = LifecycleConfig(new_days=10, lapsed_days=[7, 21, 45], churned_days=90, at_risk_gap_ratio=3.0)


@pytest.mark.parametrize(("recency", "first", "ratio", "stage"), [
    (np.nan, np.nan, np.nan, "prospect"),
    (90.0, 200.0, 1.0, "churned"),
    (89.99, 200.0, 1.0, "lapsed_60"),   # the third threshold (45 days here) keeps its label
    (45.0, 200.0, 1.0, "lapsed_60"),
    (44.99, 200.0, 1.0, "lapsed_30"),
    (21.0, 200.0, 1.0, "lapsed_30"),
    (20.99, 200.0, 1.0, "lapsed_15"),
    (7.0, 8.0, 1.0, "lapsed_15"),       # lapsed wins over new: first rule that matches
    (6.99, 9.99, 5.0, "new"),           # new wins over at_risk
    (6.99, 10.0, 3.0, "at_risk"),       # first purchase exactly new_days ago: no longer new
    (6.99, 10.0, 2.99, "active"),
    (6.99, 10.0, np.nan, "active"),     # one order: no usual gap, never at_risk
])
def test_lifecycle_thresholds_from_config(recency, first, ratio, stage):
    df = pd.DataFrame({"recency_days": [recency], "first_purchase_days": [first], "recency_gap_ratio": [ratio]})
    assert lifecycle_stage(df, CUSTOM).tolist() == [stage]


def test_lifecycle_defaults_differ_from_custom():
    df = pd.DataFrame({"recency_days": [8.0, 100.0, 6.0], "first_purchase_days": [300.0, 300.0, 300.0],
                       "recency_gap_ratio": [1.0, 1.0, 2.5]})
    assert lifecycle_stage(df, LifecycleConfig()).tolist() == ["active", "lapsed_60", "at_risk"]
    assert lifecycle_stage(df, CUSTOM).tolist() == ["lapsed_15", "churned", "active"]
    # without a recency_gap_ratio column nobody is at_risk
    assert lifecycle_stage(df.drop(columns="recency_gap_ratio"), LifecycleConfig()).tolist()[2] == "active"


# ---------------------------------------------------------------- scorer round trip


def _batch(n: int = 300, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rec = rng.exponential(60, n)
    rec[rng.random(n) < 0.1] = np.nan  # prospects
    buyer = ~np.isnan(rec)
    freq = np.where(buyer, rng.poisson(4, n), 0)
    df = _rfm_frame(rec, freq, np.where(buyer, freq * rng.gamma(2, 20, n), 0.0),
                    first_purchase_days=np.where(buyer, rec + rng.exponential(100, n), np.nan),
                    recency_gap_ratio=np.where(buyer, rng.exponential(1.2, n), np.nan))
    df.insert(0, "customer_id", [f"c{i:04d}" for i in range(n)])
    return df


def test_scorer_round_trip_scores_one_customer_as_in_the_batch():
    df = _batch()
    cfg = SegmentsConfig()
    scorer = RFMScorer(cfg.rfm_window_days).fit(df)
    batch = add_segments(df, cfg, scorer)
    restored = RFMScorer.from_dict(json.loads(json.dumps(scorer.to_dict())))  # as saved next to a model
    assert restored.edges_ == scorer.edges_ and restored.window_days == 365
    for i in [0, 1, 17, 150, 299, *np.flatnonzero(df["recency_days"].isna())[:2]]:
        one = df.iloc[[i]].reset_index(drop=True)  # a request to the service: a frame of one row
        scored = add_segments(one, cfg, restored)
        expected = batch.iloc[[i]].reset_index(drop=True)
        pd.testing.assert_frame_equal(scored[list(SEGMENT_COLUMNS)], expected[list(SEGMENT_COLUMNS)])


def test_a_single_customer_refit_alone_would_score_differently():
    """Why the scorer is kept: fitted on one row, a champion of the batch becomes 'hibernating'."""
    df = _batch()
    batch = add_segments(df, SegmentsConfig())
    i = int(np.flatnonzero(batch["rfm_segment"] == "champions")[0])
    alone = add_segments(df.iloc[[i]].reset_index(drop=True), SegmentsConfig())
    assert alone.loc[0, "rfm_segment"] == "hibernating"


def test_add_segments_replaces_existing_segment_columns():
    df = _batch()
    once = add_segments(df, SegmentsConfig())
    twice = add_segments(once, SegmentsConfig())
    pd.testing.assert_frame_equal(once, twice)
    assert list(once.columns) == [*df.columns, *SEGMENT_COLUMNS]


# ---------------------------------------------------------------- CLI on synthetic data

AS_OF = "2024-07-01"


def test_cli_segment_writes_one_row_per_customer(synthetic_config, synthetic_dir, tmp_path):
    out = tmp_path / "seg" / "segments.parquet"
    res = cli_here("segment", "--config", synthetic_config, "--as-of", AS_OF, "--out", out)  # in this process
    assert res.exception is None and "Traceback" not in res.stderr
    seg = pd.read_parquet(out)
    assert list(seg.columns) == ["customer_id", *SEGMENT_COLUMNS]
    assert seg["customer_id"].is_unique

    # the expected population, from the raw files: a purchase or a sign-up strictly before as_of
    cut = pd.Timestamp(AS_OF)
    tx = pd.read_parquet(synthetic_dir / "transactions.parquet", columns=["customer_id", "ts"])
    cust = pd.read_parquet(synthetic_dir / "customers.parquet", columns=["customer_id", "signup_ts"])
    buyers = set(tx.loc[tx["ts"] < cut, "customer_id"])
    known = buyers | set(cust.loc[cust["signup_ts"] < cut, "customer_id"])
    assert set(seg["customer_id"]) == known
    assert len(known - buyers) > 0  # the synthetic data has prospects at this cutoff

    is_buyer = seg["customer_id"].isin(buyers)
    assert ((seg["rfm_segment"] == "prospect") == ~is_buyer).all()
    assert ((seg["lifecycle_stage"] == "prospect") == ~is_buyer).all()
    b = seg[is_buyer]
    for col in ("rfm_r", "rfm_f", "rfm_m"):
        assert b[col].between(1, 5).all() and (seg.loc[~is_buyer, col] == 0).all()
    assert set(b["rfm_r"]) == {1, 2, 3, 4, 5}
    assert (b["rfm_score"] == b["rfm_r"].astype(str) + b["rfm_f"].astype(str) + b["rfm_m"].astype(str)).all()
    assert set(seg["rfm_segment"]) <= {n for _, n in RFM_SEGMENTS} | {"prospect"}
    assert set(seg["lifecycle_stage"]) <= set(LIFECYCLE_STAGES)
    assert "Customers by RFM segment" in res.stdout


def test_features_before_the_first_purchase_are_all_prospects(tmp_path):
    """A cutoff after some sign-ups but before the first purchase (an early snapshot of a training set)
    should give prospects, not an error."""
    from crmscore.config import load_config
    from crmscore.data import load_customer_data
    from crmscore.features import build_features

    from conftest import write_config, write_frames

    tx = pd.DataFrame({"customer_id": ["a", "b"], "ts": ["2023-05-01 10:00:00"] * 2, "amount": [5.0, 6.0]})
    cust = pd.DataFrame({"customer_id": ["a", "b", "c"], "signup_ts": ["2023-01-01", "2023-04-01", "2023-03-01"]})
    cfg = load_config(write_config(tmp_path, write_frames(tmp_path, {"transactions": tx, "customers": cust})))
    df = build_features(load_customer_data(cfg), "2023-02-01")
    assert df["customer_id"].tolist() == ["a"]
    assert df.loc[0, "rfm_segment"] == "prospect" and df.loc[0, "lifecycle_stage"] == "prospect"
