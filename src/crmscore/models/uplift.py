"""Uplift: whom a campaign changes, not who will buy. One task per campaign, `uplift-<campaign>`.

Data: the campaign's rows of the `treatments` table (customer, treated 1/0 at random, time) and the purchases
after each customer's treatment time, or a ready experiment table (data.features with `treatment` and the
outcome as `label`).
- Features: point-in-time at midnight before the campaign's first treatment (nothing the campaign caused, or
  the day of it, is a feature). Outcome (`outcome: purchase`, default): 1 when the customer buys (an order
  with a positive net amount) in the `horizon_days` after their own treatment time; `spend` is the net amount
  there (the outcome with `outcome: spend`, and the revenue measure either way).
- Split: the campaign is one experiment at one time, so there is no out-of-time test: train / validation /
  test rows are a stratified random split (by treatment and outcome, fixed seed). Validation rows stop
  every model early; promotion compares models on the challenger's logged test rows.
- Model: crmscore.models.uplift_learner (response-scaled, S-, X-, DR-learner or transformed outcome, on LightGBM,
  chosen by the one-standard-error rule on out-of-fold AUUC over the training and validation rows, or on the
  validation rows' AUUC with `selection: validation`). Primary metric: the Qini coefficient
  (crmscore.models.uplift_evaluation), against baselines that a marketer would otherwise use: target
  everyone (the random line), target by churn score (days since the last purchase; a feature table: the
  least likely to buy first), target by purchase probability (a LightGBM response model that ignores
  treatment).
- Scoring: each customer's expected lift with SHAP reasons of the chosen learner's lift, the outcome with and without
  the campaign, and a quadrant (crmscore.models.quadrants).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from crmscore.config import ProjectConfig
from crmscore.data.loader import CustomerData
from crmscore.errors import ConfigError, DataContractError
from crmscore.models import baselines as common_baselines
from crmscore.models.tasks import Baseline, BaselineInput, Task, TaskSettings, register_task, register_task_family
from crmscore.models.uplift_evaluation import grade_margin as uplift_grade_margin

log = logging.getLogger(__name__)
PREFIX = "uplift-"


class UpliftSettings(TaskSettings):
    """Settings of tasks.uplift-<campaign> (or tasks.uplift for every campaign)."""

    campaign: str = Field(default="", description="The campaign's name in the treatments table.")
    outcome: Literal["purchase", "spend"] = Field(default="purchase", description=(
        "What the campaign should move: a purchase in the horizon (lift in points of probability) or spend."))
    share: float = Field(default=0.3, gt=0, le=1, description="Share of customers targeted in the report's "
                         "incremental purchases and revenue.")
    min_lift: float = Field(default=0.02, ge=0, description="Quadrants: a lift at or above this (a purchase "
                            "outcome: points of probability, 0.02 = 2 points) is persuadable, at or below minus "
                            "this do-not-disturb.")
    sure_thing_probability: float = Field(default=0.5, gt=0, lt=1, description="Quadrants: without the campaign "
                                          "a customer this likely to buy anyway is a sure thing, else a lost cause.")
    methods: list[Literal["rs", "s", "x", "dr", "to"]] = Field(
        default=["rs", "s", "x", "dr", "to"], min_length=1, description="The learners to choose among "
        "(crmscore.models.uplift_learner): response-scaled, S-, X-, DR-learner, transformed outcome.")
    selection: Literal["out_of_fold", "validation"] = Field(default="out_of_fold", description=(
        "Where the learners' AUUC is measured to choose one: out-of-fold over the training and validation rows "
        "(3 folds; 2-3 times the fitting) or the validation rows alone. Never the test rows."))


# -- outcomes from treatments and purchases --------------------------------------------------------
def campaign_rows(data: CustomerData, campaign: str, horizon_days: int) -> pd.DataFrame:
    """The campaign's customers: customer_id, treated (1/0), treated_at, and from the purchases in
    [treated_at, treated_at + horizon): orders, spend (net, currency) and purchase (1/0); and the same for the
    horizon before treated_at (pre_orders, pre_spend, pre_purchase: pre-period behaviour for CUPED)."""
    if not data.has("treatments"):
        raise ConfigError("uplift needs the campaign's experiment: map data.treatments (customer_id, campaign, "
                          "treated 1/0, ts) in the config, or use a ready table with data.features.treatment")
    con = data.con
    camp = campaign.replace("'", "''")
    bad = con.execute("SELECT count(*), any_value(CAST(treated AS VARCHAR)) FROM treatments WHERE treated NOT IN (0, 1)"
                      ).fetchone()
    if bad[0]:
        raise DataContractError(f"treatments.treated: {bad[0]:,} rows are neither 1 (treated) nor 0 (control), e.g. "
                                f"{bad[1]!r}; map it in data.treatments.columns.treated, e.g. "
                                f"\"CASE WHEN grp = 'treatment' THEN 1 ELSE 0 END\"")
    n = con.execute(f"SELECT count(*) FROM treatments WHERE campaign = '{camp}'").fetchone()[0]
    if not n:
        known = [r[0] for r in con.execute("SELECT DISTINCT campaign FROM treatments ORDER BY 1 LIMIT 20").fetchall()]
        raise DataContractError(f"treatments.campaign: no rows for campaign {campaign!r} (campaigns: "
                                f"{', '.join(map(str, known)) or 'none'}); pass one of them to --campaign")
    both = con.execute(f"SELECT customer_id FROM treatments WHERE campaign = '{camp}' GROUP BY customer_id "
                       f"HAVING min(treated) <> max(treated) LIMIT 3").fetchall()
    if both:
        raise DataContractError(f"treatments.treated: customers {[r[0] for r in both]} are both treated and control "
                                f"in campaign {campaign!r}; keep one assignment per customer and campaign")
    h = int(horizon_days)
    window = ("SUM(CASE WHEN l.ts >= tr.treated_at AND l.ts < tr.treated_at + INTERVAL {h} DAY THEN l.amount END)",
              "SUM(CASE WHEN l.ts < tr.treated_at AND l.ts >= tr.treated_at - INTERVAL {h} DAY THEN l.amount END)")
    return con.execute(
        f"WITH tr AS (SELECT customer_id, max(treated)::BIGINT AS treated, min(ts) AS treated_at FROM treatments "
        f"WHERE campaign = '{camp}' GROUP BY customer_id), "
        f"o AS (SELECT tr.customer_id, l.order_key, {window[0].format(h=h)} AS post, {window[1].format(h=h)} AS pre "
        f"FROM tr JOIN lines l ON l.customer_id = tr.customer_id AND l.ts >= tr.treated_at - INTERVAL {h} DAY "
        f"AND l.ts < tr.treated_at + INTERVAL {h} DAY GROUP BY tr.customer_id, l.order_key) "
        f"SELECT tr.customer_id, tr.treated, tr.treated_at, "
        f"CAST(count(*) FILTER (WHERE o.post > 0) AS BIGINT) AS orders, COALESCE(sum(o.post), 0) AS spend, "
        f"CAST(count(*) FILTER (WHERE o.pre > 0) AS BIGINT) AS pre_orders, COALESCE(sum(o.pre), 0) AS pre_spend "
        f"FROM tr LEFT JOIN o USING (customer_id) GROUP BY tr.customer_id, tr.treated, tr.treated_at "
        f"ORDER BY tr.customer_id").df().astype({"customer_id": "string"}).assign(
        purchase=lambda d: (d["orders"] > 0).astype(np.int64),
        pre_purchase=lambda d: (d["pre_orders"] > 0).astype(np.int64))


def _split(frame: pd.DataFrame, s: UpliftSettings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stratified by treatment and outcome, so each part is a small copy of the experiment."""
    from sklearn.model_selection import train_test_split

    strata = frame["treated"].astype(int) * 2 + (frame["label"] > 0).astype(int)
    rest, test = train_test_split(frame, test_size=s.test_size, stratify=strata, random_state=s.seed)
    train, valid = train_test_split(rest, test_size=s.test_size / (1 - s.test_size),
                                    stratify=strata.loc[rest.index], random_state=s.seed)
    return tuple(p.reset_index(drop=True) for p in (train, valid, test))  # type: ignore[return-value]


