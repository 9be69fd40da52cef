"""Lookalike audiences: from a seed audience to a ranked, explained expansion.

Model: positive-unlabelled learning. The seed is positive, every other customer unlabelled (some of them
are the lookalikes we look for). `bags` (6) LightGBM models each see ~80% of the seed and a fresh random sample
of the unlabelled (`unlabelled_per_positive` times as many, at least `min_unlabelled`), weighted so both
sides count equally; a hidden lookalike is a negative in only a few bags, so it cannot dominate
(bagging PU, Mordelet & Vert 2014). The bags are averaged into ONE LightGBM booster (leaf values / bags),
so the registered model is an ordinary crmscore CustomerModel: TreeSHAP reasons are exact for the
averaged score, and the registry, pyfunc and scoring service treat it like churn.

Similarity (0-1): Platt scaling of the averaged log-odds, fitted on out-of-bag scores with the seed and the
rest weighted equally. It reads as "the probability this customer is a seed member rather than an average
customer, at even odds": 0.5 = no more seed-like than average. Bands: high >= 0.85, medium >= 0.70,
low >= 0.55, else none.

Evaluation (in the same MLflow run): 25% of the seed is hidden before training and stays among the
unlabelled; recall of the hidden members in the top 1/5/10/20% of the ranking and lift, against the
centroid (cosine on standardised features) and random baselines; and a learning curve over seed sizes
giving the seed size from which the model beats the centroid (a warning below it; below `min_seed`
members training is refused). The registered model is the evaluated one (trained on the visible 75%), so
its metrics describe exactly what is served and `crmscore promote` compares like with like.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from crmscore.models.audience_evaluation import (
    centroid_scores,
    curve_sizes,
    needed_seed_size,
    random_reference,
    recall_at,
)
from crmscore.models.seeds import CampaignResponses, Seed, SeedError, excluded_features
from crmscore.config import ProjectConfig
from crmscore.data.loader import CustomerData
from crmscore.features.definitions import FeatureSet
from crmscore.models.bundle import TrainedModel
from crmscore.models.estimator import DEFAULT_PARAMS, CustomerModel, Explanation, small_data_threads
from crmscore.models.feature_table import TableSchema
from crmscore.models.pipeline import NON_FEATURES, GuardrailError

log = logging.getLogger(__name__)
TASK = "lookalike"
PREFIX = "lookalike-"
BANDS = (("high", 0.85), ("medium", 0.70), ("low", 0.55))
REASON_UP = "makes them more like the seed"
REASON_DOWN = "makes them less like the seed"
PRIMARY_METRIC = "capture_top10"  # recall of hidden seed members in the top 10% (`crmscore promote` compares it)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class LookalikeSettings(BaseModel):
    """Settings from the config's `tasks.lookalike` section (CLI flags win)."""

    model_config = ConfigDict(extra="forbid")

    exclude: list[str] = Field(default_factory=list, description="Features (or glob patterns) never used.")
    campaign_responses: CampaignResponses | None = Field(
        default=None, description="Where campaign responses are, for --seed-campaign.")
    lookback_days: int = Field(default=365, gt=0, description="Population: a purchase within this many days.")
    hidden_share: float = Field(default=0.25, gt=0, lt=0.5, description="Seed share hidden for evaluation.")
    min_seed: int = Field(default=50, ge=10, description="Refuse to train a smaller seed.")
    max_seed_share: float = Field(default=0.5, gt=0, lt=1, description="Refuse a seed above this population share.")
    bags: int = Field(default=6, ge=1, description="LightGBM models, each on a fresh unlabelled sample.")
    unlabelled_per_positive: float = Field(default=2.0, gt=0, description="Unlabelled rows per seed row in a bag.")
    min_unlabelled: int = Field(default=500, gt=0, description="Fewest unlabelled rows in a bag.")
    positive_fraction: float = Field(default=0.8, gt=0, le=1, description="Share of the seed in each bag.")
    num_boost_round: int = Field(default=300, gt=0)
    early_stopping_rounds: int = Field(default=30, gt=0)
    params: dict[str, Any] = Field(default_factory=dict, description="LightGBM parameters to override.")
    curve_bags: int = Field(default=3, ge=1, description="Bags per model on the seed-size curve.")
    curve_repeats: int = Field(default=2, ge=1, description="Seed draws per size on the seed-size curve.")
    explain_sample: int = Field(default=2000, gt=0, description="Rows used for the SHAP summary.")
    seed: int = 17

    @classmethod
    def from_config(cls, cfg: ProjectConfig, **overrides: Any) -> LookalikeSettings:
        from pydantic import ValidationError

        from crmscore.errors import ConfigError

        section = dict(cfg.tasks.get(TASK) or {})
        merged = {**section, **{k: v for k, v in overrides.items() if v is not None}}
        if overrides.get("exclude"):
            merged["exclude"] = [*section.get("exclude", []), *overrides["exclude"]]
        try:
            return cls(**merged)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"tasks.{TASK}: {problems}") from exc


