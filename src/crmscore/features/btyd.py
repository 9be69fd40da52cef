"""Buy-till-you-die features: BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma (Fader, Hardie & Lee
2005b) fitted on one snapshot's history, before its cutoff only.

Why our own ~150 lines and not a library: `lifetimes` (the BG/NBD baselines' dependency) is archived
and rebinds methods inside `fit`; `pymc-marketing` is maintained but brings PyMC and PyTensor (a compiler
and hundreds of MB) to fit four numbers, and its default fit is MCMC. The models are closed-form: the
log-likelihoods and conditional expectations below are the papers' equations, fitted by maximum
likelihood with scipy. tests/test_btyd.py checks them against lifetimes on the published CDNOW
parameters and on a fit of the same data.

Inputs per customer, from the point-in-time features (so nothing after the cutoff can enter):
x = repeat orders (frequency_total - 1), t_x = weeks from the first to the last order, T = weeks from
the first order to the cutoff, m = mean order value (currency). Customers without an order get missing
values (LightGBM treats them as missing, not as zero).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import optimize, special
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("recency_days", "first_purchase_days", "frequency_total", "monetary_total")
PENALTY = 1e-3  # L2 on log-parameters: keeps a tiny or degenerate snapshot from running to infinity
MIN_CUSTOMERS = 20  # fewer customers with an order (or MIN_REPEAT with a repeat order): no fit, missing values
MIN_REPEAT = 5
FIT_SAMPLE = 50_000  # buyers the four (and three) parameters are fitted on when a base has more; see fit_sample


def _buyer_inputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The BG/NBD inputs of the customers with an order, from the point-in-time features: their row positions in
    `frame`, their orders (frequency_total), then x (repeat orders), t_x and T (weeks). Column by column from
    numpy, in place where it reads the same: selecting the buyers' rows of the frame copied four columns through
    pandas' indexing, each label was looked up again to find its position, and every fresh million-row array
    costs page faults as well as its arithmetic."""
    first_all = frame["first_purchase_days"].to_numpy(float)
    orders_all = frame["frequency_total"].to_numpy(float)
    at = np.flatnonzero(~np.isnan(first_all) & (orders_all > 0))
    orders, first, t_x = orders_all[at], first_all[at], frame["recency_days"].to_numpy(float)[at]
    x = orders - 1
    np.maximum(x, 0, out=x)
    np.subtract(first, t_x, out=t_x)  # days from the first to the last order
    np.maximum(t_x, 0, out=t_x)
    t_x /= 7.0
    T = np.maximum(first, 1e-3, out=first)
    T /= 7.0
    return at, orders, x, t_x, T


def _levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x's distinct values (sorted) and each row's index into them."""
    return np.unique(x, return_inverse=True)


def _unique_rows(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(data, axis=0, return_counts=True) of a float matrix without NaN, the same rows in the same
    (lexicographic) order and counts, by a lexsort of the columns: np.unique sorts the rows as structured
    records, about 3x slower (0.59M near-distinct histories of a million customers: 9.6 s against 3.5 s at load
    average 20; the fitted features are identical)."""
    if len(data) == 0:
        return data.reshape(0, data.shape[1]), np.zeros(0, dtype=np.intp)
    order = np.lexsort(data.T[::-1])
    rows = data[order]
    starts = np.flatnonzero(np.r_[True, np.any(rows[1:] != rows[:-1], axis=1)])
    return rows[starts], np.diff(np.r_[starts, len(rows)])


def _weighted_sum(w: np.ndarray, values: np.ndarray) -> float:
    """sum(w * values), elementwise: `w @ values` goes to BLAS, whose threads spin against the DuckDB threads
    and other processes on a busy 2-core machine (7.5 ms against 0.06 ms for 50,000 rows at load average 7)."""
    return float(np.sum(w * values))


