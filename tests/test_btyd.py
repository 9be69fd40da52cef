"""Buy-till-you-die features: the fitted models match the published papers and lifetimes, and the features
are point-in-time (fitted per snapshot on history before its cutoff) in the batch build and the online store.

The CDNOW figures are the published ones: BG/NBD r=0.243, alpha=4.414, a=0.793, b=2.426 (Fader, Hardie &
Lee 2005, "Counting your customers the easy way", section 5) and Gamma-Gamma p=6.25, q=3.74, v=15.44
(Fader, Hardie & Lee 2005, "RFM and CLV", and lifetimes' documentation on the same summary).
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from crmscore.config import load_config
from crmscore.data import load_customer_data
from crmscore.features import build_features
from crmscore.features.btyd import BGNBD, GammaGamma

from conftest import tracking_store

BTYD_COLUMNS = ["btyd_expected_orders_30d", "btyd_expected_orders_90d", "btyd_p_alive", "btyd_expected_order_value"]


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    from lifetimes.datasets import load_cdnow_summary_data_with_monetary_value

    return load_cdnow_summary_data_with_monetary_value()  # shipped with lifetimes: 2,357 customers, weeks


def test_bgnbd_fit_recovers_the_published_cdnow_parameters(cdnow):
    x, t_x, T = (cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    fit = BGNBD.fit(x, t_x, T)
    assert (fit.r, fit.alpha, fit.a, fit.b) == pytest.approx((0.243, 4.414, 0.793, 2.426), abs=0.002)


def test_bgnbd_expectations_match_lifetimes(cdnow):
    """Expected orders in 39 weeks and P(alive) equal lifetimes' for the same parameters (the closed form,
    eq. 10 and 13 of the paper, computed by an independent implementation)."""
    from lifetimes import BetaGeoFitter

    x, t_x, T = (cdnow[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    ours = BGNBD(r=0.243, alpha=4.414, a=0.793, b=2.426)
    ref = BetaGeoFitter()
    ref.params_ = pd.Series({"r": ours.r, "alpha": ours.alpha, "a": ours.a, "b": ours.b})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = ref.conditional_expected_number_of_purchases_up_to_time(39, x, t_x, T)
        alive = ref.conditional_probability_alive(x, t_x, T)
    np.testing.assert_allclose(ours.expected_purchases(39, x, t_x, T), expected, rtol=1e-9)
    np.testing.assert_allclose(ours.p_alive(x, t_x, T), alive, rtol=1e-9)
    # the paper's worked example: a customer with 2 repeat orders, last at 30.43, observed 38.86 weeks
    assert ours.expected_purchases(39, np.array([2.0]), np.array([30.43]), np.array([38.86]))[0] == pytest.approx(
        1.226, abs=0.01)


def test_gamma_gamma_fit_and_expectation_match_the_published_values(cdnow):
    from lifetimes import GammaGammaFitter

    repeat = cdnow[cdnow["frequency"] > 0]
    x, m = repeat["frequency"].to_numpy(float), repeat["monetary_value"].to_numpy(float)
    fit = GammaGamma.fit(x, m)
    assert (fit.p, fit.q, fit.v) == pytest.approx((6.25, 3.74, 15.44), abs=0.01)
    ref = GammaGammaFitter()
    ref.params_ = pd.Series({"p": fit.p, "q": fit.q, "v": fit.v})
    np.testing.assert_allclose(fit.expected_order_value(x, m),
                               ref.conditional_expected_average_profit(repeat["frequency"], repeat["monetary_value"]),
                               rtol=1e-9)


def _truncated_config(synthetic_config, tmp_path, before: pd.Timestamp):
    """The synthetic data with every transaction on or after `before` removed."""
    raw = yaml.safe_load(open(synthetic_config).read())
    for table, source in raw["data"].items():
        dest = tmp_path / f"{table}.parquet"
        if table == "transactions":
            tx = pd.read_parquet(source["path"])
            tx[pd.to_datetime(tx["ts"]) < before].to_parquet(dest, index=False)
        else:
            shutil.copy(source["path"], dest)
        source["path"] = str(dest)
    raw["validation"]["quarantine_dir"] = str(tmp_path / "quarantine")
    (tmp_path / "cut.yaml").write_text(yaml.safe_dump(raw))
    return load_config(tmp_path / "cut.yaml")


def test_btyd_features_use_only_history_before_the_cutoff(synthetic_config, tmp_path):
    """Transactions on or after as_of (here: everything after it) do not change the fitted features; a later
    cutoff, whose fit sees more history, does."""
    full = load_customer_data(load_config(synthetic_config))
    lo, hi = full.ts_range()
    as_of = (lo + (hi - lo) * 0.6).normalize()
    with_future = build_features(full, as_of).set_index("customer_id")
    cut = build_features(load_customer_data(_truncated_config(synthetic_config, tmp_path, as_of)), as_of)
    cut = cut.set_index("customer_id")
    pd.testing.assert_frame_equal(with_future[BTYD_COLUMNS], cut.loc[with_future.index, BTYD_COLUMNS])
    buyers = with_future["frequency_total"] > 0
    assert with_future.loc[buyers, BTYD_COLUMNS].notna().all().all()
    assert with_future.loc[buyers, "btyd_p_alive"].between(0, 1).all()
    # more expected orders over 90 days than over 30, for every buyer
    longer, shorter = with_future.loc[buyers, "btyd_expected_orders_90d"], with_future.loc[buyers, "btyd_expected_orders_30d"]
    assert (longer > shorter).all()
    later = build_features(full, as_of + pd.Timedelta(days=30)).set_index("customer_id")
    both = with_future.index[buyers].intersection(later.index)
    assert not np.allclose(later.loc[both, "btyd_p_alive"], with_future.loc[both, "btyd_p_alive"])


def test_published_store_holds_the_batch_btyd_values(synthetic_config, tmp_path, monkeypatch):
    """`crmscore features publish` (publish_snapshot) stores the same BTYD values the batch build computes, so
    the service scores with the features the model was trained on."""
    from crmscore.scoring.publish import publish_snapshot
    from crmscore.features.store import SqliteStore
    from crmscore.settings import get_settings

    monkeypatch.setenv("CRMSCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRMSCORE_TRACKING_URI", tracking_store(tmp_path))
    data = load_customer_data(load_config(synthetic_config))
    as_of = data.default_as_of()
    publish_snapshot(data, as_of, get_settings())
    batch = build_features(data, as_of).set_index("customer_id")
    ids = list(batch.index[batch["frequency_total"] > 0][:50])
    stored = SqliteStore(tmp_path / "home" / "online_store.sqlite").get_many(ids)
    assert set(stored) == set(ids)
    for cid in ids:
        for col in BTYD_COLUMNS:
            assert stored[cid][col] == pytest.approx(batch.loc[cid, col], rel=1e-12), (cid, col)


def test_unique_rows_match_numpy_unique_rows():
    """The BG/NBD fit's de-duplication gives np.unique(axis=0)'s rows, order and counts (so the fit is unchanged)."""
    from crmscore.features.btyd import _unique_rows

    rng = np.random.default_rng(3)
    data = np.column_stack([rng.integers(0, 4, 3000), rng.integers(0, 30, 3000) / 7.0, rng.random(3000).round(1)])
    data[::7, 1] = -0.0  # signed zeros compare equal
    expected, counts = np.unique(data, axis=0, return_counts=True)
    got, got_counts = _unique_rows(data)
    assert np.array_equal(got, expected) and np.array_equal(got_counts, counts)
    assert counts.sum() == len(data) and len(expected) < len(data)
    empty, none = _unique_rows(data[:0])
    assert empty.shape == (0, 3) and len(none) == 0


def _history(n: int, seed: int) -> pd.DataFrame:
    """Point-in-time order features of n customers, as the build gives them (days, orders, currency)."""
    rng = np.random.default_rng(seed)
    first = rng.uniform(30, 700, n)
    orders = rng.geometric(0.3, n)
    last = first * rng.uniform(0, 1, n) * (orders > 1)
    return pd.DataFrame({"customer_id": [f"C{i:06d}" for i in range(n)], "recency_days": last,
                         "first_purchase_days": first, "frequency_total": orders,
                         "monetary_total": orders * rng.gamma(4, 10, n)})


def test_btyd_fit_sample_is_exact_below_its_size_and_independent_of_row_order():
    """Up to sample_size buyers the fit is the full fit; above it, a fixed sample chosen by customer id, so a
    shuffled table gets the same values per customer, close to the full fit."""
    from crmscore.features.btyd import btyd_frame

    frame = _history(3000, 5)
    full = btyd_frame(frame, (30,), sample_size=10**9)
    pd.testing.assert_frame_equal(btyd_frame(frame, (30,), sample_size=3000), full)
    sampled = btyd_frame(frame, (30,), sample_size=1000)
    assert not np.allclose(sampled.to_numpy(), full.to_numpy(), rtol=1e-9)  # the sample was used
    shuffled = frame.sample(frac=1, random_state=1)
    again = btyd_frame(shuffled, (30,), sample_size=1000).loc[frame.index]
    pd.testing.assert_frame_equal(again, sampled)
    rel = np.abs(sampled.to_numpy() / full.to_numpy() - 1)
    assert np.median(rel) < 0.05 and rel.max() < 0.25


def _eq10(r: float, alpha: float, a: float, b: float, t: float, x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Eq. (10) of Fader, Hardie & Lee (2005) as printed, scipy's hyp2f1 on its own arguments, P(alive) left out."""
    from scipy import special

    z = t / (alpha + T + t)
    return (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x)
                                        * special.hyp2f1(r + x, b + x, a + b + x - 1, z))


