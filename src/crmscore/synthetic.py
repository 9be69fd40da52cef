"""Deterministic synthetic CRM data with known, documented behavioural drivers.

``generate(customers, seed, start, end)`` returns a :class:`SyntheticData` bundle
(transactions, products, customers, events and a ground-truth table). The same
``(customers, seed, start, end)`` always gives identical frames. All timestamps
are naive local wall-clock ``datetime64[us]`` at one-second resolution; money is
in an unnamed currency unit with 2 decimals. ``end`` is exclusive: every
transaction and event lies in ``[start, end)``.

Behavioural drivers
-------------------
The numbers below are the module constants (``BASE_RATE_MEAN_PER_30D``,
``DECLINE_DAYS`` ...), so this text is the specification of the generator.
Percentages marked "~" are measured outcomes for the default window.

1. **Purchase rate.** Each customer has a base rate of orders per 30 days,
   ``base_rate_per_30d ~ Gamma(shape=1.2, mean=0.59)`` (same for both
   segments), i.e. heavily heterogeneous: a few heavy buyers and many
   occasional ones. Signup times are uniform on
   ``[start - 365 days, end - 30 days)``; customers who signed up before
   ``start`` are active from ``start``. Orders are a (thinned) Poisson process
   with intensity ``base_rate_per_30d / 30`` per day times the weekday weight
   (driver 7, mean 1) times the churn factor (driver 2), between
   ``max(signup, start)`` and ``min(churn, end)``. Each order has
   ``1 + Poisson(1.0)`` lines (mean 2.0) for ``other`` and
   ``1 + Poisson(1.1)`` lines (mean 2.1) for ``young_family``. The rate is
   tuned so that the default two-year window gives on average ~5 purchase
   orders and ~10 lines (refunds included) per customer, i.e. ~10M lines for
   1M customers (mean active time inside the window is only ~280 days because
   of late signups and churn).
2. **Churn with lengthening gaps.** Lifetime ~ ``Exponential(mean=450 days)``
   (~15 months) counted from ``max(signup, start)`` (memoryless, so customers
   who signed up earlier are simply still active at ``start``):
   ``churn = max(signup, start) + lifetime``; ~38% of customers do not churn
   before ``end``. In the 120 days before churn the purchase intensity falls
   linearly from 100% to 20% of base (60% on average, so inter-purchase gaps
   are ~1.7x longer), and from the churn instant on there are no transactions
   (refunds included) and no events. ``truth.churn_date`` is the churn instant,
   or NaT if it is at/after ``end``. Note: a customer whose churn falls within
   120 days after ``end`` already shows the decline at the end of the window
   while its ``churn_date`` is NaT.
3. **Category affinities.** Each customer has an affinity vector over
   :data:`CATEGORIES` drawn from ``Dirichlet(5 x segment_profile)`` (profiles
   in ``SEGMENT_PROFILES``), so customers differ strongly (e.g. most customers
   have almost no pet share, a few a large one). Each order line's category is
   drawn independently from the customer's affinity, so past category shares
   predict future ones. ``truth.top_affinity_category`` is the arg-max and
   ``truth.affinity_<category>`` the vector (rows sum to 1). For customers
   with >= 10 lines the most-bought category equals ``top_affinity_category``
   for ~60% of customers.
4. **Cross-sell pairs.** For each ``(A, B, delay_days)`` in
   :data:`CROSS_SELL_PAIRS` (``pet_food -> pet_care`` after 30 days,
   ``baby -> kids`` after 60, ``beverages -> snacks`` after 14; applied in that
   order, the pairs use disjoint categories): after the customer's first line
   of category ``A``, every line of that customer dated more than
   ``delay_days`` later (whatever its drawn category) is switched to category
   ``B`` with probability 0.25. So ``B`` follows ``A`` with a known delay;
   e.g. pet_care is ~1.5% of lines of pet_food buyers before and ~22% after.
5. **Latent segment** ``young_family`` (12% of customers; only in ``truth``,
   never in ``customers``): category profile with much higher ``baby``/``kids``
   share (~31% of lines and ~55% of spend vs ~3.5% and ~8% for ``other``,
   cross-sell included); weekend-heavy weekday weights (Saturday + Sunday ~56%
   of orders vs ~29%); more morning shopping; ~1.4x higher mean order value
   (slightly more lines per order, pricier baby/kids items); channel profile
   store/online/app 0.40/0.20/0.40 vs 0.72/0.18/0.10 for ``other`` (hence
   ~3x the app visits); more coupon use; age band skewed to 25-44; email
   opt-in 0.65 vs 0.55. Everyone else is ``other``.
6. **Amounts.** Each product has a fixed unit price = category median price
   (``CATEGORY_MEDIAN_PRICE``, e.g. produce 2.5, dairy 3, meat 9, wine 13,
   baby 14 currency units) x ``LogNormal(0, 0.4)``, rounded to cents (min
   0.50); quantity is 1/2/3 with probabilities 0.70/0.20/0.10;
   ``amount = round(unit_price * quantity, 2)``. ~1.5% of lines are refunds:
   a copy of one of the customer's earlier lines (same product, quantity,
   channel and store) with negated amount, dated 1-21 days after the original
   (dropped if that would be at/after churn or ``end``), each refund line in
   its own order.
7. **Time of day / week.** Hours are mostly 8-21 (~96% of orders) with an
   evening peak at 17-19; ``young_family`` also peaks at 9-11. Weekday weights
   Mon..Sun (mean 1): ``other`` 0.95, 0.90, 0.95, 1.00, 1.15, 1.20, 0.85;
   ``young_family`` 0.60, 0.60, 0.60, 0.60, 0.70, 2.20, 1.70.
8. **Events.** One more Poisson process per customer with the same window and
   churn decline as orders (none before signup, after churn or outside
   ``[start, end)``) and per-day intensity ``base_rate_per_30d / 30`` times:
   ``app_visit`` ``0.3 + 7 x p_app`` (``p_app`` = the customer's app-channel
   probability, so ~3 visits per order for app-leaning customers and ~1
   otherwise); ``email_click`` 0.4 if ``email_opt_in`` else 0 (so none for
   opted-out customers); ``coupon_use`` 0.25 (``young_family`` 0.40). Event
   hours follow the segment's hour profile; there is no weekday pattern.
9. **Customers table.** ``signup_ts``; ``region`` one of ``REGIONS`` (north,
   south, east, west, central); ``age_band`` in ``AGE_BANDS``
   ('18-24' .. '65+', ``young_family`` ~82% in 25-44); ``email_opt_in``.
10. **Stores.** 50 stores ``S01``..``S50``, 10 per region. Each customer has a
    home store in their region; store-channel orders use it with probability
    0.8, otherwise a uniformly random one of the 50 stores. ``online`` and
    ``app`` orders have ``store_id == 'online'``.

Products: the catalogue is fixed (independent of ``seed``): 20-40 products per
category (493 in total) with ids ``P00001``.. and names like
``"Greenfield Apples"``; a line picks a product uniformly within its category.

Transactions and events are sorted by customer then time. The implementation
is fully vectorised with numpy/pyarrow (no per-customer or per-order Python
loops): 1M customers -> ~10M lines in ~15 s on 2 cores, ~2.6 GB peak RSS.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CATEGORIES",
    "CROSS_SELL_PAIRS",
    "SyntheticData",
    "generate",
    "plant_churn_change",
    "plant_order_hour_shift",
    "write",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------
# Documented constants (the module docstring quotes these values).
# --------------------------------------------------------------------------
CATEGORIES: tuple[str, ...] = (
    "produce",
    "dairy",
    "bakery",
    "meat",
    "frozen",
    "beverages",
    "snacks",
    "household",
    "personal_care",
    "baby",
    "kids",
    "pet_food",
    "pet_care",
    "wine",
    "health",
)

#: (A, B, delay_days): lines > delay_days after the first A switch to B w.p. 0.25.
CROSS_SELL_PAIRS: tuple[tuple[str, str, int], ...] = (
    ("pet_food", "pet_care", 30),
    ("baby", "kids", 60),
    ("beverages", "snacks", 14),
)
CROSS_SELL_PROB: float = 0.25

SEGMENTS: tuple[str, ...] = ("other", "young_family")
YOUNG_FAMILY_SHARE: float = 0.12

#: Mean category shares per segment (normalised below); Dirichlet centre.
SEGMENT_PROFILES: dict[str, dict[str, float]] = {
    "other": {
        "produce": 0.16, "dairy": 0.13, "bakery": 0.09, "meat": 0.10,
        "frozen": 0.07, "beverages": 0.09, "snacks": 0.08, "household": 0.07,
        "personal_care": 0.06, "baby": 0.01, "kids": 0.02, "pet_food": 0.04,
        "pet_care": 0.015, "wine": 0.045, "health": 0.025,
    },
    "young_family": {
        "produce": 0.12, "dairy": 0.12, "bakery": 0.07, "meat": 0.08,
        "frozen": 0.07, "beverages": 0.05, "snacks": 0.07, "household": 0.06,
        "personal_care": 0.04, "baby": 0.15, "kids": 0.12, "pet_food": 0.02,
        "pet_care": 0.01, "wine": 0.01, "health": 0.02,
    },
}
AFFINITY_CONCENTRATION: float = 5.0

#: Median unit price per category, currency units.
CATEGORY_MEDIAN_PRICE: dict[str, float] = {
    "produce": 2.5, "dairy": 3.0, "bakery": 3.0, "meat": 9.0, "frozen": 5.0,
    "beverages": 3.5, "snacks": 3.0, "household": 6.0, "personal_care": 6.0,
    "baby": 14.0, "kids": 12.0, "pet_food": 11.0, "pet_care": 9.0,
    "wine": 13.0, "health": 8.0,
}
PRICE_SIGMA: float = 0.4
QUANTITY_PROBS: tuple[float, float, float] = (0.70, 0.20, 0.10)  # qty 1, 2, 3

BASE_RATE_MEAN_PER_30D: float = 0.59
BASE_RATE_SHAPE: float = 1.2
SIGNUP_LEAD_DAYS: float = 365.0  # signups start this many days before `start`
SIGNUP_TAIL_DAYS: float = 30.0  # ... and stop this many days before `end`
LIFETIME_MEAN_DAYS: float = 450.0
DECLINE_DAYS: float = 120.0
DECLINE_FLOOR: float = 0.2
#: Extra lines per order (Poisson mean) by segment: lines = 1 + Poisson(mu).
EXTRA_LINES_MEAN: dict[str, float] = {"other": 1.0, "young_family": 1.1}

REFUND_SHARE: float = 0.015
REFUND_DELAY_DAYS: tuple[int, int] = (1, 21)

CHANNELS: tuple[str, ...] = ("store", "online", "app")
CHANNEL_PROFILES: dict[str, tuple[float, float, float]] = {
    "other": (0.72, 0.18, 0.10),
    "young_family": (0.40, 0.20, 0.40),
}
CHANNEL_CONCENTRATION: float = 10.0

#: Weekday weights Mon..Sun (normalised to mean 1 below).
WEEKDAY_WEIGHTS: dict[str, tuple[float, ...]] = {
    "other": (0.95, 0.90, 0.95, 1.00, 1.15, 1.20, 0.85),
    "young_family": (0.60, 0.60, 0.60, 0.60, 0.70, 2.20, 1.70),
}
#: Relative weight per hour 0..23.
HOUR_WEIGHTS: dict[str, tuple[float, ...]] = {
    "other": (
        0.05, 0.02, 0.02, 0.02, 0.02, 0.05, 0.2, 0.6, 1.5, 2.5, 3.5, 4.0,
        4.5, 4.0, 3.5, 3.5, 4.5, 6.5, 7.5, 6.5, 4.0, 2.5, 1.0, 0.3,
    ),
    "young_family": (
        0.05, 0.02, 0.02, 0.02, 0.02, 0.05, 0.3, 1.0, 2.5, 4.5, 5.5, 5.5,
        4.5, 3.5, 3.0, 3.0, 4.0, 5.5, 6.0, 5.0, 3.0, 1.5, 0.6, 0.2,
    ),
}

EVENT_TYPES: tuple[str, ...] = ("app_visit", "email_click", "coupon_use")
APP_VISIT_BASE: float = 0.3
APP_VISIT_PER_APP_SHARE: float = 7.0
EMAIL_CLICK_PER_ORDER: float = 0.4
COUPON_PER_ORDER: dict[str, float] = {"other": 0.25, "young_family": 0.40}
EMAIL_OPT_IN_PROB: dict[str, float] = {"other": 0.55, "young_family": 0.65}

REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central")
REGION_WEIGHTS: tuple[float, ...] = (0.22, 0.24, 0.18, 0.20, 0.16)
STORES_PER_REGION: int = 10
HOME_STORE_PROB: float = 0.8
ONLINE_STORE_ID: str = "online"

AGE_BANDS: tuple[str, ...] = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_BAND_PROBS: dict[str, tuple[float, ...]] = {
    "other": (0.10, 0.17, 0.17, 0.18, 0.18, 0.20),
    "young_family": (0.03, 0.42, 0.40, 0.10, 0.04, 0.01),
}

_CATALOG_SEED = 20230101  # catalogue is independent of the data seed
_SECONDS_PER_DAY = 86_400
_US_PER_SECOND = 1_000_000

# Product-name building blocks: "<brand> <noun>", unique within the catalogue.
_BRANDS: tuple[str, ...] = (
    "Greenfield", "Northstar", "Bluebell", "Harvest", "Cedar", "Sunny", "Maple",
    "Riverside",
)
_NOUNS: dict[str, tuple[str, ...]] = {
    "produce": ("Apples", "Bananas", "Carrots", "Tomatoes", "Lettuce"),
    "dairy": ("Milk", "Yogurt", "Cheddar", "Butter", "Cream"),
    "bakery": ("Sourdough", "Bagels", "Croissants", "Rye Bread", "Muffins"),
    "meat": ("Chicken Breast", "Beef Mince", "Pork Chops", "Sausages", "Ham"),
    "frozen": ("Peas", "Pizza", "Ice Cream", "Fish Fingers", "Berries"),
    "beverages": ("Orange Juice", "Sparkling Water", "Cola", "Coffee", "Tea"),
    "snacks": ("Crisps", "Pretzels", "Chocolate", "Nuts", "Cookies"),
    "household": ("Detergent", "Paper Towels", "Dish Soap", "Bin Bags", "Sponges"),
    "personal_care": ("Shampoo", "Toothpaste", "Deodorant", "Body Wash", "Razors"),
    "baby": ("Nappies", "Baby Wipes", "Infant Formula", "Baby Food", "Baby Lotion"),
    "kids": ("Kids Cereal", "Juice Boxes", "Crayons", "Lunch Snacks", "Kids Yogurt"),
    "pet_food": ("Dog Food", "Cat Food", "Dog Treats", "Cat Treats", "Bird Seed"),
    "pet_care": ("Cat Litter", "Flea Drops", "Pet Shampoo", "Chew Toy", "Poop Bags"),
    "wine": ("Merlot", "Chardonnay", "Rose", "Prosecco", "Rioja"),
    "health": ("Vitamins", "Pain Relief", "Plasters", "Cough Syrup", "Allergy Tabs"),
}


@dataclass(frozen=True)
class SyntheticData:
    """Bundle of generated frames.

    Attributes:
        transactions: one row per order line: ``customer_id`` (str), ``ts``
            (datetime64[us], naive local wall time), ``amount`` (float64,
            currency, 2 decimals, refunds negative), ``order_id`` (str),
            ``product_id`` (str), ``quantity`` (int64), ``channel`` (str:
            store/online/app), ``store_id`` (str). Sorted by customer, ts.
        products: ``product_id``, ``category``, ``product_name`` (all str).
        customers: ``customer_id`` (unique), ``signup_ts`` (datetime64[us]),
            ``region``, ``age_band`` (str), ``email_opt_in`` (bool).
        events: ``customer_id``, ``ts`` (datetime64[us]), ``event_type`` (str:
            app_visit/email_click/coupon_use). Sorted by customer, ts.
        truth: one row per customer: ``customer_id``, ``latent_segment``,
            ``churn_date`` (datetime64[us], NaT if not before ``end``),
            ``base_rate_per_30d`` (orders per 30 days), ``top_affinity_category``
            and ``affinity_<category>`` for each category (rows sum to 1).
    """

    transactions: pd.DataFrame
    products: pd.DataFrame
    customers: pd.DataFrame
    events: pd.DataFrame
    truth: pd.DataFrame


# --------------------------------------------------------------------------
# Small vectorised helpers
# --------------------------------------------------------------------------
def _to_date(value: str | date) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _normalise_rows(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return m / m.sum(axis=-1, keepdims=True)


def _cum_rows(p: np.ndarray) -> np.ndarray:
    """Row-wise cumulative probabilities with the last column exactly 1."""
    cum = np.cumsum(p, axis=1)
    cum /= cum[:, -1:]
    cum[:, -1] = 1.0
    return cum


def _sample_rows(cum: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of a column index for each (row, uniform) pair.

    ``cum`` is (R, K) row-wise cumulative; instead of gathering a (n, K) matrix
    (1.2 GB for 10M lines) we offset row r by +r so the flattened array is
    globally sorted, then one ``searchsorted`` answers all draws.
    """
    n_rows, k = cum.shape
    flat = (cum + np.arange(n_rows, dtype=np.float64)[:, None]).ravel()
    pos = np.searchsorted(flat, rows.astype(np.float64) + u, side="right")
    return np.minimum(pos - rows.astype(np.int64) * k, k - 1)