# -- the estimator -------------------------------------------------------------------------------
def average_boosters(boosters: list[lgb.Booster]) -> lgb.Booster:
    """One booster whose raw score is the mean of the given boosters' raw scores (and whose TreeSHAP
    contributions are the mean of theirs): the trees of all, leaf values divided by their number.

    The boosters must share features and their encoding (same columns, same category levels)."""
    if len(boosters) == 1:
        return boosters[0]
    scale = 1.0 / len(boosters)
    header, trees, tail = "", [], ""
    for i, booster in enumerate(boosters):
        text = booster.model_to_string()
        head, _, rest = text.partition("\nTree=")
        body, _, end = ("Tree=" + rest).partition("end of trees")
        if i == 0:
            header = "\n".join(ln for ln in head.splitlines() if not ln.startswith("tree_sizes="))
            tail = end[end.index("parameters:"):] if "parameters:" in end else end
        for block in re.split(r"\n(?=Tree=\d+\n)", body.strip()):
            lines = []
            for ln in block.splitlines():
                key, sep, values = ln.partition("=")
                if key in ("leaf_value", "internal_value") and sep:
                    ln = f"{key}=" + " ".join(repr(float(v) * scale) for v in values.split())
                lines.append(ln)
            trees.append(lines)
    blocks = ["\n".join([f"Tree={k}", *lines[1:]]) for k, lines in enumerate(trees)]
    text = header + "\n\n" + "\n\n".join(blocks) + "\n\n\nend of trees\n\n" + tail
    return lgb.Booster(model_str=text)


