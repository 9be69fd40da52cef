"""Quality bars: does each model beat what it must beat on the team's real datasets? (Not a timed test.)

    python bench/quality.py [--only SECTION ...] [--tracking-uri URI] [--artifact-location DIR]
                            [--json FILE] [-v]

Runs from any folder (it works in the repo root, where the configs' data paths resolve). Every bar
trains through the library, exactly as `crmscore train` does (crmscore.models.pipeline.train_task with
the task from crmscore.models.tasks.get_task and the config from crmscore.config.load_config), without
registering a model. MLflow runs go to a temporary tracking store that is deleted afterwards, unless
--tracking-uri is given, so the repo's own mlflow.db is never touched.

Sections (see SECTIONS; add one with the @section decorator):
- churn-telco: IBM Telco feature table; bar: model ROC-AUC >= 0.85 on the held-out test rows (logistic
  regression on the same features is shown next to it for reference).
- churn-completejourney: Complete Journey transactions, trained as of 2017-10-01, 2017-11-15 and
  2018-01-01 (test cutoff = as_of - horizon); bar: model ROC-AUC above every baseline (recency, rfm,
  bgnbd) at each test cutoff. A baseline that failed to compute counts as not beaten.
- next-purchase-completejourney / expected-spend-completejourney / next-category-completejourney:
  Complete Journey transactions, trained as of the same three dates (horizon 30 days, so the test
  cutoffs are 30 days before them); bars at each test cutoff: purchase probability ROC-AUC above every
  baseline (recency, frequency, bgnbd); expected spend normalised Gini above BG/NBD + Gamma-Gamma
  (spend_rate shown); next-category hit rate at 3 above popularity and co-purchase rules (the
  customer's own history shown). Days-to-next MAE, Spearman, decile MAPE, NDCG... are in the notes.
- next-category-tafeng: Ta-Feng complete grocery baskets, trained as of 2001-01-18, 2001-01-25 and 2001-02-01
  (14-day horizon: test cutoffs 2001-01-04, 01-11, 01-18); bars at each test cutoff: cross-sell hit rate at 3
  (categories bought in the lookback left out) above every baseline, and next-basket hit rate at 3 above
  popularity, co-purchase rules and the customer's most-bought categories. Precision, NDCG, per-category
  ROC-AUC and the timing model's MAE are in the notes.
- churn-onlineretail / next-purchase-onlineretail / expected-spend-onlineretail: UCI Online Retail (sparse,
  long-gap buyers), trained as of 2011-08-01, 2011-08-15 and 2011-09-01 with a 30-day horizon (test windows end
  by 2011-09-01); bar: above every baseline (BG/NBD, BG/NBD x Gamma-Gamma for spend, and the rest) at each test
  cutoff, and ahead of the best by at least 0.01 (ROC-AUC; normalised Gini for spend) on average.
- churn-synthetic / next-purchase-synthetic / expected-spend-synthetic: the demo's generated data (5,000
  customers, seed 42) as of the day after it ends and 30 and 60 days earlier; bar: above every baseline
  (expected spend: above BG/NBD x Gamma-Gamma) at each test cutoff.
- lookalike-synthetic / lookalike-completejourney / lookalike-telco: `crmscore train lookalike` with 25%
  of the seed hidden, each bar the mean of three hidden splits. Synthetic demo data (generated, 5,000
  customers), seed = the latent segment young_family from truth.parquet: recall of hidden members in the
  top 10% >= 0.6. Complete Journey as of 2017-07-01, seed = top decile of 2017 H1 spend on PRODUCE with
  its category share excluded: recall at 10% above the seed-centroid baseline. Telco feature table, seed
  file = the churned subscribers: recall at 20% above the centroid baseline.

A dataset missing from ../shared/data is skipped with a message (a machine outside the team has none).
Exit status: 0 when no bar failed, 1 when one did, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


# ----------------------------------------------------------------------------- results and registry


@dataclass
class Bar:
    """One checked bar: the model's score next to its references, and the verdict."""

    task: str
    dataset: str
    test: str  # test cutoff or split description
    metric: str
    requirement: str
    status: str
    model: float = math.nan
    references: dict[str, float] = field(default_factory=dict)
    rows: int = 0
    note: str = ""