def _decline_factor(t_days: np.ndarray, churn_days: np.ndarray) -> np.ndarray:
    """Churn factor: 1 until DECLINE_DAYS before churn, then linear to floor."""
    x = (churn_days - t_days) / DECLINE_DAYS
    return np.minimum(DECLINE_FLOOR + (1.0 - DECLINE_FLOOR) * x, 1.0)


def _poisson_candidates(
    rng: np.random.Generator,
    lam_per_day: np.ndarray,
    a_days: np.ndarray,
    b_days: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Homogeneous Poisson candidates per customer on [a, b) (days).

    Returns (customer index, time in days); thinning happens in the caller.
    """
    dur = np.clip(b_days - a_days, 0.0, None)
    counts = rng.poisson(lam_per_day * dur)
    cust = np.repeat(np.arange(a_days.size, dtype=np.int64), counts)
    t = a_days[cust] + rng.random(cust.size) * dur[cust]
    return cust, t


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """Vectorised ``prefix + zero-padded number`` strings as a pyarrow array."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _str_series(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    # Arrow-backed pandas "str" dtype without materialising Python objects.
    return pd.Series(values, dtype="str")


def _take_str(labels: list[str] | tuple[str, ...] | pa.Array, codes: np.ndarray) -> pd.Series:
    """Map integer codes to strings in C (pyarrow take), not via Python objects."""
    dictionary = labels if isinstance(labels, pa.Array) else pa.array(list(labels), pa.string())
    return _str_series(dictionary.take(pa.array(codes)))


def _seconds_to_ts(start_us: int, seconds: np.ndarray) -> np.ndarray:
    return (np.int64(start_us) + seconds.astype(np.int64) * _US_PER_SECOND).astype(
        "datetime64[us]"
    )


def _draw_hour_seconds(
    rng: np.random.Generator, hour_cum: np.ndarray, seg_rows: np.ndarray
) -> np.ndarray:
    """Second-of-day drawn from the segment's hour profile."""
    hours = _sample_rows(hour_cum, seg_rows, rng.random(seg_rows.size))
    return hours * 3600 + rng.integers(0, 3600, seg_rows.size)


# --------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------
def _build_catalog() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Fixed product catalogue.

    Returns (products frame, first product index per category, products per
    category, unit price per product).
    """
    rng = np.random.default_rng(_CATALOG_SEED)
    names: list[str] = []
    cats: list[str] = []
    prices: list[np.ndarray] = []
    counts = rng.integers(20, 41, len(CATEGORIES))
    for k, cat in enumerate(CATEGORIES):
        n = int(counts[k])
        combos = [(b, noun) for b in _BRANDS for noun in _NOUNS[cat]]
        pick = rng.choice(len(combos), size=n, replace=False)
        for idx in pick:
            brand, noun = combos[int(idx)]
            names.append(f"{brand} {noun}")
            cats.append(cat)
        price = CATEGORY_MEDIAN_PRICE[cat] * rng.lognormal(0.0, PRICE_SIGMA, n)
        prices.append(np.maximum(np.round(price, 2), 0.5))
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    n_total = int(counts.sum())
    products = pd.DataFrame(
        {
            "product_id": _str_series(_ids("P", np.arange(1, n_total + 1), 5)),
            "category": pd.Series(cats, dtype="str"),
            "product_name": pd.Series(names, dtype="str"),
        }
    )
    return products, offsets, counts.astype(np.int64), np.concatenate(prices)


# --------------------------------------------------------------------------
# Main generator
# --------------------------------------------------------------------------
def generate(
    customers: int = 2000,
    seed: int = 0,
    start: str | date = "2023-01-01",
    end: str | date = "2025-01-01",
    progress: Callable[[str], None] | None = None,
) -> SyntheticData:
    """Generate a deterministic synthetic CRM dataset.

    Args:
        customers: number of customers (>= 1).
        seed: RNG seed; same (customers, seed, start, end) -> identical frames.
        start: first day of the window (inclusive, midnight), ISO string or date.
        end: end of the window (exclusive, midnight), ISO string or date.
        progress: optional callback called with a stage name ("customers",
            "orders", "lines", "events") when that stage starts.

    Returns:
        SyntheticData; see the module docstring for the behavioural drivers.
    """
    n = int(customers)
    if n < 1:
        raise ValueError("customers must be >= 1")
    d_start, d_end = _to_date(start), _to_date(end)
    if d_end <= d_start:
        raise ValueError("end must be after start")

    def stage(name: str) -> None:
        logger.debug("synthetic stage: %s", name)
        if progress is not None:
            progress(name)

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    span_days = (d_end - d_start).days
    span_s = span_days * _SECONDS_PER_DAY
    start_us = int(np.datetime64(d_start, "us").astype(np.int64))
    start_dow = d_start.weekday()  # Monday = 0

    products, cat_offset, cat_count, unit_price = _build_catalog()
    n_cat = len(CATEGORIES)
    cat_index = {c: i for i, c in enumerate(CATEGORIES)}

    # ------------------------------------------------------------ customers
    stage("customers")
    seg = (rng.random(n) < YOUNG_FAMILY_SHARE).astype(np.int64)  # 1 = young_family

    base_rate = rng.gamma(BASE_RATE_SHAPE, BASE_RATE_MEAN_PER_30D / BASE_RATE_SHAPE, n)

    sign_lo = -SIGNUP_LEAD_DAYS
    # Keep a usable signup interval even for windows shorter than the tail.
    sign_hi = max(span_days - SIGNUP_TAIL_DAYS, span_days * 0.5)
    signup_s = np.floor(rng.uniform(sign_lo, sign_hi, n) * _SECONDS_PER_DAY).astype(np.int64)
    a_s = np.maximum(signup_s, 0)
    # Memoryless lifetime from max(signup, start): earlier signups that are in
    # the customer table are, by construction, still active at start.
    lifetime_s = np.floor(rng.exponential(LIFETIME_MEAN_DAYS, n) * _SECONDS_PER_DAY)
    churn_s = a_s + lifetime_s.astype(np.int64)
    b_s = np.minimum(churn_s, span_s)
    a_d = a_s / _SECONDS_PER_DAY
    b_d = b_s / _SECONDS_PER_DAY
    churn_d = churn_s / _SECONDS_PER_DAY

    profiles = _normalise_rows([[SEGMENT_PROFILES[s][c] for c in CATEGORIES] for s in SEGMENTS])
    # Per-row Dirichlet via normalised gammas (vectorised across segments).
    g = rng.standard_gamma(AFFINITY_CONCENTRATION * profiles[seg])
    g_sum = g.sum(axis=1, keepdims=True)
    affinity = np.where(g_sum > 0, g / np.where(g_sum > 0, g_sum, 1.0), 1.0 / n_cat)
    del g, g_sum
    aff_cum = _cum_rows(affinity)

    chan_prof = _normalise_rows([CHANNEL_PROFILES[s] for s in SEGMENTS])
    cg = rng.standard_gamma(CHANNEL_CONCENTRATION * chan_prof[seg])
    chan_p = cg / cg.sum(axis=1, keepdims=True)
    del cg
    chan_cum = _cum_rows(chan_p)

    region = _sample_rows(
        _cum_rows(_normalise_rows([REGION_WEIGHTS])), np.zeros(n, np.int64), rng.random(n)
    )
    # Home store within the region, with a skew so some stores are busier.
    store_w = _normalise_rows([1.0 / np.arange(1, STORES_PER_REGION + 1) ** 0.5])
    home_store = region * STORES_PER_REGION + _sample_rows(
        _cum_rows(store_w), np.zeros(n, np.int64), rng.random(n)
    )
    age_cum = _cum_rows(_normalise_rows([AGE_BAND_PROBS[s] for s in SEGMENTS]))
    age = _sample_rows(age_cum, seg, rng.random(n))
    opt_p = np.array([EMAIL_OPT_IN_PROB[s] for s in SEGMENTS])
    email_opt_in = rng.random(n) < opt_p[seg]

    width = len(str(n))
    cust_ids = _ids("C", np.arange(1, n + 1), width)
    n_stores = len(REGIONS) * STORES_PER_REGION
    store_labels = [f"S{i + 1:02d}" for i in range(n_stores)] + [ONLINE_STORE_ID]

    customers_df = pd.DataFrame(
        {
            "customer_id": _str_series(cust_ids),
            "signup_ts": _seconds_to_ts(start_us, signup_s),
            "region": _take_str(REGIONS, region),
            "age_band": _take_str(AGE_BANDS, age),
            "email_opt_in": email_opt_in,
        }
    )
    truth_cols: dict[str, object] = {
        "customer_id": _str_series(cust_ids),
        "latent_segment": _take_str(SEGMENTS, seg),
        "churn_date": np.where(
            churn_s < span_s,
            _seconds_to_ts(start_us, np.minimum(churn_s, span_s)),
            np.datetime64("NaT", "us"),
        ),
        "base_rate_per_30d": base_rate,
        "top_affinity_category": _take_str(CATEGORIES, np.argmax(affinity, axis=1)),
    }
    for k, c in enumerate(CATEGORIES):
        truth_cols[f"affinity_{c}"] = affinity[:, k]
    truth_df = pd.DataFrame(truth_cols)

    # --------------------------------------------------------------- orders
    stage("orders")
    dow_w = _normalise_rows([WEEKDAY_WEIGHTS[s] for s in SEGMENTS]) * 7.0  # mean 1
    dow_max = dow_w.max(axis=1)
    hour_cum = _cum_rows(_normalise_rows([HOUR_WEIGHTS[s] for s in SEGMENTS]))

    # Thinning: candidates at the max intensity, accepted with
    # weekday_weight/max * churn factor, so rate(t) is exactly as documented.
    lam = base_rate / 30.0 * dow_max[seg]
    oc, ot = _poisson_candidates(rng, lam, a_d, b_d)
    day = np.floor(ot).astype(np.int64)
    oseg = seg[oc]
    accept = dow_w[oseg, (start_dow + day) % 7] / dow_max[oseg] * _decline_factor(ot, churn_d[oc])
    keep = rng.random(oc.size) < accept
    oc, day, oseg = oc[keep], day[keep], oseg[keep]
    del ot, accept, keep
    # Replace the within-day time by a draw from the hour profile; re-check the
    # active window so nothing lands before signup or at/after churn.
    osec = day * _SECONDS_PER_DAY + _draw_hour_seconds(rng, hour_cum, oseg)
    keep = (osec >= a_s[oc]) & (osec < b_s[oc])
    oc, osec = oc[keep], osec[keep]
    del day, oseg, keep
    order_perm = np.argsort(oc * span_s + osec, kind="stable")
    oc, osec = oc[order_perm], osec[order_perm]
    del order_perm
    n_orders = oc.size

    ochan = _sample_rows(chan_cum, oc, rng.random(n_orders)).astype(np.int8)
    away_store = rng.integers(0, n_stores, n_orders)
    ostore = np.where(rng.random(n_orders) < HOME_STORE_PROB, home_store[oc], away_store)
    ostore = np.where(ochan == 0, ostore, n_stores).astype(np.int16)  # n_stores = 'online'
    del away_store
    extra_mu = np.array([EXTRA_LINES_MEAN[s] for s in SEGMENTS])
    n_lines = 1 + rng.poisson(extra_mu[seg[oc]])
    logger.info("synthetic: %d orders for %d customers", n_orders, n)

    # ---------------------------------------------------------------- lines
    stage("lines")
    lo = np.repeat(np.arange(n_orders, dtype=np.int64), n_lines)
    del n_lines
    lc = oc[lo]
    lsec = osec[lo]
    n_l = lo.size
    lcat = _sample_rows(aff_cum, lc, rng.random(n_l)).astype(np.int16)
    del aff_cum

    # Cross-sell: lines are sorted by (customer, ts), so the first A line of a
    # customer is the first occurrence of that customer among A lines.
    for a_cat, b_cat, delay in CROSS_SELL_PAIRS:
        ai, bi = cat_index[a_cat], cat_index[b_cat]
        a_idx = np.flatnonzero(lcat == ai)
        first_a = np.full(n, np.iinfo(np.int64).max // 2, dtype=np.int64)
        if a_idx.size:
            ca = lc[a_idx]
            is_first = np.empty(ca.size, dtype=bool)
            is_first[0] = True
            is_first[1:] = ca[1:] != ca[:-1]
            first_a[ca[is_first]] = lsec[a_idx[is_first]]
        elig = np.flatnonzero(lsec > first_a[lc] + delay * _SECONDS_PER_DAY)
        switch = elig[rng.random(elig.size) < CROSS_SELL_PROB]
        lcat[switch] = bi
        del a_idx, first_a, elig, switch

    lprod = cat_offset[lcat] + (rng.random(n_l) * cat_count[lcat]).astype(np.int64)
    del lcat
    qcum = np.cumsum(QUANTITY_PROBS) / np.sum(QUANTITY_PROBS)
    lqty = 1 + np.searchsorted(qcum, rng.random(n_l), side="right").clip(0, 2)
    lamount = np.round(unit_price[lprod] * lqty, 2)

    # Refunds: copies of earlier lines, 1-21 days later, each its own order.
    # Draw slightly above REFUND_SHARE because some land after churn/end.
    ref_src = np.flatnonzero(rng.random(n_l) < REFUND_SHARE * 1.08)
    ref_sec = lsec[ref_src] + rng.integers(
        REFUND_DELAY_DAYS[0] * _SECONDS_PER_DAY, REFUND_DELAY_DAYS[1] * _SECONDS_PER_DAY + 1,
        ref_src.size,
    )
    ok = ref_sec < b_s[lc[ref_src]]
    ref_src, ref_sec = ref_src[ok], ref_sec[ok]
    n_ref = ref_src.size

    all_c = np.concatenate([lc, lc[ref_src]])
    all_sec = np.concatenate([lsec, ref_sec])
    all_order = np.concatenate([lo, n_orders + np.arange(n_ref, dtype=np.int64)])
    # Row -> originating pre-sort line (refunds point at the refunded line).
    src_line = np.concatenate([np.arange(n_l, dtype=np.int64), ref_src])
    is_ref = np.zeros(all_c.size, dtype=bool)
    is_ref[n_l:] = True
    del lc, lsec, ref_sec, ref_src
    # Stable sort keeps an order's lines contiguous (same customer and second;
    # purchases are placed before refunds), so order numbers can be
    # re-assigned by run length below.
    perm = np.argsort(all_c * span_s + all_sec, kind="stable")
    all_c, all_sec, all_order = all_c[perm], all_sec[perm], all_order[perm]
    src_line, is_ref = src_line[perm], is_ref[perm]
    del perm
    new_order = np.empty(all_order.size, dtype=np.int64)
    if all_order.size:
        new_order[0] = 0
        np.cumsum(all_order[1:] != all_order[:-1], out=new_order[1:])
    del all_order
    t_prod = lprod[src_line]
    t_qty = lqty[src_line].astype(np.int64)
    t_amount = np.where(is_ref, -lamount[src_line], lamount[src_line])
    # Refunds inherit channel and store of the refunded line's order.
    src_order = lo[src_line]
    t_chan = ochan[src_order]
    t_store = ostore[src_order]
    del src_order, lo, lprod, lqty, lamount, src_line, is_ref

    n_txn = all_c.size
    n_order_ids = int(new_order[-1]) + 1 if n_txn else 0
    order_ids = _ids("O", np.arange(1, n_order_ids + 1), len(str(max(n_order_ids, 1))))
    prod_ids = pa.array(products["product_id"].to_numpy(dtype=object), pa.string())
    transactions = pd.DataFrame(
        {
            "customer_id": _str_series(cust_ids.take(pa.array(all_c))),
            "ts": _seconds_to_ts(start_us, all_sec),
            "amount": t_amount.astype(np.float64),
            "order_id": _str_series(order_ids.take(pa.array(new_order))),
            "product_id": _str_series(prod_ids.take(pa.array(t_prod))),
            "quantity": t_qty,
            "channel": _take_str(CHANNELS, t_chan),
            "store_id": _take_str(store_labels, t_store),
        }
    )
    del all_c, all_sec, t_amount, new_order, t_prod, t_qty, t_chan, t_store
    logger.info("synthetic: %d transaction lines (%d refunds)", n_txn, n_ref)

    # --------------------------------------------------------------- events
    stage("events")
    coupon = np.array([COUPON_PER_ORDER[s] for s in SEGMENTS])
    m_app = APP_VISIT_BASE + APP_VISIT_PER_APP_SHARE * chan_p[:, 2]
    m_email = np.where(email_opt_in, EMAIL_CLICK_PER_ORDER, 0.0)
    m_coupon = coupon[seg]
    m_tot = m_app + m_email + m_coupon
    ec, et = _poisson_candidates(rng, base_rate / 30.0 * m_tot, a_d, b_d)
    keep = rng.random(ec.size) < _decline_factor(et, churn_d[ec])
    ec, et = ec[keep], et[keep]
    # Split the combined process into types in proportion to their intensity.
    u = rng.random(ec.size) * m_tot[ec]
    etype = np.where(u < m_app[ec], 0, np.where(u < (m_app + m_email)[ec], 1, 2)).astype(np.int8)
    esec = np.floor(et).astype(np.int64) * _SECONDS_PER_DAY + _draw_hour_seconds(
        rng, hour_cum, seg[ec]
    )
    keep = (esec >= a_s[ec]) & (esec < b_s[ec])
    ec, esec, etype = ec[keep], esec[keep], etype[keep]
    del et, u, keep
    perm = np.argsort(ec * span_s + esec, kind="stable")
    ec, esec, etype = ec[perm], esec[perm], etype[perm]
    del perm
    events = pd.DataFrame(
        {
            "customer_id": _str_series(cust_ids.take(pa.array(ec))),
            "ts": _seconds_to_ts(start_us, esec),
            "event_type": _take_str(EVENT_TYPES, etype),
        }
    )
    logger.info(
        "synthetic: %d customers, %d lines, %d events in %.1fs",
        n, n_txn, len(events), time.perf_counter() - t0,
    )
    return SyntheticData(
        transactions=transactions,
        products=products,
        customers=customers_df,
        events=events,
        truth=truth_df,
    )


# --------------------------------------------------------------------------
# Planted changes for monitoring tests (crmscore.monitoring). Each takes a
# generated dataset and returns a changed copy; generate() itself is untouched,
# so the default output stays byte-identical.
# --------------------------------------------------------------------------
#: A planted shift of one feature: from `after` on, orders placed before noon
#: happen this many hours later (still before 17:00, so only the usual order
#: hour moves, not the evening share, the day or any count).
ORDER_HOUR_SHIFT_HOURS: int = 4
ORDER_HOUR_SHIFT_BEFORE: int = 12
#: A planted change of the churn mechanism: from `after` on, customers of these
#: regions still active then (or signing up later) leave abruptly (no slowing
#: down first) after an exponential time with this mean, unless their own churn
#: comes earlier; in the days before leaving they redeem coupons at this rate
#: (a competitor's offer: the warning sign a model can learn only from data
#: after `after`).
CHURN_CHANGE_REGIONS: tuple[str, ...] = REGIONS
CHURN_CHANGE_MEAN_DAYS: float = 150.0
CHURN_CHANGE_WARNING_DAYS: float = 60.0
CHURN_CHANGE_WARNING_COUPONS_PER_30D: float = 6.0


def plant_order_hour_shift(data: SyntheticData, after: str | date, hours: int = ORDER_HOUR_SHIFT_HOURS,
                           before_hour: int = ORDER_HOUR_SHIFT_BEFORE) -> SyntheticData:
    """Orders at or after `after` placed before `before_hour` move `hours` later the same day.

    Only the time of day of those orders changes (``before_hour + hours`` must stay at or below the
    evening hour 17), so of the declared features only ``mean_order_hour`` shifts; a drift monitor should
    flag that one and no other.
    """
    if before_hour + hours > 17:
        raise ValueError("before_hour + hours must stay <= 17 so that the evening share does not move")
    tx = data.transactions.copy()
    cut = pd.Timestamp(_to_date(after))
    move = (tx["ts"] >= cut) & (tx["ts"].dt.hour < before_hour)
    tx.loc[move, "ts"] = tx.loc[move, "ts"] + pd.Timedelta(hours=hours)
    tx = tx.sort_values(["customer_id", "ts"], kind="stable").reset_index(drop=True)
    logger.info("synthetic: %d order lines after %s moved %d hours later", int(move.sum()), cut.date(), hours)
    return SyntheticData(tx, data.products, data.customers, data.events, data.truth)


def plant_churn_change(data: SyntheticData, after: str | date, seed: int = 0,
                       regions: tuple[str, ...] = CHURN_CHANGE_REGIONS,
                       mean_days: float = CHURN_CHANGE_MEAN_DAYS,
                       warning_days: float = CHURN_CHANGE_WARNING_DAYS,
                       warning_coupons_per_30d: float = CHURN_CHANGE_WARNING_COUPONS_PER_30D) -> SyntheticData:
    """A new way of leaving from `after` on (a competitor's offer): customers of `regions` (default: all) leave
    at ``max(signup, after) + Exponential(mean_days)`` when that comes before their own churn, abruptly (their
    transactions and events from then on are removed; ``truth.churn_date`` is updated), and in the
    `warning_days` before leaving they redeem coupons (extra ``coupon_use`` events, Poisson at
    `warning_coupons_per_30d` per 30 days, none before signup or `after`).

    Why this shape: a model trained before `after` knows churn only as slowing down, and coupon use only as a
    sign of an engaged customer, so its realised ROC-AUC falls; the warning sign is in declared features
    (``event_coupon_use_90d``, ``events_30d``) of every leaver, so a model trained on later data can learn it,
    and its gain holds at any seed (README "Monitoring" has the measured intervals). A leaving mechanism tied
    to a customer attribute instead (region) empties that group within a few months, leaving too few of its
    customers at a later cutoff for the gain to clear a paired bootstrap.
    """
    rng = np.random.default_rng([seed, 17])
    cut = pd.Timestamp(_to_date(after))
    truth = data.truth.copy()
    region = data.customers.set_index("customer_id")["region"].reindex(truth["customer_id"]).to_numpy()
    lifetime = pd.to_timedelta(np.floor(rng.exponential(mean_days, len(truth)) * _SECONDS_PER_DAY), unit="s")
    signup = data.customers.set_index("customer_id")["signup_ts"].reindex(truth["customer_id"]).to_numpy()
    new_churn = pd.DatetimeIndex(np.maximum(signup, np.datetime64(cut))) + lifetime
    old = truth["churn_date"]
    hit = np.isin(region, list(regions)) & (old.isna() | (old > new_churn)).to_numpy()
    stop = pd.Series(np.where(hit, new_churn.to_numpy(), np.datetime64("NaT")), index=truth["customer_id"])
    truth.loc[hit, "churn_date"] = new_churn[hit].astype(truth["churn_date"].dtype)
    end = max(data.transactions["ts"].max(), data.events["ts"].max())
    truth.loc[truth["churn_date"] > end, "churn_date"] = pd.NaT

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        limit = frame["customer_id"].map(stop)
        return frame[~(limit.notna() & (frame["ts"] >= limit))].reset_index(drop=True)

    tx, kept_events = keep(data.transactions), keep(data.events)
    coupons = _warning_coupons(rng, truth["customer_id"].to_numpy()[hit], new_churn[hit],
                               pd.DatetimeIndex(signup[hit]), cut, end, warning_days, warning_coupons_per_30d)
    ev = pd.concat([kept_events, coupons], ignore_index=True)
    ev = ev.sort_values(["customer_id", "ts"], kind="stable").reset_index(drop=True)
    logger.info("synthetic: churn changed after %s for %d customers of %s (%d lines removed, %d coupon "
                "redemptions added)", cut.date(), int(hit.sum()), ", ".join(regions),
                len(data.transactions) - len(tx), len(coupons))
    return SyntheticData(tx, data.products, data.customers, ev.astype(data.events.dtypes.to_dict()), truth)


def _warning_coupons(rng: np.random.Generator, customer_ids: np.ndarray, leave: pd.DatetimeIndex,
                     signup: pd.DatetimeIndex, after: pd.Timestamp, end: pd.Timestamp, days: float,
                     per_30d: float) -> pd.DataFrame:
    """``coupon_use`` events of leavers in the `days` before they leave: a Poisson process at `per_30d` per
    30 days on ``[max(leave - days, signup, after), min(leave, end))``."""
    leave_s = (leave - after).total_seconds().to_numpy()
    first_s = np.maximum.reduce([leave_s - days * _SECONDS_PER_DAY, (signup - after).total_seconds().to_numpy(),
                                 np.zeros(len(leave_s))])
    last_s = np.minimum(leave_s, (end - after).total_seconds())
    span = np.clip(last_s - first_s, 0.0, None)
    counts = rng.poisson(per_30d / (30 * _SECONDS_PER_DAY) * span)
    owner = np.repeat(np.arange(len(leave_s)), counts)
    seconds = np.floor(first_s[owner] + rng.random(owner.size) * span[owner]).astype(np.int64)
    return pd.DataFrame({"customer_id": _str_series(pa.array(customer_ids[owner].astype(str))),
                         "ts": _seconds_to_ts(after.value // 1000, seconds),
                         "event_type": _str_series(pa.array(["coupon_use"] * owner.size, pa.string()))})


def write(data: SyntheticData, out_dir: str | Path) -> dict[str, Path]:
    """Write all frames as zstd-compressed parquet files.

    Args:
        data: result of :func:`generate`.
        out_dir: target directory (created if missing).

    Returns:
        Mapping ``name -> path`` for transactions, products, customers, events
        and truth (files ``<name>.parquet``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in ("transactions", "products", "customers", "events", "truth"):
        frame: pd.DataFrame = getattr(data, name)
        path = out / f"{name}.parquet"
        frame.to_parquet(path, engine="pyarrow", compression="zstd", index=False)
        paths[name] = path
        logger.info("synthetic: wrote %s (%d rows)", path, len(frame))
    return paths


# --------------------------------------------------------------------------
# A campaign experiment with planted heterogeneous effects (uplift models).
# Separate from generate(): its output is untouched; the campaign is written
# to its own folder (write_campaign) with a full copy of the transactions.
# --------------------------------------------------------------------------
PERSUADABLE_RECENCY_DAYS: tuple[int, int] = (30, 150)
PERSUADABLE_EXTRA_ORDER_PROB = 0.35
DO_NOT_DISTURB_RATE_PER_30D = 1.5
DO_NOT_DISTURB_DROP_PROB = 0.6


@dataclass(frozen=True)
class SyntheticCampaign:
    """A randomised campaign on a :class:`SyntheticData`, with known effects per customer.

    Who responds and by how much (the module constants):

    - Every customer who signed up before ``at`` is in the experiment, treated with probability
      ``treated_share``, else control; all are assigned at ``at`` 09:00 (``treatments``: customer_id,
      campaign, treated 1/0, ts).
    - **Persuadables**: customers whose last purchase (an order with a positive amount) before ``at`` is
      ``PERSUADABLE_RECENCY_DAYS`` = 30 to 150 days old (lapsing, still reachable). Treated ones get one
      extra order (one line, a random product, channel ``online``) with probability
      ``PERSUADABLE_EXTRA_ORDER_PROB`` = 0.35, at a uniform time in the ``horizon_days`` after ``at``.
    - **Do-not-disturb**: heavy buyers, ``base_rate_per_30d`` >= ``DO_NOT_DISTURB_RATE_PER_30D`` = 1.5
      (and not persuadable). For treated ones each of their orders in the horizon is removed with
      probability ``DO_NOT_DISTURB_DROP_PROB`` = 0.6 (the contact annoys them).
    - Everyone else: no effect.
    ``truth``: customer_id, treated, planted_segment (persuadable / do_not_disturb / none),
    added_orders, removed_orders. ``transactions``: the data's lines with those orders added and removed.
    """

    name: str
    at: pd.Timestamp
    horizon_days: int
    treatments: pd.DataFrame
    transactions: pd.DataFrame
    truth: pd.DataFrame


def campaign(data: SyntheticData, *, name: str = "winback", at: str | date | None = None, horizon_days: int = 30,
             treated_share: float = 0.5, seed: int = 7) -> SyntheticCampaign:
    """A campaign on ``data`` at ``at`` (default: ``horizon_days`` + 30 days before the last transaction's
    day), with the effects documented on :class:`SyntheticCampaign`. Deterministic for the same inputs."""
    rng = np.random.default_rng(seed)
    tx = data.transactions
    last_day = pd.Timestamp(tx["ts"].max()).normalize()
    at_ts = pd.Timestamp(_to_date(at)) if at is not None else last_day - pd.Timedelta(days=horizon_days + 30)
    end_ts = at_ts + pd.Timedelta(days=horizon_days)
    cust = data.customers[data.customers["signup_ts"] < at_ts][["customer_id"]].reset_index(drop=True)
    cust = cust.merge(data.truth[["customer_id", "base_rate_per_30d"]], on="customer_id", how="left")
    treated = (rng.random(len(cust)) < treated_share).astype(np.int64)
    orders = tx[tx["ts"] < at_ts].groupby(["customer_id", "order_id"], sort=False).agg(
        ts=("ts", "min"), amount=("amount", "sum")).reset_index()
    last = orders[orders["amount"] > 0].groupby("customer_id")["ts"].max()
    recency = (at_ts - cust["customer_id"].map(last)).dt.total_seconds().to_numpy() / 86400.0
    lo, hi = PERSUADABLE_RECENCY_DAYS
    persuadable = (recency >= lo) & (recency <= hi)  # NaN (never bought) compares False
    dnd = ~persuadable & (cust["base_rate_per_30d"].to_numpy(float) >= DO_NOT_DISTURB_RATE_PER_30D)
    segment = np.where(persuadable, "persuadable", np.where(dnd, "do_not_disturb", "none"))
    # persuadables: one extra order each with the planted probability
    add = (treated == 1) & persuadable & (rng.random(len(cust)) < PERSUADABLE_EXTRA_ORDER_PROB)
    who = cust.loc[add, "customer_id"].to_numpy()
    seconds = rng.uniform(0, horizon_days * 86400.0, len(who)).astype(np.int64)
    products = data.products["product_id"].to_numpy()
    prices = tx.groupby("product_id")["amount"].median().abs().clip(lower=0.5)
    pick = rng.integers(0, len(products), len(who))
    extra = pd.DataFrame({
        "customer_id": who.astype(str),
        "ts": (at_ts + pd.to_timedelta(seconds, unit="s")).to_numpy().astype("datetime64[us]"),
        "amount": np.round(pd.Series(products[pick]).map(prices).fillna(5.0).to_numpy(float), 2),
        "order_id": [f"C{name[:6]}{i:07d}" for i in range(len(who))],
        "product_id": products[pick].astype(str),
        "quantity": np.ones(len(who), dtype=np.int64),
        "channel": "online",
        "store_id": "online",
    })
    # do-not-disturb: each treated heavy buyer's order in the horizon dropped with the planted probability
    annoyed = set(cust.loc[(treated == 1) & dnd, "customer_id"])
    window = tx[(tx["ts"] >= at_ts) & (tx["ts"] < end_ts) & tx["customer_id"].isin(annoyed)]
    keys = window[["customer_id", "order_id"]].drop_duplicates().sort_values(["customer_id", "order_id"])
    dropped = keys[rng.random(len(keys)) < DO_NOT_DISTURB_DROP_PROB]
    drop_ids = set(dropped["order_id"])
    kept = tx[~(tx["order_id"].isin(drop_ids) & tx["customer_id"].isin(annoyed) & (tx["ts"] >= at_ts))]
    transactions = pd.concat([kept, extra[tx.columns]], ignore_index=True).sort_values(
        ["customer_id", "ts"], kind="stable").reset_index(drop=True)
    treatments = pd.DataFrame({"customer_id": cust["customer_id"].astype(str), "campaign": name, "treated": treated,
                               "ts": np.full(len(cust), (at_ts + pd.Timedelta(hours=9)).to_datetime64()).astype(
                                   "datetime64[us]")})
    truth = pd.DataFrame({"customer_id": cust["customer_id"].astype(str), "treated": treated,
                          "planted_segment": segment,
                          "added_orders": cust["customer_id"].isin(set(who)).astype(np.int64),
                          "removed_orders": cust["customer_id"].map(dropped.groupby("customer_id").size())
                          .fillna(0).astype(np.int64)})
    return SyntheticCampaign(name, at_ts, horizon_days, treatments, transactions, truth)


def write_campaign(camp: SyntheticCampaign, out_dir: str | Path) -> dict[str, Path]:
    """Write treatments, transactions (with the campaign's effects) and campaign_truth as zstd Parquet."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in (("treatments", camp.treatments), ("transactions", camp.transactions),
                        ("campaign_truth", camp.truth)):
        paths[name] = out / f"{name}.parquet"
        frame.to_parquet(paths[name], engine="pyarrow", compression="zstd", index=False)
    return paths
