"""Honest baselines, scored on the same out-of-time test rows as the model.

Binary tasks: a score per test row where higher means more likely positive; ranking metrics (ROC-AUC,
PR-AUC, lift, capture) compare them with the model. Expected spend: an amount per test row (BG/NBD +
Gamma-Gamma, recent spend rate). Next category: an (n_rows, n_categories) score matrix (global
popularity, popularity within the customer's RFM segment, co-purchase rules, the customer's own history: spend
share, most bought, most recently bought).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from crmscore.models.copurchase import copurchase_scores, history_matrix
from crmscore.models.tasks import Baseline, BaselineInput

log = logging.getLogger(__name__)


def _recency(inp: BaselineInput) -> np.ndarray:
    return inp.test["recency_days"].fillna(1e9).to_numpy(float)


def _rfm(inp: BaselineInput) -> np.ndarray:
    return -(inp.test["rfm_r"] + inp.test["rfm_f"] + inp.test["rfm_m"]).to_numpy(float)


def _frequency(inp: BaselineInput) -> np.ndarray:
    col = "frequency_365d" if "frequency_365d" in inp.test else "frequency_total"
    return inp.test[col].to_numpy(float)


PENALIZERS = (0.001, 0.01, 0.1)


def _fit_penalized(fitter, *columns):  # noqa: ANN001, ANN202
    """Fit a lifetimes model with penalizer 0.001, and when it does not converge with 0.01, then 0.1
    (lifetimes' own advice), so a baseline is reported rather than lost."""
    from lifetimes.utils import ConvergenceError

    for i, penalizer in enumerate(PENALIZERS):
        model = fitter(penalizer_coef=penalizer)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # lifetimes prints the optimiser's state on failure
                return model.fit(*columns, maxiter=300)
        except ConvergenceError:
            if i == len(PENALIZERS) - 1:
                raise
            log.info("%s did not converge with penalizer %s; retrying with %s", fitter.__name__, penalizer,
                     PENALIZERS[i + 1])
    raise AssertionError("unreachable")


def bgnbd_summary(df: pd.DataFrame) -> pd.DataFrame:
    """BG/NBD inputs from the point-in-time features, in weeks: repeat orders, time from first to last
    order, and time from first order to the cutoff."""
    first = df["first_purchase_days"].to_numpy(float)
    last = df["recency_days"].to_numpy(float)
    return pd.DataFrame({
        "frequency": np.maximum(df["frequency_total"].to_numpy(float) - 1, 0),
        "recency": np.maximum(first - last, 0) / 7.0,
        "T": np.maximum(first, 1e-3) / 7.0,
    }, index=df.index)


def bgnbd_expected_purchases(fit_rows: pd.DataFrame, score_rows: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Expected orders in the next horizon_days from a BG/NBD model (lifetimes) fitted on fit_rows' history
    before their cutoff (no labels involved)."""
    from lifetimes import BetaGeoFitter

    fit = bgnbd_summary(fit_rows.dropna(subset=["first_purchase_days"]))
    score = bgnbd_summary(score_rows.fillna({"first_purchase_days": 0, "recency_days": 0}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bgf = _fit_penalized(BetaGeoFitter, fit["frequency"], fit["recency"], fit["T"])
        expected = bgf.conditional_expected_number_of_purchases_up_to_time(
            horizon_days / 7.0, score["frequency"], score["recency"], score["T"])
    log.info("BG/NBD fitted: %s", {k: round(float(v), 4) for k, v in bgf.params_.items()})
    return np.nan_to_num(np.asarray(expected, float), nan=0.0)


def _bgnbd_inactive(inp: BaselineInput) -> np.ndarray:
    # fitted on the test cutoff's own purchase history: BG/NBD is unsupervised, this uses nothing after it
    return -bgnbd_expected_purchases(inp.test, inp.test, inp.settings.horizon_days)


def _bgnbd_active(inp: BaselineInput) -> np.ndarray:
    return bgnbd_expected_purchases(inp.test, inp.test, inp.settings.horizon_days)


def _mean_order_value(df: pd.DataFrame) -> np.ndarray:
    orders = df["frequency_total"].to_numpy(float)
    return np.where(orders > 0, df["monetary_total"].to_numpy(float) / np.maximum(orders, 1), np.nan)


def gamma_gamma_spend(fit_rows: pd.DataFrame, score_rows: pd.DataFrame) -> np.ndarray:
    """Gamma-Gamma (lifetimes) expected spend per order: fitted on fit_rows' customers with a repeat order
    and a positive mean order value (history before their cutoff only); customers without a repeat
    order get the fitted population mean."""
    from lifetimes import GammaGammaFitter

    repeat = np.maximum(fit_rows["frequency_total"].to_numpy(float) - 1, 0)
    value = _mean_order_value(fit_rows)
    ok = (repeat > 0) & (value > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ggf = _fit_penalized(GammaGammaFitter, pd.Series(repeat[ok]), pd.Series(value[ok]))
        s_repeat = np.maximum(score_rows["frequency_total"].to_numpy(float) - 1, 0)
        s_value = np.nan_to_num(np.maximum(_mean_order_value(score_rows), 0), nan=0.0)
        expected = ggf.conditional_expected_average_profit(pd.Series(s_repeat), pd.Series(s_value)).to_numpy(float)
    log.info("Gamma-Gamma fitted: %s", {k: round(float(v), 4) for k, v in ggf.params_.items()})
    return expected


def _bgnbd_gamma_gamma(inp: BaselineInput) -> np.ndarray:
    # both models are unsupervised: fitted on the test cutoff's own history, nothing after it
    orders = bgnbd_expected_purchases(inp.test, inp.test, inp.settings.horizon_days)
    return orders * gamma_gamma_spend(inp.test, inp.test)


def _spend_rate(inp: BaselineInput) -> np.ndarray:
    return np.maximum(inp.test["monetary_90d"].to_numpy(float), 0) * inp.settings.horizon_days / 90.0


# -- next category: (n_rows, n_categories) scores -------------------------------------------------
def _targets(inp: BaselineInput) -> list[str]:
    return list(inp.settings.categories)  # type: ignore[attr-defined]  (resolved by the task's prepare step)


def _label_matrix(df: pd.DataFrame, targets: list[str]) -> np.ndarray:
    from crmscore.models.bundle import label_matrix

    return label_matrix(df, targets).to_numpy(float)


def _popularity(inp: BaselineInput) -> np.ndarray:
    rate = _label_matrix(inp.train, _targets(inp)).mean(0)
    return np.tile(rate, (len(inp.test), 1))


def copurchase_rules(train: pd.DataFrame, targets: list[str]) -> pd.DataFrame:
    """"Customers who bought A bought B within the horizon": for every pair of categories (A bought in
    the share window before a training cutoff, B bought in the horizon after it), support = P(A and B),
    confidence = P(B | A), lift = confidence / P(B), with the number of customers with A."""
    A = (history_matrix(train, targets) > 0).astype(float)
    Y = _label_matrix(train, targets)
    n = max(len(train), 1)
    both = A.T @ Y
    has_a = A.sum(0)
    rate_b = Y.mean(0)
    conf = np.divide(both, has_a[:, None], out=np.zeros_like(both), where=has_a[:, None] > 0)
    lift = np.divide(conf, rate_b[None, :], out=np.zeros_like(conf), where=rate_b[None, :] > 0)
    ia, ib = np.meshgrid(np.arange(len(targets)), np.arange(len(targets)), indexing="ij")
    return pd.DataFrame({"antecedent": np.asarray(targets, dtype=object)[ia.ravel()],
                         "consequent": np.asarray(targets, dtype=object)[ib.ravel()],
                         "customers_with_antecedent": has_a[ia.ravel()], "support": (both / n).ravel(),
                         "confidence": conf.ravel(), "lift": lift.ravel()})


def copurchase_confidence(train: pd.DataFrame, targets: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(k, k) confidence of each rule A -> B (0 for rules from fewer than 20 customers: noise) and each
    category's popularity (share of training rows buying it), from labelled training rows."""
    rules = copurchase_rules(train, targets)
    k = len(targets)
    conf = rules["confidence"].to_numpy().reshape(k, k)
    support_ok = rules["customers_with_antecedent"].to_numpy().reshape(k, k) >= 20
    return np.where(support_ok, conf, 0.0), _label_matrix(train, targets).mean(0)


def _copurchase(inp: BaselineInput) -> np.ndarray:
    targets = _targets(inp)
    return copurchase_scores(inp.test, targets, *copurchase_confidence(inp.train, targets))


def _history(inp: BaselineInput) -> np.ndarray:
    pop = _label_matrix(inp.train, _targets(inp)).mean(0)
    return history_matrix(inp.test, _targets(inp)) + 1e-6 * pop[None, :]


def _popularity_tiebreak(inp: BaselineInput) -> np.ndarray:
    """Global popularity, scaled to break ties only (a personal score of 0 falls back to it)."""
    return 1e-6 * _label_matrix(inp.train, _targets(inp)).mean(0)[None, :]


def _history_feature(df: pd.DataFrame, targets: list[str], name: Callable[[str], str], what: str) -> np.ndarray:
    cols = [name(t) for t in targets]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"feature columns {missing[:3]} are missing: the {what} baseline needs the per-category "
                         f"purchase history (tasks.next-category.history_windows must not be [])")
    return df[cols].to_numpy(float)


def _most_bought(inp: BaselineInput) -> np.ndarray:
    """Orders with each category over the feature set's longest window (personal purchase frequency, the
    baseline next-basket studies find hardest to beat); the more recent breaks ties, then popularity."""
    from crmscore.features.definitions import category_orders_name, slug

    targets = _targets(inp)
    longest = max(int(c.removeprefix("frequency_").removesuffix("d")) for c in inp.test.columns
                  if c.startswith("frequency_") and c.endswith("d") and c[10:-1].isdigit())
    orders = np.nan_to_num(_history_feature(inp.test, targets, lambda t: category_orders_name(t, longest),
                                            "most-bought"))
    recency = _history_feature(inp.test, targets, lambda t: f"category_recency_{slug(t)}", "most-bought")
    return orders + 1e-3 / (1.0 + np.nan_to_num(recency, nan=1e6)) + _popularity_tiebreak(inp)


def _most_recent(inp: BaselineInput) -> np.ndarray:
    """Fewest days since each category was last bought first (never bought: last), popularity breaking ties."""
    from crmscore.features.definitions import slug

    recency = _history_feature(inp.test, _targets(inp), lambda t: f"category_recency_{slug(t)}", "most-recent")
    return 1.0 / (1.0 + np.nan_to_num(recency, nan=np.inf)) + _popularity_tiebreak(inp)


def _segment_popularity(inp: BaselineInput) -> np.ndarray:
    """Share of the training customers of the same RFM segment buying each category (at their cutoff); global
    popularity for a segment with fewer than 50 training rows (or none)."""
    targets = _targets(inp)
    Y = pd.DataFrame(_label_matrix(inp.train, targets))
    seg_train = inp.train["rfm_segment"].astype("string").fillna("none").to_numpy()
    rates = Y.groupby(seg_train).mean()
    counts = Y.groupby(seg_train).size()
    rates = rates[counts.reindex(rates.index) >= 50]
    pop = Y.mean(0).to_numpy()
    seg_test = pd.Series(inp.test["rfm_segment"].astype("string").fillna("none").to_numpy())
    out = rates.reindex(seg_test).to_numpy()
    return np.where(np.isnan(out), pop[None, :], out) + 1e-6 * pop[None, :]


def _logistic(inp: BaselineInput) -> np.ndarray:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cats = [c for c in inp.features if c in inp.categorical]
    nums = [c for c in inp.features if c not in inp.categorical]
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), nums),
        ("cat", make_pipeline(SimpleImputer(strategy="most_frequent"),
                              OneHotEncoder(handle_unknown="ignore")), cats),
    ])
    model = make_pipeline(pre, LogisticRegression(max_iter=2000, C=1.0))

    def prep(df: pd.DataFrame) -> pd.DataFrame:
        out = df[inp.features].copy()
        for c in cats:
            out[c] = out[c].astype("string").astype(object).where(out[c].notna(), np.nan)
        return out

    model.fit(prep(inp.train), inp.train["label"].to_numpy())
    return model.predict_proba(prep(inp.test))[:, 1]