@dataclass
class Context:
    """What every section gets: the repo root, and a helper that trains one task through the library."""

    root: Path
    tmp: Path
    without_btyd: bool = False  # --without-btyd: every config's buy-till-you-die features off, for comparison
    as_of_only: tuple[str, ...] = ()  # --as-of: only these as-of dates of next-category-tafeng (parallel runs)

    def config(self, relative: str) -> Any:
        """Load a config from training/configs; its quarantine folder goes to the temp dir, not the repo."""
        from crmscore.config import load_config

        return self.adjusted(load_config(self.root / relative))

    def adjusted(self, cfg: Any) -> Any:
        cfg.validation.quarantine_dir = str(self.tmp / "quarantine" / cfg.name)
        if self.without_btyd:
            cfg.features.btyd_horizons = []
        return cfg

    def missing(self, cfg: Any) -> list[str]:
        """Configured data files that are not here (resolved as the library resolves them)."""
        import glob

        paths = [src.path for src in (cfg.data.transactions, cfg.data.products, cfg.data.customers,
                                      cfg.data.events, cfg.data.features) if src is not None]
        return [os.path.abspath(cfg.resolve(p)) for p in paths if not glob.glob(cfg.resolve(p))]

    def train(self, task_name: str, cfg: Any, *, as_of: Any = None, data: Any = None, **overrides: Any) -> Any:
        from crmscore.models.pipeline import train_task
        from crmscore.models.tasks import get_task

        task = get_task(task_name)
        settings = task.settings(cfg.tasks.get(task_name), **overrides)
        return train_task(task, cfg, settings, as_of=as_of, data=data, register=False, progress=False)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    task: str
    dataset: str
    configs: tuple[str, ...]  # configs (relative to the repo) whose data the section needs
    run: Callable[[Context, Any], list[Bar]]  # (context, loaded configs) -> bars


SECTIONS: dict[str, Section] = {}


def section(key: str, title: str, task: str, dataset: str, *configs: str
            ) -> Callable[[Callable[..., list[Bar]]], Callable[..., list[Bar]]]:
    """Register a section. Its function gets (ctx, cfgs) with cfgs in the order of `configs`; it runs only
    when every configured data file of every config is present, and is skipped with a message otherwise."""

    def deco(fn: Callable[..., list[Bar]]) -> Callable[..., list[Bar]]:
        SECTIONS[key] = Section(key, title, task, dataset, tuple(configs), fn)
        return fn

    return deco


def _auc(d: dict[str, Any]) -> float:
    v = d.get("roc_auc", math.nan)
    return float(v) if v is not None else math.nan


# ----------------------------------------------------------------------------- churn

TELCO_MIN_AUC = 0.85
CJ_AS_OF = ("2017-10-01", "2017-11-15", "2018-01-01")