def uplift_dataset(task: Task, cfg: ProjectConfig, data: CustomerData | None, s: UpliftSettings, as_of: Any,
                   progress: bool) -> Any:
    """The campaign's Dataset (crmscore.models.pipeline.Dataset): features before the campaign, outcome after
    each customer's treatment, the `treated` column, and `spend` as the revenue measure."""
    from crmscore.models.pipeline import GuardrailError
    from crmscore.models.run import Dataset

    if data is None:  # a ready experiment table
        from crmscore.models.feature_table import load_feature_table

        ft = cfg.data.features
        if ft is None or ft.treatment is None:
            raise ConfigError("uplift on a feature table needs data.features.treatment (the treated/control "
                              "column) and data.features.label (the outcome)")
        table = load_feature_table(cfg)
        frame = table.frame
        train, valid, test = _split(frame, s)
        fs = table.feature_set
        return Dataset(train, valid, test, fs.names, fs.categorical, fs, "feature_table",
                       {"split": f"stratified by treatment and outcome {1 - 2 * s.test_size:.0%}/{s.test_size:.0%}/"
                                 f"{s.test_size:.0%}, seed {s.seed}"},
                       None, table.decisions, settings=s, table_schema=table.schema)
    from crmscore.features.build import build_features, feature_set_for
    from crmscore.models.population import population_rule
    from crmscore.features.segments import RFMScorer

    rows = campaign_rows(data, s.campaign, s.horizon_days)
    start = pd.Timestamp(rows["treated_at"].min()).normalize()
    last = pd.Timestamp(rows["treated_at"].max())
    _, hi = data.ts_range()
    if last + pd.Timedelta(days=s.horizon_days) > hi.normalize() + pd.Timedelta(days=1):
        raise GuardrailError(f"campaign {s.campaign!r}: customers treated up to {last.date()} have a {s.horizon_days}-day "
                             f"outcome window past the last purchase in the data ({hi.date()}); shorten --horizon-days "
                             f"or wait for the data to cover it")
    fs = feature_set_for(data, start)
    feats = build_features(data, start, fs)
    label = "purchase" if s.outcome == "purchase" else "spend"
    frame = feats.merge(rows.assign(label=rows[label]), on="customer_id", how="inner")
    unknown = len(rows) - len(frame)
    if unknown:
        log.warning("campaign %s: %d of %d customers have no history before %s and are left out", s.campaign,
                    unknown, len(rows), start.date())
    frame.insert(1, "as_of", start)
    train, valid, test = _split(frame, s)
    rfm = RFMScorer(data.config.segments.rfm_window_days).fit(test).to_dict()
    return Dataset(train, valid, test, fs.names, fs.categorical, fs, "transactions",
                   {"campaign_start": start, "features_before": start, "outcome_days": s.horizon_days,
                    "split": f"stratified by treatment and outcome, seed {s.seed}"}, rfm, settings=s,
                   population=population_rule("known", s.lookback_days, data.config.segments.lifecycle))