class PUBaggingModel:
    """Seed (s=1) against unlabelled customers (s=0): bagged LightGBM, averaged into one booster.

    fit(X, s) learns `estimator_` (a CustomerModel: the averaged booster, the category levels of X and the
    out-of-bag Platt calibration) and `oob_raw_` (out-of-bag mean log-odds per row, NaN when a row was in
    every bag). predict_proba / explain delegate to it.
    """

    def __init__(self, bags: int = 6, unlabelled_per_positive: float = 2.0, min_unlabelled: int = 500,
                 positive_fraction: float = 0.8, params: dict[str, Any] | None = None, num_boost_round: int = 300,
                 early_stopping_rounds: int = 30, seed: int = 17):
        self.bags = bags
        self.unlabelled_per_positive = unlabelled_per_positive
        self.min_unlabelled = min_unlabelled
        self.positive_fraction = positive_fraction
        self.params = params or {}
        self.num_boost_round = num_boost_round
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed

    @classmethod
    def from_settings(cls, s: LookalikeSettings, bags: int | None = None, seed: int | None = None) -> PUBaggingModel:
        return cls(bags or s.bags, s.unlabelled_per_positive, s.min_unlabelled, s.positive_fraction, s.params,
                   s.num_boost_round, s.early_stopping_rounds, s.seed if seed is None else seed)

    def fit(self, X: pd.DataFrame, s: np.ndarray | pd.Series) -> PUBaggingModel:
        s = np.asarray(s, dtype=int)
        pos, unl = np.flatnonzero(s == 1), np.flatnonzero(s == 0)
        if len(pos) < 2 or len(unl) < 2:
            raise ValueError(f"PU learning needs seed and unlabelled rows; got {len(pos)} and {len(unl)}")
        est = CustomerModel("binary", self.params, self.num_boost_round, self.early_stopping_rounds)
        est.feature_names_ = [str(c) for c in X.columns]
        est.categories_ = {c: sorted(map(str, X[c].dropna().unique())) for c in X.columns
                           if not pd.api.types.is_numeric_dtype(X[c]) or isinstance(X[c].dtype, pd.CategoricalDtype)}
        Xe = est._encode(X)
        rng = np.random.default_rng(self.seed)
        n_pos = max(2, int(round(self.positive_fraction * len(pos))))
        # at most half the unlabelled in a bag, so every customer is out of bag for some of them
        n_unl = max(1, int(min(max(self.min_unlabelled, self.unlabelled_per_positive * n_pos), 0.5 * len(unl))))
        # learning rate 0.1: the averaged booster holds every bag's trees and TreeSHAP cost grows with them; on
        # the quality bars 6 bags at 0.1 rank as well as 10 at 0.05 with a quarter of the trees.
        # Small bags train faster on one thread (OpenMP start-up and spinning dominate, worse on busy machines).
        params = {**DEFAULT_PARAMS, "learning_rate": 0.1,
                  "min_child_samples": int(np.clip((n_pos + n_unl) // 50, 5, 40)),
                  **small_data_threads(n_pos + n_unl), **self.params,
                  "objective": "binary", "metric": "binary_logloss"}
        raw_sum, raw_n = np.zeros(len(X)), np.zeros(len(X))
        boosters = []
        for b in range(self.bags):
            in_pos = rng.choice(pos, n_pos, replace=False) if n_pos < len(pos) else pos
            in_unl = rng.choice(unl, n_unl, replace=False)
            rows = np.concatenate([in_pos, in_unl])
            inside = np.zeros(len(X), bool)
            inside[rows] = True
            weight = np.where(s[rows] == 1, 0.5 * len(rows) / len(in_pos), 0.5 * len(rows) / len(in_unl))
            train = lgb.Dataset(Xe.iloc[rows], label=s[rows], weight=weight,
                                categorical_feature=list(est.categories_) or "auto", free_raw_data=False)
            out_pos, out_unl = np.flatnonzero(~inside & (s == 1)), np.flatnonzero(~inside & (s == 0))
            valid_sets, callbacks = [], [lgb.log_evaluation(0)]
            rounds = self.num_boost_round
            if len(out_pos) >= 5:
                v_unl = rng.choice(out_unl, min(len(out_unl), len(in_unl)), replace=False)
                v_rows = np.concatenate([out_pos, v_unl])
                v_weight = np.where(s[v_rows] == 1, 0.5 * len(v_rows) / len(out_pos), 0.5 * len(v_rows) / len(v_unl))
                valid_sets = [lgb.Dataset(Xe.iloc[v_rows], label=s[v_rows], weight=v_weight, reference=train)]
                callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
            else:  # too few held-out seed rows to stop early: a fixed, modest number of rounds
                rounds = min(rounds, 100)
            booster = lgb.train({**params, "seed": self.seed + b}, train, num_boost_round=rounds,
                                valid_sets=valid_sets, callbacks=callbacks)
            if booster.best_iteration:
                booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
            boosters.append(booster)
            out = np.flatnonzero(~inside)
            raw_sum[out] += booster.predict(Xe.iloc[out], raw_score=True)
            raw_n[out] += 1
        merged = average_boosters(boosters)
        est.booster_ = merged
        est.best_iteration_ = int(merged.num_trees())
        with np.errstate(invalid="ignore"):
            self.oob_raw_ = np.where(raw_n > 0, raw_sum / np.maximum(raw_n, 1), np.nan)
        est.calibration_ = _balanced_platt(self.oob_raw_, s)
        self.estimator_ = est
        self.trees_per_bag_ = [int(b.num_trees()) for b in boosters]
        log.debug("PU bags: %d seed + %d unlabelled rows each, trees %s, calibration %s", n_pos, n_unl,
                  self.trees_per_bag_, est.calibration_)
        return self

    def _check(self) -> None:
        if not hasattr(self, "estimator_"):
            raise RuntimeError("this PUBaggingModel is not fitted yet: call fit() first")

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        self._check()
        return self.estimator_.decision_function(X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n_rows, 2): column 1 is the similarity (seed rather than an average customer, at even odds)."""
        self._check()
        return self.estimator_.predict_proba(X)

    def explain(self, X: pd.DataFrame) -> Explanation:
        self._check()
        return self.estimator_.explain(X)


def _balanced_platt(raw: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """Platt scaling on out-of-bag scores with the seed and the rest weighted equally (even odds)."""
    from sklearn.linear_model import LogisticRegression

    ok = np.isfinite(raw)
    y = s[ok]
    if y.min() == y.max():
        return 1.0, 0.0
    w = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1)) * len(y)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(raw[ok].reshape(-1, 1), y, sample_weight=w)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


# -- population and seeds --------------------------------------------------------------------------
@dataclass
class Population:
    """The customers a lookalike model ranks: one row each with every feature (and segments)."""

    frame: pd.DataFrame
    feature_set: FeatureSet
    mode: str  # "transactions" | "feature_table"
    as_of: pd.Timestamp | None = None
    rfm: dict[str, Any] | None = None
    id_column: str = "customer_id"
    table_schema: TableSchema | None = None  # feature tables: the typing the population was read with

    @property
    def features(self) -> list[str]:
        return [n for n in self.feature_set.names if n in self.frame.columns and n not in NON_FEATURES]


def load_population(cfg: ProjectConfig, s: LookalikeSettings, *, as_of: Any = None, data: CustomerData | None = None,
                    feature_set: FeatureSet | None = None, rfm: dict[str, Any] | None = None,
                    table_schema: TableSchema | None = None) -> Population:
    """Transactional data: customers with a purchase in the `lookback_days` before as_of (default: the day
    after the last transaction), features from data strictly before it. Feature tables: every row, typed by
    table_schema (a trained model's) when given."""
    if cfg.data.features is not None and cfg.data.transactions is None:
        from crmscore.models.feature_table import load_feature_table

        if as_of is not None:
            log.warning("--as-of is ignored for a ready feature table (%s)", cfg.data.features.path)
        table = load_feature_table(cfg, require_label=False, schema=table_schema)
        return Population(table.frame.reset_index(drop=True), feature_set or table.feature_set, "feature_table",
                          id_column=cfg.data.features.id, table_schema=table.schema)
    from crmscore.features.build import as_of_timestamp, build_features, feature_set_for
    from crmscore.features.segments import RFMScorer, add_segments

    if data is None:
        from crmscore.data.loader import load_customer_data

        data = load_customer_data(cfg)
    lo, hi = data.ts_range()
    cut = as_of_timestamp(as_of) if as_of is not None else hi.normalize() + pd.Timedelta(days=1)
    if cut <= lo:
        raise GuardrailError(f"--as-of {cut.date()} is before the first transaction ({lo.date()})")
    fs = feature_set or feature_set_for(data, cut)
    feats = build_features(data, cut, fs, segments=False)
    from crmscore.models.population import PopulationRule

    buyers = feats[PopulationRule(True, s.lookback_days).admits(feats["recency_days"])].reset_index(drop=True)
    scorer = RFMScorer.from_dict(rfm) if rfm else RFMScorer(cfg.segments.rfm_window_days).fit(buyers)
    frame = add_segments(buyers, cfg.segments, scorer)
    log.info("population at %s: %s customers with a purchase in the last %d days", cut.date(), f"{len(frame):,}",
             s.lookback_days)
    return Population(frame, fs, "transactions", cut, scorer.to_dict())


def resolve_seed(cfg: ProjectConfig, pop: Population, s: LookalikeSettings, *, seed_file: str | Path | None = None,
                 seed_query: str | None = None, seed_campaign: str | None = None) -> Seed:
    """The seed from exactly one of a file, a query over the population's feature table, or a campaign."""
    from crmscore.models.seeds import campaign_seed, query_seed, read_seed_file

    given = [x for x in (seed_file, seed_query, seed_campaign) if x is not None]
    if len(given) != 1:
        raise SeedError("give exactly one seed: --seed-file F, --seed-query \"...\" or --seed-campaign X")
    if seed_file is not None:
        return read_seed_file(seed_file, ("customer_id", pop.id_column))
    if seed_query is not None:
        return query_seed(pop.frame, seed_query)
    return campaign_seed(s.campaign_responses, str(seed_campaign), cfg.base_dir, pop.as_of)


def check_seed(seed: Seed, pop: Population, s: LookalikeSettings) -> np.ndarray:
    """Boolean mask of seed members in the population; refuses a seed too small or too large."""
    ids = pop.frame["customer_id"].astype("string")
    member = ids.isin(set(seed.ids)).to_numpy()
    found = int(member.sum())
    where = f"the population at {pop.as_of.date()}" if pop.as_of is not None else "the feature table"
    missing = len(seed.ids) - found
    if missing:
        known = set(ids.tolist())
        examples = [i for i in seed.ids if i not in known][:3]
        log.warning("%d of %d seed ids are not in %s (e.g. %s)%s", missing, len(seed.ids), where, examples,
                    f"; only customers with a purchase in the last {s.lookback_days} days are ranked"
                    if pop.mode == "transactions" else "")
    if found < s.min_seed:
        raise GuardrailError(
            f"the seed has {found} members in {where} ({len(seed.ids)} given); a lookalike model needs at least "
            f"{s.min_seed} ({s.hidden_share:.0%} are hidden to evaluate it). Add members"
            f"{', or loosen the query' if seed.kind == 'query' else ''}.")
    if found > s.max_seed_share * len(member):
        raise GuardrailError(f"the seed has {found:,} of {len(member):,} customers ({found / len(member):.0%}); above "
                             f"{s.max_seed_share:.0%} there are too few others to find lookalikes among. Narrow the "
                             f"seed.")
    return member


# -- training --------------------------------------------------------------------------------------
@dataclass
class LookalikeResult:
    name: str
    bundle: TrainedModel
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    curve: pd.DataFrame
    grade: str
    seed: Seed
    excluded: dict[str, str]
    evaluation: pd.DataFrame  # candidates: customer_id, features, label (1 = hidden seed member), scores
    population: Population
    warnings: list[str] = field(default_factory=list)
    run_id: str | None = None
    version: str | None = None

    @property
    def model_name(self) -> str:
        return PREFIX + self.name

    def summary(self) -> dict[str, Any]:
        return {"audience": self.name, "model": self.model_name, "run_id": self.run_id,
                "registered_version": self.version, "grade": self.grade, "seed": self.seed.describe(),
                "excluded_features": self.excluded, "metrics": self.metrics, "baselines": self.baselines,
                "seed_size_curve": self.curve.to_dict("records"), "warnings": self.warnings}


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise SeedError(f"audience name {name!r}: use letters, digits, '-', '_' or '.' (it becomes the registered "
                        f"model lookalike-<name>)")
    return name


def fit_and_evaluate(name: str, pop: Population, seed: Seed, member: np.ndarray, s: LookalikeSettings,
                     exclude: dict[str, str], progress: bool = False) -> LookalikeResult:
    """Hide a share of the seed, fit the PU model on the rest, rank every other customer, compare with the
    baselines, and trace the seed-size curve. member: the population rows in the seed (check_seed)."""
    from sklearn import metrics as skm

    from crmscore.models.evaluation import quality_grade

    features = [f for f in pop.features if f not in exclude]
    if not features:
        raise GuardrailError(f"every feature is excluded ({len(exclude)}): nothing is left to compare customers on")
    rng = np.random.default_rng(s.seed)
    seed_rows = np.flatnonzero(member)
    n_hidden = max(1, int(round(s.hidden_share * len(seed_rows))))
    hidden_rows = np.sort(rng.choice(seed_rows, n_hidden, replace=False))
    train_rows = np.setdiff1d(seed_rows, hidden_rows)
    labels = np.zeros(len(member), int)
    labels[train_rows] = 1
    X = pop.frame[features]
    model = PUBaggingModel.from_settings(s).fit(X, labels)
    candidates = np.flatnonzero(labels == 0)
    hidden = np.isin(candidates, hidden_rows).astype(int)
    sim = model.predict_proba(X.iloc[candidates])[:, 1]
    centroid = centroid_scores(X, train_rows, candidates)

    def measured(score: np.ndarray) -> dict[str, float]:
        return {**recall_at(hidden, score), "roc_auc": float(skm.roc_auc_score(hidden, score)),
                "pr_auc": float(skm.average_precision_score(hidden, score))}

    metrics = measured(sim)
    baselines = {"centroid": measured(centroid),
                 "random": {**random_reference(len(candidates)), "roc_auc": 0.5, "pr_auc": float(hidden.mean())}}
    curve = seed_size_curve(X, train_rows, hidden_rows, s, rng, progress)
    curve.loc[curve["seed_size"] == len(train_rows), "total_seed_size"] = len(seed_rows)
    metrics.update({"seed_size": float(len(seed_rows)), "seed_train": float(len(train_rows)),
                    "seed_hidden": float(n_hidden), "candidates": float(len(candidates)),
                    "population": float(len(member)), "features_used": float(len(features)),
                    "trees": float(model.estimator_.best_iteration_)})
    warnings = []
    needed = needed_seed_size(curve)
    if needed is None:
        warnings.append(f"the model does not beat the centroid baseline on recall at 10% at any seed size tried "
                        f"(up to {len(train_rows)} training members); rank with care, or add seed members")
    else:
        total_needed = int(curve.loc[curve["seed_size"] == needed, "total_seed_size"].iloc[0])
        metrics["seed_size_needed"] = float(total_needed)
        if len(seed_rows) < total_needed:
            warnings.append(f"the seed ({len(seed_rows)}) is below the {total_needed} members from which the model "
                            f"beats the centroid baseline")
    for w in warnings:
        log.warning("%s: %s", name, w)
    # the registry compares versions on the task's primary metric through ranking_metrics, where the share
    # of positives in the top 10% is `capture_top10`: the recall of hidden seed members at 10%
    metrics["capture_top10"] = metrics["recall_top10"]
    grade = quality_grade(metrics["recall_top10"], baselines["centroid"]["recall_top10"])
    # the bundle: the averaged booster with the full feature set (scoring rebuilds every column)
    others = model.predict_proba(X[~member])[:, 1]
    bundle = TrainedModel(TASK, pop.mode, model.estimator_, pop.feature_set, s.model_dump(mode="json"), REASON_UP,
                          REASON_DOWN, [float(x) for x in np.quantile(others, np.linspace(0.1, 0.9, 9))], pop.rfm, {},
                          table_schema=pop.table_schema)
    bundle.info.update({
        "audience": {"name": name, **seed.describe(), "size": int(len(seed_rows)), "given": len(seed.ids),
                     "hidden": int(n_hidden), "as_of": str(pop.as_of.date()) if pop.as_of is not None else None},
        # every given id, also those outside this population: scoring at another date leaves them all out
        "seed_ids": sorted(set(map(str, seed.ids))), "excluded_features": exclude,
        "similarity_quantiles": [float(x) for x in np.quantile(others, np.linspace(0, 1, 101))],
        "trees_per_bag": model.trees_per_bag_, "primary_metric": PRIMARY_METRIC,
    })
    evaluation = pop.frame.iloc[candidates][["customer_id", *pop.features]].reset_index(drop=True)
    evaluation["label"] = hidden
    evaluation["score_model"], evaluation["score_centroid"] = sim, centroid
    return LookalikeResult(name, bundle, metrics, baselines, curve, grade, seed, exclude, evaluation, pop, warnings)


def seed_size_curve(X: pd.DataFrame, train_rows: np.ndarray, hidden_rows: np.ndarray, s: LookalikeSettings,
                    rng: np.random.Generator, progress: bool = False) -> pd.DataFrame:
    """Recall at 10% of the same hidden members for the model (lighter ensembles, `curve_bags`) and the centroid,
    trained on sub-seeds of 25, 50, 100, ... training members; the left-out seed members are dropped, not
    made unlabelled. Columns seed_size (training members), total_seed_size (the seed it corresponds to,
    hidden share included), model, centroid (means over `curve_repeats` draws)."""
    from crmscore.progress import track

    rows = []
    for size in track(curve_sizes(len(train_rows)), "seed-size curve", enabled=progress):
        got_m, got_c = [], []
        for r in range(1 if size == len(train_rows) else s.curve_repeats):
            sub = np.sort(rng.choice(train_rows, size, replace=False)) if size < len(train_rows) else train_rows
            keep = np.setdiff1d(np.arange(len(X)), np.setdiff1d(train_rows, sub))
            lab = np.isin(keep, sub).astype(int)
            m = PUBaggingModel.from_settings(s, bags=s.curve_bags, seed=s.seed + 101 * (r + 1)).fit(X.iloc[keep], lab)
            cand = np.flatnonzero(lab == 0)
            h = np.isin(keep[cand], hidden_rows).astype(int)
            got_m.append(recall_at(h, m.decision_function(X.iloc[keep[cand]]), (0.10,))["recall_top10"])
            got_c.append(recall_at(h, centroid_scores(X.iloc[keep], np.flatnonzero(lab == 1), cand),
                                   (0.10,))["recall_top10"])
        rows.append({"seed_size": int(size), "total_seed_size": int(np.ceil(size / (1 - s.hidden_share))),
                     "model": float(np.mean(got_m)), "centroid": float(np.mean(got_c))})
    return pd.DataFrame(rows)


def train_lookalike(cfg: ProjectConfig, name: str, s: LookalikeSettings, *, seed_file: str | Path | None = None,
                    seed_query: str | None = None, seed_campaign: str | None = None, as_of: Any = None,
                    data: CustomerData | None = None, register: bool = True, progress: bool = False) -> LookalikeResult:
    """Resolve and check the seed, fit and evaluate, log to MLflow and register `lookalike-<name>@challenger`."""
    import mlflow

    from crmscore.models import registry

    check_name(name)
    pop = load_population(cfg, s, as_of=as_of, data=data)
    seed = resolve_seed(cfg, pop, s, seed_file=seed_file, seed_query=seed_query, seed_campaign=seed_campaign)
    member = check_seed(seed, pop, s)
    exclude = excluded_features(pop.feature_set, seed.defining_features, s.exclude, cfg.segments.rfm_window_days)
    if exclude:
        log.info("excluded features: %s", ", ".join(f"{k} ({v})" for k, v in exclude.items()))
    registry.configure()
    experiment_id = registry.experiment(TASK)
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=f"{PREFIX}{name}-{dt.datetime.now():%Y%m%d-%H%M%S}") as run:
        result = fit_and_evaluate(name, pop, seed, member, s, exclude, progress)
        result.run_id = run.info.run_id
        result.bundle.info.update({
            "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "grade": result.grade,
            "cutoffs": {"as_of": str(pop.as_of) if pop.as_of is not None else None}, "metrics": result.metrics,
            "baselines": result.baselines, "config": cfg.name, "feature_set_version": pop.feature_set.version,
            "seed_size_curve": result.curve.to_dict("records"), "warnings": result.warnings})
        with tempfile.TemporaryDirectory() as tmp:
            _log_run(result, cfg, s, Path(tmp))
            if register:
                result.version = _register(result, Path(tmp))
    log.info("%s: recall at 10%% %.3f (centroid %.3f, random %.3f), grade %s; run %s, version %s",
             result.model_name, result.metrics["recall_top10"], result.baselines["centroid"]["recall_top10"],
             result.baselines["random"]["recall_top10"], result.grade, result.run_id, result.version)
    return result


def _log_run(result: LookalikeResult, cfg: ProjectConfig, s: LookalikeSettings, tmp: Path) -> None:
    import mlflow

    from crmscore.models.audience_evaluation import save_plots
    from crmscore.models.evaluation import save_shap_summary
    from crmscore.models.registry import git_commit

    pop, bundle, seed = result.population, result.bundle, result.seed
    mlflow.set_tags({"task": TASK, "audience": result.name, "mode": pop.mode, "grade": result.grade,
                     "config": cfg.name, "seed_kind": seed.kind, "mlflow.source.git.commit": git_commit()})
    mlflow.log_params({"audience": result.name, "seed_kind": seed.kind, "seed_definition": seed.definition[:500],
                       "as_of": str(pop.as_of), "feature_set_version": pop.feature_set.version,
                       "excluded_features": ", ".join(result.excluded)[:500] or "none",
                       "code_version": git_commit()[:12],
                       **{k: v for k, v in s.model_dump(mode="json").items()
                          if k not in ("params", "campaign_responses", "exclude")},
                       **{f"lgbm_{k}": v for k, v in s.params.items()}})
    mlflow.log_metrics({k: v for k, v in result.metrics.items() if np.isfinite(v)})
    rows = [{"name": "model", **{k: result.metrics.get(k) for k in _TABLE_METRICS}}]
    for bname, m in result.baselines.items():
        mlflow.log_metrics({f"{k}_baseline_{bname}": v for k, v in m.items() if np.isfinite(v)})
        rows.append({"name": f"baseline: {bname}", **{k: m.get(k) for k in _TABLE_METRICS}})
    mlflow.log_table(pd.DataFrame(rows), "evaluation/comparison.json")
    mlflow.log_table(result.curve, "evaluation/seed_size_curve.json")
    mlflow.log_dict({"excluded_features": result.excluded, "warnings": result.warnings, **seed.describe()},
                    "audience/definition.json")
    seed_frame = pd.DataFrame({"customer_id": bundle.info["seed_ids"]})
    ev = result.evaluation
    seed_frame["in_population"] = seed_frame["customer_id"].isin(set(pop.frame["customer_id"].astype(str)))
    seed_frame["hidden"] = seed_frame["customer_id"].isin(set(ev.loc[ev["label"] == 1, "customer_id"].astype(str)))
    seed_frame.to_parquet(tmp / "seed.parquet", index=False)
    mlflow.log_artifact(str(tmp / "seed.parquet"), "audience")
    plots = tmp / "plots"
    rankings = {"model": ev["score_model"].to_numpy(), "centroid": ev["score_centroid"].to_numpy()}
    save_plots(ev["label"].to_numpy(), rankings, result.curve, plots, result.model_name)
    features = bundle.features
    sample = pop.frame.sample(min(len(pop.frame), s.explain_sample), random_state=s.seed)
    expl = bundle.model.explain(sample[features])
    enc = bundle.model._encode(sample[features])
    values = np.column_stack([enc[c].cat.codes.to_numpy() if c in bundle.model.categories_ else enc[c].to_numpy()
                              for c in features]).astype(float)
    save_shap_summary(expl.contributions, values, features, plots / "shap_summary.png")
    mlflow.log_artifacts(str(plots), "plots")
    mean_abs = np.abs(expl.contributions).mean(0).round(6).tolist()
    importance = dict(sorted(zip(features, mean_abs), key=lambda kv: -kv[1]))
    bundle.info["global_importance"] = importance
    mlflow.log_dict(importance, "evaluation/global_importance.json")
    # the evaluation rows with a `label` (hidden seed member): what `crmscore promote` scores both versions on
    ev.drop(columns=["score_model", "score_centroid"]).to_parquet(tmp / "test_set.parquet", index=False)
    mlflow.log_artifact(str(tmp / "test_set.parquet"), "evaluation")
    bundle.info["run_id"] = result.run_id


_TABLE_METRICS = ("recall_top1", "recall_top5", "recall_top10", "recall_top20", "lift_top10", "roc_auc")


def _register(result: LookalikeResult, tmp: Path) -> str:
    """Register through the shared registry (pyfunc, signature, alias @challenger) plus lookalike tags."""
    from mlflow.tracking import MlflowClient

    from crmscore.models import registry
    from crmscore.models.run import Dataset, TrainResult

    pop = result.population
    ev = result.evaluation
    ds = Dataset(ev.iloc[:0], ev.iloc[:0], ev, result.bundle.features, [], pop.feature_set, pop.mode,
                 {"test": f"{int(result.metrics['seed_hidden'])} hidden seed members"
                          + (f", as of {pop.as_of.date()}" if pop.as_of is not None else "")})
    tr = TrainResult(result.model_name, result.bundle, result.metrics, result.baselines, result.grade, ds,
                     result.run_id)
    version = registry.log_and_register(tr, tmp)
    client = MlflowClient()
    for key, value in {"task": TASK, "audience": result.name, "seed_kind": result.seed.kind,
                       "seed_size": str(int(result.metrics["seed_size"])),
                       "recall_top10": f"{result.metrics['recall_top10']:.4f}",
                       "recall_top10_centroid": f"{result.baselines['centroid']['recall_top10']:.4f}"}.items():
        client.set_model_version_tag(result.model_name, version, key, value)
    return version


# -- scoring ---------------------------------------------------------------------------------------
def similarity_band(similarity: np.ndarray) -> np.ndarray:
    """'high' (>= 0.85), 'medium' (>= 0.70), 'low' (>= 0.55) or 'none'."""
    sim = np.asarray(similarity, float)
    return np.select([sim >= t for _, t in BANDS], [b for b, _ in BANDS], default="none").astype(object)


def similarity_percentile(bundle: TrainedModel, similarity: np.ndarray) -> np.ndarray:
    """0-100: the share of the training population's non-seed customers with a lower similarity."""
    q = np.asarray(bundle.info.get("similarity_quantiles") or [], float)
    sim = np.asarray(similarity, float)
    if len(q) < 2:
        return np.full(len(sim), np.nan)
    # quantiles may repeat (ties); interpolate on the unique edges
    edges, first = np.unique(q, return_index=True)
    pct = np.linspace(0, 100, len(q))[first]
    return np.round(np.interp(sim, edges, pct) if len(edges) > 1 else np.where(sim >= edges[0], 100.0, 0.0), 2)


def seed_ids(bundle: TrainedModel) -> set[str]:
    return set(map(str, bundle.info.get("seed_ids", [])))


def describe_customers(bundle: TrainedModel, customer_ids: list[str], similarities: np.ndarray) -> list[dict[str, Any]]:
    """For scored customers (the scoring service): band, percentile and whether each is in the seed."""
    sim = np.asarray(similarities, float)
    bands, pcts = similarity_band(sim), similarity_percentile(bundle, sim)
    seed, audience = seed_ids(bundle), bundle.info.get("audience", {}).get("name")
    return [{"similarity": float(s), "band": str(b), "percentile": float(p), "in_seed": str(c) in seed,
             "audience": audience} for c, s, b, p in zip(customer_ids, sim, bands, pcts)]


def describe_customer(bundle: TrainedModel, customer_id: str, similarity: float) -> dict[str, Any]:
    """describe_customers for one customer."""
    return describe_customers(bundle, [customer_id], np.array([similarity]))[0]


def parse_top(text: str) -> float:
    """'5%' or '0.05' -> 0.05."""
    t = str(text).strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise SeedError(f"--top {text!r}: give a share such as 5% or 0.05 (more than 0, at most 100%)")
    return value


def expand(scores: pd.DataFrame, *, top: float | None = None, size: int | None = None) -> pd.DataFrame:
    """The most similar customers for export: customer_id, similarity, rank (1 = most similar), percentile, band.

    top: a share of the scored (non-seed) customers; size: a number of customers. Exactly one."""
    if (top is None) == (size is None):
        raise SeedError("give exactly one of --top (a share, e.g. 5%) or --size (a number of customers)")
    n = int(round(len(scores) * top)) if top is not None else int(size)  # type: ignore[arg-type]
    if n <= 0:
        raise SeedError(f"the expansion would be empty ({len(scores):,} customers scored)")
    ranked = scores.sort_values("similarity", ascending=False, kind="stable").head(n).reset_index(drop=True)
    ranked.insert(2, "rank", np.arange(1, len(ranked) + 1))
    cols = ["customer_id", "similarity", "rank", *[c for c in ("percentile", "band", "audience") if c in ranked]]
    return ranked[cols]