@section("churn-telco", "Churn, IBM Telco feature table", "churn", "telco", "training/configs/telco.yaml")
def churn_telco(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    (cfg,) = cfgs
    r = ctx.train("churn", cfg)
    auc = float(r.metrics["roc_auc"])
    refs = {name: _auc(m) for name, m in r.baselines.items()}
    cv = r.metrics.get("cv_roc_auc_mean")
    note = f"cv ROC-AUC {cv:.4f} +/- {r.metrics.get('cv_roc_auc_std', math.nan):.4f}" if cv is not None else ""
    return [Bar("churn", "telco", str(r.dataset.cutoffs.get("split", "held-out test")), "roc_auc",
                f">= {TELCO_MIN_AUC:.2f}", PASS if auc >= TELCO_MIN_AUC else FAIL, auc, refs,
                int(r.metrics.get("test_rows", 0)), note)]


@section("churn-completejourney", "Churn, Complete Journey transactions (out-of-time)", "churn",
         "completejourney", "training/configs/completejourney.yaml")
def churn_completejourney(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    from crmscore.data.loader import load_customer_data

    (cfg,) = cfgs
    data = load_customer_data(cfg)  # loaded once, shared by the three runs
    bars = []
    for as_of in CJ_AS_OF:
        r = ctx.train("churn", cfg, as_of=as_of, data=data)
        auc = float(r.metrics["roc_auc"])
        refs = {name: _auc(m) for name, m in r.baselines.items()}
        beaten = {n: math.isfinite(v) and auc > v for n, v in refs.items()}
        failed = [f"{n} ({'did not compute' if not math.isfinite(refs[n]) else f'{refs[n]:.4f}'})"
                  for n, ok in beaten.items() if not ok]
        test = str(r.dataset.cutoffs["test"])[:10]
        note = f"as_of {as_of}; best iteration {int(r.metrics.get('best_iteration', 0))}"
        if failed:
            note += "; not beaten: " + ", ".join(failed)
        bars.append(Bar("churn", "completejourney", test, "roc_auc", "> every baseline",
                        PASS if refs and all(beaten.values()) else FAIL, auc, refs,
                        int(r.metrics.get("test_rows", 0)), note))
    return bars


# ----------------------------------------------------------------------------- next purchase

NP_AS_OF = CJ_AS_OF  # the churn bars' training dates: test cutoffs 30 days (the horizon) before each


def _beats(task: str, r: Any, metric: str, must_beat: tuple[str, ...], as_of: str, note: str = "",
           dataset: str = "completejourney") -> Bar:
    """A bar: the model's metric above each named baseline's (a baseline that did not compute counts as
    not beaten); every baseline is shown."""
    value = float(r.metrics[metric])
    refs = {name: float(m.get(metric, math.nan)) for name, m in r.baselines.items()}
    failed = [f"{n} ({'did not compute' if not math.isfinite(refs.get(n, math.nan)) else f'{refs[n]:.4f}'})"
              for n in must_beat if not (math.isfinite(refs.get(n, math.nan)) and value > refs[n])]
    note = f"as_of {as_of}" + (f"; {note}" if note else "") + ("; not beaten: " + ", ".join(failed) if failed else "")
    return Bar(task, dataset, str(r.dataset.cutoffs["test"])[:10], metric,
               "> " + (" and ".join(must_beat) if len(must_beat) < len(refs) else "every baseline"),
               FAIL if failed else PASS, value, refs, int(r.metrics.get("test_rows", 0)), note)


def _cj_bars(ctx: Context, cfgs: list[Any], task: str, metric: str, must_beat: tuple[str, ...] | None,
             note: Callable[[dict[str, float]], str]) -> list[Bar]:
    """Train `task` as of each NP_AS_OF date (data loaded once) and check `metric` against the baselines in
    must_beat (None: every baseline); note(metrics) adds the other numbers."""
    from crmscore.data.loader import load_customer_data

    (cfg,) = cfgs
    data = load_customer_data(cfg)
    bars = []
    for as_of in NP_AS_OF:
        r = ctx.train(task, cfg, as_of=as_of, data=data)
        bars.append(_beats(task, r, metric, must_beat or tuple(r.baselines), as_of, note(r.metrics)))
    return bars


@section("next-purchase-completejourney", "Next purchase probability (+ days to next), Complete Journey", "next-purchase",
         "completejourney", "training/configs/completejourney.yaml")
def next_purchase_completejourney(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    return _cj_bars(ctx, cfgs, "next-purchase", "roc_auc", None, lambda m: (
        f"days to next: MAE {m['days_to_next_mae']:.2f} on {int(m['days_to_next_test_rows'])} buyers (usual-gap "
        f"baseline {m['days_to_next_mae_baseline']:.2f}), 80% interval covers {m['days_to_next_interval_coverage']:.0%}"))


@section("expected-spend-completejourney", "Expected spend in the horizon, Complete Journey", "expected-spend",
         "completejourney", "training/configs/completejourney.yaml")
def expected_spend_completejourney(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    return _cj_bars(ctx, cfgs, "expected-spend", "normalized_gini", ("bgnbd_gamma_gamma",), lambda m: (
        f"Spearman {m['spearman']:.3f}, decile MAPE {m['decile_mape']:.3f}, total spend error "
        f"{m['total_spend_error']:+.1%}"))


@section("next-category-completejourney", "Next category (cross-sell), Complete Journey", "next-category",
         "completejourney", "training/configs/completejourney.yaml")
def next_category_completejourney(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    return _cj_bars(ctx, cfgs, "next-category", "hit_rate_at_3", ("popularity", "copurchase"), lambda m: (
        f"{int(m['rows'])} buyers of {int(m['targets'])} categories; hit rate @1 {m['hit_rate_at_1']:.3f}, "
        f"@5 {m['hit_rate_at_5']:.3f}, NDCG {m['ndcg']:.3f}, mean ROC-AUC {m['mean_roc_auc']:.3f}; cross-sell "
        f"view (regular categories left out) hit rate @3 {m['xsell_hit_rate_at_3']:.3f}"))


# ----------------------------------------------------------------------------- complete baskets (Ta-Feng)
# Issue 18: next category where baskets are complete. 92 shared days (2000-11-01 to 2001-01-31) with a 14-day
# horizon: each as-of date needs test + validation + training label windows (3 x 14 days) after 14 days of
# history. Test cutoffs (as of - 14): 2001-01-04, 01-11 and 01-18, windows ending by 2001-02-01. Settings were
# chosen (bench/next_category_choices.py) on validation as-of dates 2000-12-28 and 2001-01-04, whose test
# windows end by 2001-01-04, the first test cutoff here.

TF_AS_OF = ("2001-01-18", "2001-01-25", "2001-02-01")
TF_NEXT_BASKET_MUST_BEAT = ("popularity", "copurchase", "most_bought")


def _tafeng_note(m: dict[str, float], view: str) -> str:
    p = "xsell_" if view == "cross-sell" else ""
    note = (f"co-purchase blend weight {m.get('copurchase_blend', 0):g}, repeat-rate blend "
            f"{m.get('repeat_blend', 0):g}; "
            f"{view} view: {int(m[p + 'rows'])} buyers of {int(m['targets'])} categories; hit rate @1 "
            f"{m[p + 'hit_rate_at_1']:.3f}, @5 {m[p + 'hit_rate_at_5']:.3f}; precision @1/3/5 "
            f"{m[p + 'precision_at_1']:.3f}/{m[p + 'precision_at_3']:.3f}/{m[p + 'precision_at_5']:.3f}; NDCG "
            f"{m[p + 'ndcg']:.3f}; mean per-category ROC-AUC {m[p + 'mean_roc_auc']:.3f}")
    if view == "cross-sell":
        note += f"; buyer coverage of the targets {m.get('buyer_coverage', math.nan):.1%}"
        if "days_to_category_mae" in m:
            note += (f"; days to the top cross-sell category: MAE {m['days_to_category_mae']:.2f} on "
                     f"{int(m['days_to_category_test_rows'])} buyers of it (usual-gap baseline "
                     f"{m['days_to_category_mae_baseline']:.2f}), 10-90% interval covers "
                     f"{m['days_to_category_interval_coverage']:.0%}")
    return note


@section("next-category-tafeng", "Next category and cross-sell on complete baskets, Ta-Feng", "next-category",
         "tafeng", "training/configs/ta_feng.yaml")
def next_category_tafeng(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    """Two bars per test cutoff: cross-sell hit rate at 3 (categories bought in the lookback left out) above every
    baseline; next-basket hit rate at 3 above popularity, co-purchase rules and the customer's most-bought."""
    from crmscore.data.loader import load_customer_data

    (cfg,) = cfgs
    data = load_customer_data(cfg)
    bars = []
    for as_of in [a for a in TF_AS_OF if not ctx.as_of_only or a in ctx.as_of_only]:
        r = ctx.train("next-category", cfg, as_of=as_of, data=data)
        xsell = _beats("next-category", r, "xsell_hit_rate_at_3", tuple(r.baselines), as_of,
                       _tafeng_note(r.metrics, "cross-sell"), "tafeng")
        xsell.task = "next-category (cross-sell)"
        basket = _beats("next-category", r, "hit_rate_at_3", TF_NEXT_BASKET_MUST_BEAT, as_of,
                        _tafeng_note(r.metrics, "next-basket"), "tafeng")
        basket.task = "next-category (next basket)"
        bars += [xsell, basket]
    return bars


# ----------------------------------------------------------------------------- sparse buyers (Online Retail)
# Issue 12: on sparse, long-gap buying BG/NBD is the baseline to beat. Nine shared months (2010-12-01 to
# 2011-08-31) hold test (horizon), validation (horizon) and training label windows before each as-of date, so the
# horizons are 30 days (3 x 90 would take 270 of the 273 days); the three as-of dates end their test windows
# by 2011-09-01. Settings were chosen on the validation as-of dates in training/configs/online_retail.yaml, whose
# test windows end before every test cutoff here.

OR_AS_OF = ("2011-08-01", "2011-08-15", "2011-09-01")
OR_MARGIN = 0.01  # the bar: ahead of every baseline by this much on average, and ahead at every cutoff


def _margin_bars(ctx: Context, cfg: Any, task: str, metric: str, must_beat: tuple[str, ...] | None,
                 as_ofs: tuple[str, ...], dataset: str, margin: float,
                 note: Callable[[dict[str, float]], str] = lambda m: "") -> list[Bar]:
    """Train `task` as of each date (data loaded once). Each bar: the model above every baseline in must_beat
    (None: all) at that test cutoff; with margin > 0, also ahead of the best of them by `margin` on average over
    the dates (the last bar carries the average and fails when it is short)."""
    from crmscore.data.loader import load_customer_data

    data = load_customer_data(cfg)
    bars, gaps = [], []
    for as_of in as_ofs:
        r = ctx.train(task, cfg, as_of=as_of, data=data)
        names = must_beat or tuple(r.baselines)
        bar = _beats(task, r, metric, names, as_of, note(r.metrics), dataset)
        best = max((bar.references.get(n, math.nan) for n in names), default=math.nan)
        gaps.append(bar.model - best if math.isfinite(best) else -math.inf)
        bar.note += f"; ahead of the best baseline by {bar.model - best:+.4f}"
        bar.requirement = f"> {'every baseline' if must_beat is None else ' and '.join(names)}" + (
            f", mean margin >= {margin}" if margin else "")
        bars.append(bar)
    if margin and bars:
        mean = sum(gaps) / len(gaps)
        bars[-1].note += f"; mean margin over the {len(gaps)} cutoffs {mean:+.4f} (bar {margin:+.2f})"
        if not mean >= margin:
            for b in bars:
                b.status = FAIL
    return bars


@section("churn-onlineretail", "Churn, Online Retail (sparse buyers, out-of-time)", "churn", "onlineretail",
         "training/configs/online_retail.yaml")
def churn_onlineretail(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    return _margin_bars(ctx, cfgs[0], "churn", "roc_auc", None, OR_AS_OF, "onlineretail", OR_MARGIN,
                        lambda m: f"best iteration {int(m.get('best_iteration', 0))}")


@section("next-purchase-onlineretail", "Next purchase probability, Online Retail (sparse buyers)", "next-purchase",
         "onlineretail", "training/configs/online_retail.yaml")
def next_purchase_onlineretail(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    return _margin_bars(ctx, cfgs[0], "next-purchase", "roc_auc", None, OR_AS_OF, "onlineretail", OR_MARGIN,
                        lambda m: f"best iteration {int(m.get('best_iteration', 0))}")


@section("expected-spend-onlineretail", "Expected spend in the horizon, Online Retail (sparse buyers)",
         "expected-spend", "onlineretail", "training/configs/online_retail.yaml")
def expected_spend_onlineretail(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    return _margin_bars(ctx, cfgs[0], "expected-spend", "normalized_gini", None, OR_AS_OF, "onlineretail",
                        OR_MARGIN, lambda m: f"Spearman {m['spearman']:.3f}, total spend error "
                                             f"{m['total_spend_error']:+.1%}")


# ----------------------------------------------------------------------------- synthetic transactions
# The demo's generated data (5,000 customers, seed 42, as lookalike-synthetic): the BTYD features must not make the
# transactional tasks worse where the behaviour is known. Bar: above every baseline at each cutoff.

SYNTHETIC_AS_OF_DAYS_BEFORE_END = (60, 30, 0)  # as-of dates: the day after the data ends, and 30 and 60 days earlier


def _synthetic_config(ctx: Context) -> Any:
    """The demo's data written to the temp folder (once), and the shipped synthetic config pointed at it."""
    import yaml

    from crmscore import synthetic
    from crmscore.config import load_config

    folder = ctx.tmp / "synthetic"
    if not (folder / "transactions.parquet").exists():
        synthetic.write(synthetic.generate(customers=5000, seed=42), folder)  # the demo's data
    raw = yaml.safe_load((ctx.root / "training/configs/synthetic.yaml").read_text())
    for source in raw["data"].values():
        source["path"] = str(folder / Path(source["path"]).name)
    raw["validation"]["quarantine_dir"] = str(ctx.tmp / "quarantine" / "synthetic")
    (ctx.tmp / "synthetic.yaml").write_text(yaml.safe_dump(raw))
    return ctx.adjusted(load_config(ctx.tmp / "synthetic.yaml"))


def _synthetic_bars(ctx: Context, task: str, metric: str, must_beat: tuple[str, ...] | None) -> list[Bar]:
    import pandas as pd

    from crmscore.data.loader import load_customer_data

    cfg = _synthetic_config(ctx)
    end = load_customer_data(cfg).default_as_of()
    as_ofs = tuple(str((end - pd.Timedelta(days=d)).date()) for d in SYNTHETIC_AS_OF_DAYS_BEFORE_END)
    return _margin_bars(ctx, cfg, task, metric, must_beat, as_ofs, "synthetic", 0.0)


@section("churn-synthetic", "Churn, synthetic demo data", "churn", "synthetic")
def churn_synthetic(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    return _synthetic_bars(ctx, "churn", "roc_auc", None)


@section("next-purchase-synthetic", "Next purchase probability, synthetic demo data", "next-purchase", "synthetic")
def next_purchase_synthetic(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    return _synthetic_bars(ctx, "next-purchase", "roc_auc", None)


@section("expected-spend-synthetic", "Expected spend, synthetic demo data", "expected-spend", "synthetic")
def expected_spend_synthetic(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    return _synthetic_bars(ctx, "expected-spend", "normalized_gini", ("bgnbd_gamma_gamma",))


# ----------------------------------------------------------------------------- lookalike
# Each bar trains as `crmscore train lookalike` does (crmscore.models.lookalike.train_lookalike, logged to MLflow,
# not registered): a quarter of the seed is hidden, and the model's recall of the hidden members at the top of the
# ranking is compared with cosine similarity to the seed's centroid. With ~50 hidden members one split moves
# recall by several points, so each bar is the mean over LOOKALIKE_SPLITS hidden splits (settings.seed).

LOOKALIKE_MIN_RECALL = 0.6
LOOKALIKE_SPLITS = (17, 18, 19)
# The issue asks for one department; chosen before any run: fresh produce. Measured once over five other splits
# (recall@10%, model vs centroid): PRODUCE 0.58 vs 0.50 (ahead on all five), DELI 0.53 vs 0.47 (tied on one),
# MEAT 0.68 vs 0.48, DRUG GM 0.72 vs 0.55, GROCERY 0.98 vs 0.89.
LOOKALIKE_DEPARTMENT = "PRODUCE"


def _lookalike_runs(cfg: Any, name: str, **kwargs: Any) -> list[Any]:
    from crmscore.models.lookalike import LookalikeSettings, train_lookalike

    exclude = kwargs.pop("exclude", None)
    return [train_lookalike(cfg, name, LookalikeSettings.from_config(cfg, exclude=exclude, seed=split),
                            register=False, **kwargs) for split in LOOKALIKE_SPLITS]


def _lookalike_bar(dataset: str, runs: list[Any], metric: str, requirement: str, rule: Callable[[float, float], bool],
                   note: str) -> Bar:
    """The mean over the splits of the model's metric and of each baseline's; rule(model, centroid) decides."""
    model = sum(r.metrics[metric] for r in runs) / len(runs)
    refs = {name: sum(r.baselines[name][metric] for r in runs) / len(runs) for name in runs[0].baselines}
    m = runs[0].metrics
    per_split = ", ".join(f"{r.metrics[metric]:.3f}/{r.baselines['centroid'][metric]:.3f}" for r in runs)
    at10 = [(r.metrics["recall_top10"], r.baselines["centroid"]["recall_top10"]) for r in runs]
    needed = [r.metrics.get("seed_size_needed") for r in runs]
    note += (f"; {metric} model/centroid per split: {per_split}; recall@10% {sum(a for a, _ in at10) / len(runs):.3f} "
             f"(centroid {sum(c for _, c in at10) / len(runs):.3f}); seed size from which the model beats the "
             f"centroid: {', '.join(str(int(n)) if n else 'none tried' for n in needed)}")
    test = f"{len(runs)} splits, {int(m['seed_hidden'])} of {int(m['seed_size'])} seed hidden"
    return Bar("lookalike", dataset, test, metric, requirement, PASS if rule(model, refs["centroid"]) else FAIL, model,
               refs, int(m["candidates"]), note)


@section("lookalike-synthetic", "Lookalike, synthetic latent segment young_family", "lookalike", "synthetic")
def lookalike_synthetic(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    import pandas as pd

    cfg = _synthetic_config(ctx)
    folder = ctx.tmp / "synthetic"
    truth = pd.read_parquet(folder / "truth.parquet")
    seed = ctx.tmp / "young_families.txt"
    seed.write_text("\n".join(truth.loc[truth["latent_segment"] == "young_family", "customer_id"].astype(str)))
    runs = _lookalike_runs(cfg, "young-families", seed_file=seed)
    return [_lookalike_bar("synthetic", runs, "recall_top10", f">= {LOOKALIKE_MIN_RECALL}",
                           lambda model, centroid: model >= LOOKALIKE_MIN_RECALL,
                           "seed file: the latent segment's customers from truth.parquet (5,000 customers, seed 42)")]


@section("lookalike-completejourney", "Lookalike, Complete Journey department spenders", "lookalike",
         "completejourney", "training/configs/completejourney.yaml")
def lookalike_completejourney(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    from crmscore.data.loader import load_customer_data
    from crmscore.features.definitions import slug

    (cfg,) = cfgs
    data = load_customer_data(cfg)
    dept = LOOKALIKE_DEPARTMENT
    # households with a purchase in 2017 H1 (the population at 2017-07-01), ranked by H1 spend on the department
    top = data.con.execute(
        "WITH h1 AS (SELECT customer_id, SUM(CASE WHEN category = ? THEN amount ELSE 0 END) AS spend FROM lines "
        "WHERE ts < TIMESTAMP '2017-07-01' GROUP BY 1) SELECT customer_id FROM h1 ORDER BY spend DESC, customer_id "
        "LIMIT (SELECT CAST(ROUND(COUNT(*) / 10) AS BIGINT) FROM h1)", [dept]).fetchall()
    seed = ctx.tmp / f"top_decile_{slug(dept)}.txt"
    seed.write_text("\n".join(str(row[0]) for row in top))
    runs = _lookalike_runs(cfg, f"top-{slug(dept)}", seed_file=seed, as_of="2017-07-01",
                           exclude=[f"category_share_{slug(dept)}"], data=data)
    return [_lookalike_bar("completejourney", runs, "recall_top10", "> centroid", lambda m, c: m > c,
                           f"seed: top decile of 2017 H1 spend on {dept}, as of 2017-07-01, excluded "
                           f"{', '.join(runs[0].excluded)}")]


@section("lookalike-telco", "Lookalike, IBM Telco feature table, seed = churned subscribers", "lookalike", "telco",
         "training/configs/telco.yaml")
def lookalike_telco(ctx: Context, cfgs: list[Any]) -> list[Bar]:
    import pandas as pd

    (cfg,) = cfgs
    ft = cfg.data.features
    raw = pd.read_parquet(cfg.resolve(ft.path))
    seed = ctx.tmp / "telco_churned.csv"
    churned = raw.loc[raw[ft.label].astype(str) == str(ft.positive), [ft.id]]
    churned.rename(columns={ft.id: "customer_id"}).to_csv(seed, index=False)
    runs = _lookalike_runs(cfg, "telco-churned", seed_file=seed)
    return [_lookalike_bar("telco", runs, "recall_top20", "> centroid", lambda m, c: m > c,
                           "seed file: the churned subscribers (the Churn column is not a feature)")]


# ----------------------------------------------------------------------------- running and printing


def run_section(sec: Section, ctx: Context) -> list[Bar]:
    cfgs = [ctx.config(c) for c in sec.configs]
    missing = [p for cfg in cfgs for p in ctx.missing(cfg)]
    if missing:
        print(f"SKIP {sec.key}: data not found: {', '.join(missing)} (the team's real datasets live in "
              f"../shared/data next to the repo; a machine outside the team has none)", flush=True)
        return [Bar(sec.task, sec.dataset, "-", "-", "-", SKIP,
                    note=f"skipped, data not found ({len(missing)} file(s))")]
    print(f"running {sec.key}: {sec.title} ...", flush=True)
    t = time.perf_counter()
    try:
        bars = sec.run(ctx, cfgs)
    except Exception as exc:  # a section that crashes is a failed bar, reported, never hidden
        logging.getLogger("bench.quality").exception("section %s failed", sec.key)
        bars = [Bar(sec.task, sec.dataset, "-", "-", "runs", FAIL,
                    note=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")]
    print(f"  done in {time.perf_counter() - t:.0f} s", flush=True)
    return bars


def _fmt(v: float) -> str:
    return f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else "-"


def table(bars: list[Bar]) -> str:
    refs: list[str] = []
    for b in bars:
        refs += [n for n in b.references if n not in refs]
    head = ["task", "dataset", "test", "rows", "metric", "model", *refs, "bar", "result"]
    body = [[b.task, b.dataset, b.test, f"{b.rows:,}" if b.rows else "-", b.metric, _fmt(b.model),
             *[_fmt(b.references.get(n, math.nan)) for n in refs], b.requirement, b.status] for b in bars]
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    right = {"rows", "model", *refs}

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if h in right else str(c).ljust(w) for c, w, h in zip(cells, widths, head))

    out = [line(head), "  ".join("-" * w for w in widths), *map(line, body)]
    notes = [f"  {b.task}/{b.dataset} {b.test}: {b.note}" for b in bars if b.note]
    return "\n".join(out + (["", "notes:", *notes] if notes else []))


def _artifacts_for(tracking_uri: str | None, tmp: Path) -> str:
    """Default artifact root: the temp folder, or next to a given SQLite store (kept with it)."""
    prefix = "sqlite:///"
    if tracking_uri and tracking_uri.startswith(prefix):
        return str(Path(tracking_uri[len(prefix):]).expanduser().resolve().parent / "mlruns")
    return os.environ.get("CRMSCORE_ARTIFACT_LOCATION") if tracking_uri and os.environ.get(
        "CRMSCORE_ARTIFACT_LOCATION") else str(tmp / "mlruns")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", metavar="SECTION",
                    help=f"Sections to run (default all: {', '.join(SECTIONS)}).")
    ap.add_argument("--tracking-uri", help="MLflow tracking URI for the runs (default: a temporary SQLite store, "
                                           "deleted afterwards).")
    ap.add_argument("--artifact-location", help="Artifact root for new experiments (default: a temporary folder).")
    ap.add_argument("--json", type=Path, help="Also write the bars as JSON to this file.")
    ap.add_argument("--without-btyd", action="store_true",
                    help="Turn the buy-till-you-die features off in every config (features.btyd_horizons: []), to "
                         "measure what they add.")
    ap.add_argument("--as-of", nargs="+", default=(), metavar="DATE",
                    help="next-category-tafeng: run only these of its as-of dates (to run them in parallel "
                         "processes on a busy machine).")
    ap.add_argument("-v", "--verbose", action="store_true", help="Log the library's INFO messages.")
    args = ap.parse_args(argv)

    unknown = sorted(set(args.only or []) - set(SECTIONS))
    if unknown:
        ap.print_usage(sys.stderr)
        print(f"unknown section(s) {unknown}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    import mlflow  # noqa: F401  (MLflow sets up its loggers on import; quieten them after that)

    for noisy in ("mlflow", "alembic", "urllib3", "shap"):
        logging.getLogger(noisy).setLevel(logging.WARNING if args.verbose else logging.ERROR)
    if not args.verbose:  # e.g. MLflow's hint about integer columns in the logged model signature
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")

    prefix = "sqlite:///"
    if args.tracking_uri and args.tracking_uri.startswith(prefix) and not args.tracking_uri.startswith(prefix + "/"):
        # a relative SQLite path means relative to where the bench was started, not the repo root
        args.tracking_uri = prefix + str(Path(args.tracking_uri[len(prefix):]).expanduser().resolve())
    tmp = Path(tempfile.mkdtemp(prefix="crmscore-quality-"))
    # read by crmscore.settings at every registry.configure(): set before any training
    os.environ["CRMSCORE_TRACKING_URI"] = args.tracking_uri or f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["CRMSCORE_ARTIFACT_LOCATION"] = args.artifact_location or _artifacts_for(args.tracking_uri, tmp)
    os.environ.pop("CRMSCORE_REGISTRY_URI", None)
    print(f"MLflow tracking: {os.environ['CRMSCORE_TRACKING_URI']}"
          f"{'' if args.tracking_uri else ' (temporary, deleted at the end)'}", flush=True)
    ctx = Context(REPO, tmp, args.without_btyd, tuple(args.as_of))
    bars: list[Bar] = []
    cwd = os.getcwd()
    try:
        os.chdir(REPO)  # config paths are relative to the repo root
        for key in args.only or list(SECTIONS):
            bars += run_section(SECTIONS[key], ctx)
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(table(bars))
    failed = [b for b in bars if b.status == FAIL]
    checked = [b for b in bars if b.status != SKIP]
    print()
    print(f"{len(checked) - len(failed)}/{len(checked)} bars passed"
          + (f", {len(bars) - len(checked)} section(s) skipped" if len(checked) < len(bars) else "")
          + (": FAIL" if failed else ": PASS" if checked else ": nothing checked"))
    if args.json:
        args.json.write_text(json.dumps([asdict(b) for b in bars], indent=1, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