RECENCY = Baseline("recency", "days since the last purchase (longer = more likely)", _recency)
RFM = Baseline("rfm", "RFM score R+F+M (lower = more likely)", _rfm)
FREQUENCY = Baseline("frequency", "orders in the last 365 days (more = more likely)", _frequency)
BGNBD_INACTIVE = Baseline("bgnbd", "BG/NBD expected purchases over the horizon (fewer = more likely)",
                          _bgnbd_inactive)
BGNBD_ACTIVE = Baseline("bgnbd", "BG/NBD expected purchases over the horizon (more = more likely)", _bgnbd_active)
RECENCY_ACTIVE = Baseline("recency", "days since the last purchase (shorter = more likely)",
                          lambda inp: -_recency(inp))
LOGISTIC = Baseline("logistic", "logistic regression on the same features (one-hot categories)", _logistic)
BGNBD_GAMMA_GAMMA = Baseline("bgnbd_gamma_gamma", "BG/NBD expected orders x Gamma-Gamma expected spend per order",
                             _bgnbd_gamma_gamma)
SPEND_RATE = Baseline("spend_rate", "spend in the last 90 days, scaled to the horizon", _spend_rate)
POPULARITY = Baseline("popularity", "the same ranking for everyone: share of customers buying each category",
                      _popularity)
COPURCHASE = Baseline("copurchase", "co-purchase rules: highest confidence of 'bought A, then bought B within the "
                      "horizon' over the customer's categories", _copurchase)
HISTORY = Baseline("history", "the customer's own share of spend per category in the last 365 days", _history)
MOST_BOUGHT = Baseline("most_bought", "the customer's own categories by orders with them in the longest window "
                       "(personal purchase frequency), the most recent first on ties", _most_bought)
MOST_RECENT = Baseline("most_recent", "the customer's own categories, the most recently bought first", _most_recent)
SEGMENT_POPULARITY = Baseline("segment_popularity", "share of customers in the same RFM segment buying each "
                              "category", _segment_popularity)
