"""Buy-till-you-die features: BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma (Fader, Hardie & Lee
2005b) fitted on one snapshot's history, before its cutoff only.

Why our own ~100 lines and not a library: `lifetimes` (the BG/NBD baselines' dependency) is archived
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
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

log = logging.getLogger(__name__)

INPUT_COLUMNS = ("recency_days", "first_purchase_days", "frequency_total", "monetary_total")
PENALTY = 1e-3  # L2 on log-parameters: keeps a tiny or degenerate snapshot from running to infinity


def bgnbd_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """x (repeat orders), t_x and T (weeks) from the point-in-time features; rows without an order dropped."""
    known = frame["first_purchase_days"].notna() & (frame["frequency_total"] > 0)
    f = frame.loc[known]
    first = f["first_purchase_days"].to_numpy(float)
    last = f["recency_days"].to_numpy(float)
    return pd.DataFrame({"x": np.maximum(f["frequency_total"].to_numpy(float) - 1, 0),
                         "t_x": np.maximum(first - last, 0) / 7.0,
                         "T": np.maximum(first, 1e-3) / 7.0}, index=f.index)


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD parameters: purchase rate ~ Gamma(r, alpha) (alpha in weeks), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, T: np.ndarray,
                       w: np.ndarray) -> float:
        r, alpha, a, b = params
        ln_a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        ln_a2 = (special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b)
                 - special.gammaln(a + b + x))
        ln_a3 = -(r + x) * np.log(alpha + T)
        repeat = x > 0
        ln_a4 = np.where(repeat, np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0))
                         - (r + x) * np.log(alpha + t_x), -np.inf)
        ll = ln_a1 + ln_a2 + np.logaddexp(ln_a3, ln_a4)
        return float(np.dot(w, ll))

    @classmethod
    def fit(cls, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BGNBD:
        """Maximum likelihood over customers, identical histories counted once with a weight."""
        data = np.column_stack([x, t_x, T]).astype(float)
        uniq, counts = np.unique(data, axis=0, return_counts=True)
        ux, ut, uT, w = uniq[:, 0], uniq[:, 1], uniq[:, 2], counts.astype(float)
        n = w.sum()
        start = np.log([1.0, max(float(np.average(uT, weights=w)), 1e-3), 1.0, 1.0])

        def objective(log_params: np.ndarray) -> float:
            return -cls.log_likelihood(np.exp(log_params), ux, ut, uT, w) / n + PENALTY * np.sum(log_params ** 2) / n

        res = optimize.minimize(objective, start, method="L-BFGS-B", bounds=[(-12, 12)] * 4)
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

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Expected orders in the next t weeks given the history, eq. (10) of Fader, Hardie & Lee (2005)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
        first = (a + b + x - 1) / (a - 1) * (1 - np.exp((r + x) * np.log((alpha + T) / (alpha + T + t))) * hyp)
        return first * self.p_alive(x, t_x, T)


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma spend parameters (p, q, v): an order's value ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float

    @staticmethod
    def log_likelihood(params: np.ndarray, x: np.ndarray, m: np.ndarray) -> float:
        p, q, v = params
        px = p * x
        ll = (special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + q * np.log(v)
              + (px - 1) * np.log(m) + px * np.log(x) - (px + q) * np.log(x * m + v))
        return float(ll.sum())

    @classmethod
    def fit(cls, x: np.ndarray, m: np.ndarray) -> GammaGamma:
        """Maximum likelihood on customers with x >= 1 orders of mean value m > 0."""
        n = max(len(x), 1)

        def objective(log_params: np.ndarray) -> float:
            return -cls.log_likelihood(np.exp(log_params), x, m) / n + PENALTY * np.sum(log_params ** 2) / n

        res = optimize.minimize(objective, np.log([1.0, 2.0, max(float(np.mean(m)), 1e-3)]), method="L-BFGS-B",
                                bounds=[(-12, 12)] * 3)
        return cls(*map(float, np.exp(res.x)))

    def expected_order_value(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[value of the next order | x orders of mean m]: the population mean pulled toward m as x grows."""
        p, q, v = self.p, self.q, self.v
        return p * (v + x * m) / (p * x + q - 1)


def btyd_frame(features: pd.DataFrame, horizons_days: tuple[int, ...]) -> pd.DataFrame:
    """BTYD columns for every row of a point-in-time feature table (same index): expected orders in each
    horizon (`btyd_expected_orders_<h>d`), `btyd_p_alive` and `btyd_expected_order_value` (currency).

    Both models are fitted on this table's own customers, i.e. on the history before its cutoff only.
    Customers without an order, or every row when fewer than MIN_CUSTOMERS have one, get missing values.
    """
    names = [f"btyd_expected_orders_{h}d" for h in horizons_days] + ["btyd_p_alive", "btyd_expected_order_value"]
    out = pd.DataFrame(np.nan, index=features.index, columns=names)
    inp = bgnbd_inputs(features)
    if len(inp) < MIN_CUSTOMERS or (inp["x"] > 0).sum() < MIN_REPEAT:
        log.info("BTYD features left missing: %d customers with an order, %d with a repeat order", len(inp),
                 int((inp["x"] > 0).sum()))
        return out
    x, t_x, T = (inp[c].to_numpy(float) for c in ("x", "t_x", "T"))
    bg = BGNBD.fit(x, t_x, T)
    for h in horizons_days:
        out.loc[inp.index, f"btyd_expected_orders_{h}d"] = bg.expected_purchases(h / 7.0, x, t_x, T)
    out.loc[inp.index, "btyd_p_alive"] = bg.p_alive(x, t_x, T)
    orders = features.loc[inp.index, "frequency_total"].to_numpy(float)
    mean_value = features.loc[inp.index, "monetary_total"].to_numpy(float) / orders
    ok = mean_value > 0
    gg = GammaGamma.fit(orders[ok], mean_value[ok])
    out.loc[inp.index, "btyd_expected_order_value"] = gg.expected_order_value(orders, np.maximum(mean_value, 0))
    log.info("BTYD fitted on %d customers: BG/NBD %s, Gamma-Gamma %s", len(inp), bg, gg)
    return out


MIN_CUSTOMERS = 20
MIN_REPEAT = 5