# -- fitting -----------------------------------------------------------------------------------------
def fit_uplift(task: Task, ds: Any, s: UpliftSettings, params: dict[str, Any]) -> tuple[Any, dict[str, float], dict[str, Any]]:
    """Choose the uplift learner on the training and validation rows (s.selection), fit it on train (early stopping
    on valid) and measure it on the test rows. The run's metrics `<selection>_auuc_<method>` and
    `<selection>_gap_se_<method>` record what each candidate scored in the choice."""
    from crmscore.models.evaluation import ranking_metrics
    from crmscore.models.pipeline import _bundle
    from crmscore.models.uplift_evaluation import uplift_metrics
    from crmscore.models.uplift_learner import UpliftModel

    outcome = "binary" if s.outcome == "purchase" and ds.train["label"].isin([0, 1]).all() else "regression"
    model = UpliftModel(outcome, params, s.num_boost_round, s.seed, methods=s.methods, selection=s.selection)
    model.fit(ds.train[ds.features], ds.train["label"], ds.train["treated"], ds.valid[ds.features],
              ds.valid["label"], ds.valid["treated"])
    X = ds.test[ds.features]
    lift = model.predict(X)
    p0, p1 = model.outcomes(X)
    y, t = ds.test["label"].to_numpy(float), ds.test["treated"].to_numpy(float)
    spend = ds.test["spend"].to_numpy(float) if "spend" in ds.test else None
    metrics = uplift_metrics(y, t, lift, spend=spend, share=s.share)
    metrics.update({"best_iteration": float(model.best_iteration_), "test_positive_rate": float((y > 0).mean()),
                    "mean_predicted_lift": float(lift.mean()),
                    **{f"{s.selection}_auuc_{m}": v for m, v in model.selection_auuc_.items()},
                    **{f"{s.selection}_gap_se_{m}": v for m, v in model.selection_gap_se_.items()}})
    if outcome == "binary":  # how well each outcome model ranks its own group's buyers
        for name, p, group in (("control", p0, t == 0), ("treated", p1, t == 1)):
            metrics[f"{name}_outcome_roc_auc"] = ranking_metrics(y[group], p[group])["roc_auc"]
    bundle = _bundle(task, ds, s, model, lift)
    bundle.info["outcome"] = outcome
    bundle.info["uplift_method"] = model.method_  # which learner the training and validation rows chose
    bundle.info["uplift_selection"] = s.selection
    return bundle, metrics, {"scores": {"model": lift}, "p_control": p0, "p_treated": p1}