def _minimize(objective: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray
              ) -> optimize.OptimizeResult:
    """L-BFGS-B on log-parameters bounded to [-12, 12], with the BLAS limited to one thread while it runs.

    Why the limit: scipy's L-BFGS-B solves its few-by-few systems through LAPACK, and OpenBLAS wakes its
    threads for each of them; on a busy 2-core machine every call of the optimiser then cost ~3 ms instead of
    microseconds, about two thirds of the BG/NBD fit at 1M customers (270 against 90 ms CPU). The arithmetic is
    the same on one thread: the fitted parameters are identical."""
    with threadpool_limits(limits=1, user_api="blas"):
        return optimize.minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[(-12, 12)] * len(start))


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD parameters: purchase rate ~ Gamma(r, alpha) (alpha in weeks), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
                       w: np.ndarray, levels: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, np.ndarray]:
        """The weighted log-likelihood (eq. 6 of the paper) and its gradient in (r, alpha, a, b). levels: x's
        distinct values and each row's index into them (_levels(x)), computed once by fit for all iterations."""
        r, alpha, a, b = params
        repeat = x > 0
        xs, at = levels if levels is not None else _levels(x)  # orders are counts: special functions once per count
        # Every term that depends on x alone is computed per count and then gathered ([at]): the same operations
        # in the same order for each element, so the same bits as computing it row by row, at a fraction of the
        # cost; log(alpha + T) and log(alpha + t_x) are taken once for the likelihood and the gradient.
        ln_a12 = ((special.gammaln(r + xs) - special.gammaln(r)) + r * np.log(alpha)
                  + (special.gammaln(a + b) + special.gammaln(b + xs) - special.gammaln(b)
                     - special.gammaln(a + b + xs)))[at]
        b_x1 = np.where(xs > 0, b + xs - 1, 1.0)
        ln_T, ln_tx = np.log(alpha + T), np.log(alpha + t_x)
        r_x = r + x
        ln_a3 = -r_x * ln_T
        ln_a4 = np.where(repeat, (np.log(a) - np.log(b_x1))[at] - r_x * ln_tx, -np.inf)
        mix = np.logaddexp(ln_a3, ln_a4)
        w3, w4 = np.exp(ln_a3 - mix), np.exp(ln_a4 - mix)  # shares of "alive at T" and "dropped after t_x"
        dig_ab, dig_abx = special.digamma(a + b), special.digamma(a + b + xs)
        grad = np.array([
            _weighted_sum(w, (special.digamma(r + xs) - special.digamma(r) + np.log(alpha))[at]
                          - w3 * ln_T - w4 * ln_tx),
            _weighted_sum(w, r / alpha - w3 * r_x / (alpha + T) - w4 * r_x / (alpha + t_x)),
            _weighted_sum(w, (dig_ab - dig_abx)[at] + w4 / a),
            _weighted_sum(w, (dig_ab + special.digamma(b + xs) - special.digamma(b) - dig_abx)[at]
                          - w4 / b_x1[at]),  # w4 is 0 without a repeat order
        ])
        return _weighted_sum(w, ln_a12 + mix), grad

    @classmethod
    def fit(cls, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BGNBD:
        """Maximum likelihood over customers, identical histories counted once with a weight."""
        data = np.column_stack([x, t_x, T]).astype(float)
        uniq, counts = _unique_rows(data)
        ux, ut, uT = (np.ascontiguousarray(uniq[:, i]) for i in range(3))
        w = counts.astype(float)
        n = w.sum()
        start = np.log([1.0, max(float(np.average(uT, weights=w)), 1e-3), 1.0, 1.0])
        levels = _levels(ux)

        def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            params = np.exp(log_params)
            ll, grad = cls.log_likelihood(params, ux, ut, uT, w, levels)
            return (-ll + PENALTY * np.sum(log_params ** 2)) / n, (-grad * params + 2 * PENALTY * log_params) / n

        res = _minimize(objective, start)
        if not np.all(np.isfinite(res.x)):
            raise ValueError(f"BG/NBD fit failed: {res.message}")
        return cls(*map(float, np.exp(res.x)))

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still active at the cutoff), eq. (13) of Fader, Hardie & Lee (2005): 1 without a repeat order."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        repeat = x > 0
        ratio = np.where(repeat, a / np.where(repeat, b + x - 1, 1.0), 0.0) * np.exp(
            (r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
        return 1.0 / (1.0 + ratio)

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
                           p_alive: np.ndarray | None = None) -> np.ndarray:
        """Expected orders in the next t weeks given the history, eq. (10) of Fader, Hardie & Lee (2005).
        p_alive: self.p_alive(x, t_x, T) when the caller has it already (several horizons).

        Eq. (10) is (a+b+x-1)/(a-1) * (1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)) with
        z = t/(alpha+T+t). Euler's transformation 2F1(a', b'; c'; z) = (1-z)^(c'-a'-b') 2F1(c'-a', c'-b'; c'; z)
        turns the bracket into 1 - (1-z)^(a-1) G with G = 2F1(a+b-1-r, a-1; a+b+x-1; z), whose series shrinks
        fast where the original one grows with x; _hyp2f1_minus_1 sums G - 1 without forming G, so the bracket
        has no cancellation either. Why: scipy's hyp2f1 on the original arguments was half the cost of the BTYD
        features at 1M customers (2 horizons: 200 ms CPU against 80 now), and it was the less accurate: against
        mpmath at 40 digits, relative errors up to 1.6e-12 against 5e-15 now; the values moved by at most that,
        1.6e-12 relative (README, "BTYD cost"). Parameters outside the series' domain (see
        _hyp2f1_minus_1) keep scipy's hyp2f1 on the original arguments."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
        alive = self.p_alive(x, t_x, T) if p_alive is None else p_alive
        z = t / (alpha + T + t)
        counts = _counts(x)
        if counts is None or np.shape(z) != counts.shape or not _series_applies(a + b - 1 - r, a - 1, a + b - 1):
            hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
            first = (a + b + x - 1) / (a - 1) * (1 - np.exp((r + x) * np.log((alpha + T) / (alpha + T + t))) * hyp)
            return first * alive
        # (a+b+x-1)/(a-1) * (-shrink - (1 + shrink) (G - 1)) * alive with shrink = (1-z)^(a-1) - 1, in place: at
        # a million customers each fresh array also costs page faults (system time, as much as the arithmetic)
        shrink = np.negative(z)
        np.expm1(np.multiply(np.log1p(shrink, out=shrink), a - 1, out=shrink), out=shrink)
        g_minus_1 = _hyp2f1_minus_1(a + b - 1 - r, a - 1, a + b - 1, counts, z)
        g_minus_1 *= shrink + 1
        np.negative(shrink, out=shrink)
        shrink -= g_minus_1
        out = x + (a + b)
        out -= 1
        out /= a - 1
        out *= shrink
        out *= alive
        return out


def _counts(x: np.ndarray) -> np.ndarray | None:
    """x as integer indices when it is a non-empty vector of whole numbers from 0 to MAX_COUNT (repeat orders),
    else None."""
    if x.ndim != 1 or len(x) == 0 or not (np.min(x) >= 0 and np.max(x) <= MAX_COUNT):  # NaN fails both
        return None
    counts = x.astype(np.intp)
    return counts if np.array_equal(counts, x) else None


MAX_COUNT = 5_000  # repeat orders: the series' coefficient table has a column per count up to the largest (<= 10 MB)
SERIES_TERMS = np.array([*range(4, 41, 2), 48, 56, 64, 80, 96, 128, 160, 192, 256])  # term counts a row may use
SERIES_TAIL = 2.0 ** -54  # the neglected tail of the series, relative to the sum (a quarter of an ulp)
SERIES_BLOCK = 16_384  # rows per pass: the running sums and their inputs stay in the L2 cache


def _z_limit(terms: int) -> float:
    """The largest z whose tail after `terms` terms is within SERIES_TAIL: z^terms / (1 - z) <= SERIES_TAIL."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid ** terms / (1 - mid) <= SERIES_TAIL else (lo, mid)
    return lo


_Z_LIMITS = np.array([_z_limit(int(k)) for k in SERIES_TERMS])
_Z_GRID = 4096  # z's class from a table over [i/4096, (i+1)/4096), taken at the cell's upper end (never fewer terms)
_Z_GRID_CLASS = np.searchsorted(_Z_LIMITS, (np.arange(_Z_GRID) + 1) / _Z_GRID).astype(np.uint8)


def _series_applies(A: float, B: float, C0: float) -> bool:
    """Whether every term of 2F1(A, B; C0 + x; z) after the first is at most z times the previous one, with the
    same sign, for every count x >= 0: A >= 0, -1 < B <= 1 and C0 > A (for BG/NBD: a <= 2 and a + b >= 1 + r)."""
    return A >= 0 and -1 < B <= 1 and C0 > A


def _hyp2f1_minus_1(A: float, B: float, C0: float, counts: np.ndarray, z: np.ndarray) -> np.ndarray:
    """2F1(A, B; C0 + counts; z) - 1 for integer counts >= 0 and 0 <= z < 1, where _series_applies(A, B, C0).

    The Gauss series sum_k (A)_k (B)_k / ((C0+x)_k k!) z^k, from k = 1. Where _series_applies, each term is at
    most z times the one before, all of one sign, so the tail after K terms is at most z^K / (1 - z) of the sum:
    each row gets the fewest terms of SERIES_TERMS that bring it under SERIES_TAIL (rows grouped by that count,
    most need 10 to 20). The coefficients depend on the count only: a table per count, evaluated by Horner's
    rule a block of rows at a time. Rows whose z needs more than 256 terms (z > 0.86) take scipy's hyp2f1."""
    out = np.empty(len(z))
    classes = np.take(_Z_GRID_CLASS, (z * _Z_GRID).astype(np.intp), mode="clip")
    order = np.argsort(classes, kind="stable")  # radix sort of small integers
    ends = np.cumsum(np.bincount(classes, minlength=len(SERIES_TERMS) + 1))[:len(SERIES_TERMS)]
    if ends[-1]:
        z_sorted, counts_sorted = z[order[:ends[-1]]], counts[order[:ends[-1]]]
        c = C0 + np.arange(int(counts_sorted.max()) + 1, dtype=float)
        most = int(SERIES_TERMS[np.flatnonzero(np.diff(np.r_[0, ends]))[-1]])
        coef = np.empty((most + 1, len(c)))  # coef[k, x]: the k-th coefficient for count x
        coef[1] = A * B / c
        for k in range(1, most):
            coef[k + 1] = coef[k] * ((A + k) * (B + k) / (k + 1)) / (c + k)
        sums, scratch = np.empty(ends[-1]), np.empty(SERIES_BLOCK)
        for terms, start, end in zip(SERIES_TERMS, np.r_[0, ends[:-1]], ends):
            for lo in range(start, end, SERIES_BLOCK):
                hi = min(lo + SERIES_BLOCK, end)
                zz, xx, acc, tmp = z_sorted[lo:hi], counts_sorted[lo:hi], sums[lo:hi], scratch[:hi - lo]
                np.take(coef[terms], xx, out=acc, mode="clip")  # indices are in range; "clip" skips a copy
                for k in range(terms - 1, 0, -1):
                    acc *= zz
                    acc += np.take(coef[k], xx, out=tmp, mode="clip")
                acc *= zz
        out[order[:ends[-1]]] = sums
    rest = order[ends[-1]:]
    out[rest] = special.hyp2f1(A, B, C0 + counts[rest], z[rest]) - 1
    return out


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma spend parameters (p, q, v): an order's value ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray,
                       levels: tuple[np.ndarray, np.ndarray] | None = None,
                       constants: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[float, np.ndarray]:
        """The log-likelihood of x orders of mean value m and its gradient in (p, q, v) (levels: as BGNBD's;
        constants: (log m, x m), which do not depend on the parameters, computed once by fit)."""
        p, q, v = params
        xs, at = levels if levels is not None else _levels(x)  # orders are counts: special functions once per count
        ln_m, xm = constants if constants is not None else (np.log(m), x * m)
        # as in BGNBD.log_likelihood: terms of x alone per count, then gathered (the same bits as row by row)
        ln_xs = np.log(xs)
        px = p * x
        xmv = xm + v
        ln_xmv = np.log(xmv)
        ll = ((special.gammaln(p * xs + q) - special.gammaln(p * xs) - special.gammaln(q) + q * np.log(v))[at]
              + (px - 1) * ln_m + (p * xs * ln_xs)[at] - (px + q) * ln_xmv)
        dig = special.digamma(p * xs + q)
        grad = np.array([
            np.sum(x * ((dig - special.digamma(p * xs))[at] + ln_m + ln_xs[at] - ln_xmv)),
            np.sum((dig - special.digamma(q) + np.log(v))[at] - ln_xmv),
            np.sum(q / v - (px + q) / xmv),
        ])
        return float(ll.sum()), grad

    @classmethod
    def fit(cls, x: np.ndarray, m: np.ndarray) -> GammaGamma:
        """Maximum likelihood on customers with x >= 1 orders of mean value m > 0."""
        n = max(len(x), 1)
        levels = _levels(x)
        constants = (np.log(m), x * m)

        def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
            params = np.exp(log_params)
            ll, grad = cls.log_likelihood(params, x, m, levels, constants)
            return (-ll + PENALTY * np.sum(log_params ** 2)) / n, (-grad * params + 2 * PENALTY * log_params) / n

        res = _minimize(objective, np.log([1.0, 2.0, max(float(np.mean(m)), 1e-3)]))
        return cls(*map(float, np.exp(res.x)))

    def expected_order_value(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[value of the next order | x orders of mean m]: the population mean pulled toward m as x grows."""
        p, q, v = self.p, self.q, self.v
        return p * (v + x * m) / (p * x + q - 1)


def _utf8_matrix(ids: pd.Series) -> np.ndarray:
    """Each id's UTF-8 bytes as a row of a uint8 matrix, zero-padded to a common width: max(8, the longest id
    rounded up to a multiple of 8 bytes). Read from the Arrow buffers when the ids are strings without nulls or
    NUL bytes (a million ids: ~5 ms); any other column goes through Python's str(), as the first version of
    _id_hash did (~150 ms; numpy's bytes dtype there drops trailing NULs, which this path keeps exact)."""
    try:
        arr = pa.array(ids, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        arr = None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr is not None and not arr.null_count and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())  # one offset type (int64) to read
        _, offsets_buf, data_buf = arr.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0]:offsets[-1]] if len(arr) else np.zeros(0, np.uint8)
        if not (data == 0).any():
            lengths = np.diff(offsets)
            longest = int(lengths.max()) if len(arr) else 0
            out = np.zeros((len(arr), max(8, -(-longest // 8) * 8)), dtype=np.uint8)
            if longest == int(lengths.min() if len(arr) else 0):  # ids of one length (the usual case): a reshape
                out[:, :longest] = data.reshape(len(arr), longest)
            else:
                out[np.arange(out.shape[1]) < lengths[:, None]] = data  # row by row, in the buffer's order
            return out
    raw = np.array([str(x).encode() for x in ids], dtype=bytes)
    width = max(8, -(-raw.dtype.itemsize // 8) * 8)
    return np.frombuffer(raw.astype(f"S{width}").tobytes(), dtype=np.uint8).reshape(len(raw), width)


def _id_hash(ids: pd.Series) -> np.ndarray:
    """A 64-bit hash of each id's UTF-8 bytes (splitmix64's finaliser over 8-byte words, the bytes zero-padded to
    a common width: _utf8_matrix), vectorised: the same on every engine and in every process (Python's hash() is
    salted), unrelated to how ids are numbered, and about 5x cheaper than pandas' hash_pandas_object on Arrow
    strings."""
    words = _utf8_matrix(ids).view("<u8")
    h = np.full(len(words), 0x9E3779B97F4A7C15, dtype=np.uint64)
    for word in words.T:  # uint64 arithmetic wraps, as the finaliser intends
        z = h ^ word
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = z ^ (z >> np.uint64(31))
    return h


def _lowest(keys: np.ndarray, size: int) -> np.ndarray:
    """Positions (ascending) of the `size` lowest keys, ties at the boundary broken by position: the same set as
    np.argsort(keys, kind="stable")[:size], by a partition instead of a full sort (a million keys: 8 against
    65 ms)."""
    if len(keys) <= size:
        return np.arange(len(keys))
    boundary = np.partition(keys, size - 1)[size - 1]
    chosen = keys < boundary
    ties = np.flatnonzero(keys == boundary)
    chosen[ties[:size - int(chosen.sum())]] = True
    return np.flatnonzero(chosen)


def fit_sample(features: pd.DataFrame, buyers: np.ndarray, size: int = FIT_SAMPLE) -> np.ndarray:
    """Positions (into `buyers`, the buyers' row positions in `features`; ascending) of the buyers the models are
    fitted on: all of them up to `size`, else the `size` buyers whose customer_id hashes lowest (_id_hash; row
    positions drawn with a fixed seed when the table has no customer_id).

    Why a sample is sound: the fit estimates four population parameters (three for Gamma-Gamma) by maximum
    likelihood; their standard error shrinks as 1/sqrt(n), so past some tens of thousands of buyers more rows
    move them less than the features' own noise, while the fit's cost grows with n. Every buyer still gets
    their own features from their own history; only the shared parameters come from the sample (measured at
    1M customers: see the README, "BTYD fit"). Why by a hash of the id: the same customers are chosen whatever
    the row order (DuckDB sorts its table, Spark collects it unordered), so both engines fit the same sample,
    and a customer's membership does not change between snapshots."""
    n = len(buyers)
    if n <= size:
        return np.arange(n)
    if "customer_id" in features.columns:
        # equal hashes of distinct ids: ~1e-8 odds at 1M, then row order
        return _lowest(_id_hash(features["customer_id"].take(buyers)), size)
    return np.sort(np.random.default_rng(0).permutation(n)[:size])


def btyd_frame(features: pd.DataFrame, horizons_days: tuple[int, ...], sample_size: int = FIT_SAMPLE
               ) -> pd.DataFrame:
    """BTYD columns for every row of a point-in-time feature table (same index): expected orders in each
    horizon (`btyd_expected_orders_<h>d`), `btyd_p_alive` and `btyd_expected_order_value` (currency).

    Both models are fitted on this table's own customers, i.e. on the history before its cutoff only: on every
    buyer up to `sample_size` of them, else on a fixed, deterministic sample of that size (fit_sample).
    Customers without an order, or every row when fewer than MIN_CUSTOMERS have one, get missing values.
    """
    names = [f"btyd_expected_orders_{h}d" for h in horizons_days] + ["btyd_p_alive", "btyd_expected_order_value"]
    # plain arrays filled by position, one frame at the end: `out.loc[index, column] = ...` looked every buyer's
    # label up again for each column (a fifth of this function's time at 1M customers)
    columns = {name: np.full(len(features), np.nan) for name in names}

    def frame() -> pd.DataFrame:
        return pd.DataFrame(columns, index=features.index, copy=False)

    at, orders, x, t_x, T = _buyer_inputs(features)  # at: the buyers' row positions
    if len(at) < MIN_CUSTOMERS or (x > 0).sum() < MIN_REPEAT:
        log.info("BTYD features left missing: %d customers with an order, %d with a repeat order", len(at),
                 int((x > 0).sum()))
        return frame()
    fit = fit_sample(features, at, sample_size)
    bg = BGNBD.fit(x[fit], t_x[fit], T[fit])
    alive = bg.p_alive(x, t_x, T)
    for h in horizons_days:
        columns[f"btyd_expected_orders_{h}d"][at] = bg.expected_purchases(h / 7.0, x, t_x, T, alive)
    columns["btyd_p_alive"][at] = alive
    mean_value = features["monetary_total"].to_numpy(float)[at] / orders
    ok = np.zeros(len(at), dtype=bool)
    ok[fit] = True
    ok &= mean_value > 0
    gg = GammaGamma.fit(orders[ok], mean_value[ok])
    columns["btyd_expected_order_value"][at] = gg.expected_order_value(orders, np.maximum(mean_value, 0))
    log.info("BTYD fitted on %d of %d customers with an order: BG/NBD %s, Gamma-Gamma %s", len(fit), len(at),
             bg, gg)
    return frame()