def test_bgnbd_expected_orders_equal_eq10_over_parameters_counts_and_horizons():
    """expected_purchases sums the Euler-transformed series itself (where its terms shrink by z at least), and
    falls back to scipy elsewhere: both equal the paper's formula, over parameters inside and outside that
    domain, counts up to 150 and z up to 0.99 (past the series' 256 terms)."""
    from crmscore.features.btyd import _series_applies

    rng = np.random.default_rng(7)
    x = np.r_[0, 1, 2, rng.integers(0, 150, 300)].astype(float)
    T = np.r_[1e-4, 0.01, 0.5, rng.uniform(1e-3, 150, 300)]
    params = [(0.243, 4.414, 0.793, 2.426), (0.8, 5.2, 1.3, 13.0), (2.0, 0.3, 1.99, 40.0), (0.5, 3.0, 2.5, 8.0),
              (2.5, 0.3, 1.5, 0.5)]
    assert [_series_applies(a + b - 1 - r, a - 1, a + b - 1) for r, _, a, b in params] == [True] * 3 + [False] * 2
    for r, alpha, a, b in params:
        for t in (4.0, 13.0, 60.0):
            direct = _eq10(r, alpha, a, b, t, x, T)
            finite = np.isfinite(direct)  # the printed form overflows for large counts; the series does not
            got = BGNBD(r, alpha, a, b).expected_purchases(t, x, x * 0, T, np.ones_like(x))
            series = _series_applies(a + b - 1 - r, a - 1, a + b - 1)
            assert finite.mean() > 0.5 and (np.isfinite(got).all() or not series)
            np.testing.assert_allclose(got[finite], direct[finite], rtol=1e-9)
    assert (13.0 / (0.3 + T.min() + 13.0)) > 0.86  # some rows took the fallback inside a series fit