# -- baselines ---------------------------------------------------------------------------------------
def _everyone(inp: BaselineInput) -> np.ndarray:
    return np.zeros(len(inp.test))


def _purchase_probability(inp: BaselineInput) -> np.ndarray:
    """A response model: LightGBM of the outcome on every training row, treated or not."""
    from crmscore.models.estimator import CustomerModel, small_data_threads

    train = inp.train.sample(frac=1.0, random_state=inp.settings.seed)
    cut = int(len(train) * 0.8)
    binary = train["label"].isin([0, 1]).all()
    m = CustomerModel("binary" if binary else "regression", {**small_data_threads(len(train)), **inp.settings.params},
                      inp.settings.num_boost_round, calibrate=False)
    m.fit(train[inp.features].iloc[:cut], train["label"].iloc[:cut], train[inp.features].iloc[cut:],
          train["label"].iloc[cut:])
    return m.decision_function(inp.test[inp.features])


def _least_likely_to_buy(inp: BaselineInput) -> np.ndarray:
    return -_purchase_probability(inp)


EVERYONE = Baseline("target everyone", "Every customer scores the same: the random-targeting line.", _everyone)
PURCHASE = Baseline("purchase probability", "Highest P(outcome) first, from a LightGBM response model that "
                    "ignores treatment.", _purchase_probability)
CHURN = Baseline("churn score", "Longest since the last purchase first (the churn baseline's score).",
                 common_baselines.RECENCY.score)
CHURN_TABLE = Baseline("churn score", "Least likely to buy first (the response model reversed).",
                       _least_likely_to_buy)


def uplift_task(campaign: str) -> Task:
    """The task `uplift-<campaign>` (crmscore.models.tasks.get_task makes it on first use)."""
    if not campaign:
        raise ConfigError("uplift needs a campaign: --campaign <name>")
    return register_task(Task(
        name=f"{PREFIX}{campaign}",
        description=f"Expected lift of campaign {campaign!r} per customer (outcome if treated minus if not), from "
                    f"its treatment/control experiment",
        label_fn=lambda data, as_of, s: campaign_rows(data, campaign, s.horizon_days).assign(
            label=lambda d: d["purchase" if s.outcome == "purchase" else "spend"]),
        baselines=(EVERYONE, CHURN, PURCHASE),
        table_baselines=(EVERYONE, CHURN_TABLE, PURCHASE),
        reason_up="raises the campaign's lift",
        reason_down="lowers the campaign's lift",
        objective="uplift",
        primary_metric="qini",
        grade_margin=uplift_grade_margin,
        kind="uplift",
        defaults={"campaign": campaign, "horizon_days": 30, "min_positives": 50, "min_negatives": 50},
        settings_model=UpliftSettings,
        dataset=uplift_dataset,
        fit=fit_uplift,
        population="known",
    ))


register_task_family(PREFIX, uplift_task)