def _splitmix_over_padded_utf8(ids: list) -> np.ndarray:
    """The fit sample's id hash from its definition, one id at a time: UTF-8 bytes (trailing NULs dropped),
    zero-padded to a common width of max(8, the longest rounded up to 8), splitmix64's finaliser per 8-byte
    little-endian word."""
    raw = [str(i).encode().rstrip(b"\0") for i in ids]
    width = max(8, -(-max(map(len, raw)) // 8) * 8)
    mask, out = 2**64 - 1, []
    for data in raw:
        h = 0x9E3779B97F4A7C15
        padded = data.ljust(width, b"\0")
        for i in range(0, width, 8):
            z = h ^ int.from_bytes(padded[i:i + 8], "little")
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
            h = z ^ (z >> 31)
        out.append(h)
    return np.array(out, dtype=np.uint64)


def test_fit_sample_hash_is_the_same_from_arrow_buffers_python_strings_and_numbers():
    """The fit sample must not depend on how a column holds its ids (DuckDB's Arrow strings, Spark's Python
    strings, numbers): the hash read from Arrow buffers equals the definition's, for ids of one length (the
    reshape), of mixed lengths, non-ASCII, past 8 bytes and with NUL bytes (the str() path)."""
    from crmscore.features.btyd import _id_hash, _lowest

    mixed = ["C1", "C0000002", "customer-0000000003", "é", "日本の顧客", "", "a\x00", "b" + "\x00" * 9]
    one_length = [f"C{i:07d}" for i in range(40)]
    for ids in (mixed, one_length, mixed[:6]):
        for dtype in ("string[pyarrow]", "str", object):
            assert np.array_equal(_id_hash(pd.Series(ids, dtype=dtype)), _splitmix_over_padded_utf8(ids)), dtype
    assert np.array_equal(_id_hash(pd.Series([12, 345])), _splitmix_over_padded_utf8(["12", "345"]))
    keys = np.random.default_rng(1).integers(0, 40, 2000).astype(np.uint64)  # many ties at every boundary
    for size in (1, 37, 500, 1999, 2000, 5000):
        assert np.array_equal(_lowest(keys, size), np.sort(np.argsort(keys, kind="stable")[:size]))
