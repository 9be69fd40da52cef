"""Models as the service holds them: loaded once from the MLflow registry by alias (or a pinned version),
with a fast single-customer path (numpy, one LightGBM thread) and a copy kept in the BentoML model
store so the service can start when the registry cannot be reached: then it loads, for each configured model
and alias, exactly the version it last served (recorded in CRMSCORE_HOME/served_models.json), nothing else."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crmscore.config import SegmentsConfig
from crmscore.explain.reasons import build_reasons
from crmscore.models.bundle import TrainedModel
from crmscore.models.estimator import Explanation
from crmscore.models.evaluation import comparison_columns
from crmscore.features.segments import lifecycle_stages
from crmscore.models.population import PopulationRule

log = logging.getLogger(__name__)
STORE_PREFIX = "crmscore-"
SERVED_RECORD = "served_models.json"


class FeatureError(ValueError):
    """A customer's features cannot be scored; the message names the feature and what is wrong."""


@dataclass
class ServedModel:
    """A registered version of a TrainedModel as the service holds it: which model, version and alias, where it
    was loaded from (the registry, or the BentoML store while the registry is unreachable), and the
    single-customer numpy path built once at load (row, score_rows). What it scores and explains is the
    bundle's: it adds no model of its own."""

    name: str
    version: str
    alias: str
    bundle: TrainedModel
    source: str  # "registry" or "bentoml-store (registry unreachable: ...)"
    loaded_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        m = self.bundle.model
        self.names: list[str] = list(m.feature_names_)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.codes: dict[int, dict[str, int]] = {
            self.index[c]: {level: code for code, level in enumerate(levels)} for c, levels in m.categories_.items()}
        # the numpy fast path serves plain binary models; others (spend, categories, companions such as
        # days to next purchase, lookalike ensembles) are scored through TrainedModel.score on a small frame
        self.fast = (getattr(self.bundle, "kind", "binary") == "binary" and hasattr(m, "booster_")
                     and not getattr(self.bundle, "companions", None))
        self.booster = getattr(m, "booster_", None)
        self.iterations = getattr(m, "best_iteration_", None)
        # TreeSHAP tables built and checked (their kernel compiled) at load, not on the first request: the
        # model's booster, or each head of a multilabel model
        for est in (list(getattr(m, "models_", {}).values()) or [m]):
            if hasattr(est, "shap_tables") and hasattr(est, "booster_"):
                est.shap_tables()
        self.rfm_scorer = self.bundle.rfm_scorer()  # the model's RFM scale, read once
        # who the model predicts for (None: a feature-table model, no rule); read once
        self.population = PopulationRule.of_model(self.bundle) if self.bundle.mode == "transactions" else None

    def in_population(self, features: dict[str, Any]) -> bool | None:
        """Whether a customer's features put them in the model's population (crmscore.models.population);
        None when the model has no rule or the features do not say (no `recency_days` sent)."""
        if self.population is None or "recency_days" not in features:
            return None
        return self.population.admits_one(features)

    def describe(self) -> dict[str, Any]:
        info = self.bundle.info
        metrics = info.get("metrics", {})
        primary = self.bundle.primary_metric  # baselines are given on it
        kind = self.bundle.kind
        shown = ("roc_auc", "pr_auc", "brier", "ece", "lift_top10") if kind == "binary" else comparison_columns(kind)
        return {"name": self.name, "version": self.version, "alias": self.alias, "source": self.source,
                "task": self.bundle.task, "mode": self.bundle.mode, "trained_at": info.get("trained_at"),
                "feature_set_version": self.bundle.feature_set.version, "data_digest": info.get("data_digest"),
                "test_cutoff": (info.get("cutoffs") or {}).get("test"), "grade": info.get("grade"),
                "primary_metric": primary,
                "test_metrics": {k: metrics[k] for k in dict.fromkeys((primary, *shown)) if k in metrics},
                "baselines": {k: v.get(primary) for k, v in (info.get("baselines") or {}).items()},
                "features": len(self.names)}

    # -- fast path --------------------------------------------------------------------------------
    def row(self, features: dict[str, Any], *, strict: bool) -> np.ndarray:
        """One customer's features as the booster's input row; a feature given as null is a missing value.
        strict (features sent by a caller): every feature must be given and no other. Otherwise (a published
        snapshot's row, which holds more) every feature the model reads must be there: a feature left out of
        the snapshot is an error, never scored as missing (the store's definitions are checked at load)."""
        x = np.full(len(self.names), np.nan)
        if not strict and not features.keys() >= self.index.keys():  # a set comparison in C: the hot path
            absent = [n for n in self.names if n not in features]
            if absent:
                raise FeatureError(f"the published snapshot has no {absent[0]!r}"
                                   f"{f' (nor {len(absent) - 1} more)' if len(absent) > 1 else ''} for model "
                                   f"{self.name}: run `crmscore features publish` with the model's config")
        if strict:
            missing = [n for n in self.names if n not in features]
            unknown = [k for k in features if k not in self.index]
            if missing or unknown:
                parts = []
                if missing:
                    parts.append(f"missing features {missing[:8]}{' ...' if len(missing) > 8 else ''}")
                if unknown:
                    parts.append(f"unknown features {unknown[:8]}")
                raise FeatureError("; ".join(parts) + f" (model {self.name} expects {len(self.names)} features: "
                                   f"GET /v1/models lists them)")
        for name, i in self.index.items():
            v = features.get(name)
            if v is None:
                continue
            if i in self.codes:
                if not isinstance(v, str):
                    raise FeatureError(f"feature {name!r} must be text (a category), got {v!r}")
                code = self.codes[i].get(v)
                x[i] = np.nan if code is None else code
            else:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise FeatureError(f"feature {name!r} must be a number, got {v!r}")
                if not math.isfinite(float(v)):
                    raise FeatureError(f"feature {name!r} must be a finite number, got {v!r}")
                x[i] = float(v)
        return x

    def score_rows(self, X: np.ndarray, explain: bool) -> tuple[np.ndarray, Explanation | None]:
        """Scores of booster input rows (calibrated probability for binary models, the prediction otherwise)
        and, with explain, their explanation in the score's own space (CustomerModel.explanation: the same
        contributions and base value as batch scoring)."""
        threads = 1  # workers = cores: more LightGBM threads oversubscribe them (bench/serving.py measured it)
        model = self.bundle.model
        if explain:  # the model's TreeSHAP tables where they apply (crmscore.models.treeshap), else pred_contrib
            expl = model.explanation(model.shap_values(X, num_threads=threads))
            return expl.scores(), expl
        raw = self.booster.predict(X, raw_score=True, num_iteration=self.iterations, num_threads=threads)
        return model.transform(raw), None

    def reasons(self, expl: Explanation, row: int, values: dict[str, Any], top_k: int,
                lang: str = "en") -> tuple[float, list[dict]]:
        """The base value and top_k reasons of one explained row (crmscore.explain.reasons.build_reasons)."""
        return expl.base_value, build_reasons(self.bundle.feature_set, expl.contributions[row], expl.base_value,
                                              expl.link, self.names, values, top_k, self.bundle.reason_up,
                                              self.bundle.reason_down, lang)

    def segments_for(self, features: dict[str, Any], cfg: SegmentsConfig) -> tuple[str | None, str | None]:
        """RFM segment and lifecycle stage of a customer's features on the model's RFM scale, the one batch
        scoring uses (so a customer gets the same segment by id, with features and in a batch file);
        (None, None) when the model has no RFM scale or a feature it needs is missing. Plain arrays, not a
        one-row frame: this runs for every customer the service scores."""
        scorer = self.rfm_scorer
        needed = ("recency_days", "first_purchase_days", *(scorer.columns.values() if scorer else ()))
        if scorer is None or any(n not in features for n in needed):
            return None, None

        def value(name: str) -> np.ndarray:
            return np.array([features.get(name)], dtype=float)  # None -> NaN

        c = scorer.columns
        rfm = scorer.codes(value(c["r"]), value(c["f"]), value(c["m"]))
        stage = lifecycle_stages(value("recency_days"), value("first_purchase_days"), value("recency_gap_ratio"),
                                 cfg.lifecycle)
        return str(rfm["rfm_segment"][0]), str(stage[0])


LoadedModel = ServedModel  # its former name, for code written before the rename


def store_name(model: str) -> str:
    return STORE_PREFIX + "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in model.lower())


def save_to_bentoml_store(loaded: ServedModel) -> None:
    """Keep a copy in the BentoML model store (once per registry version) for registry outages."""
    import bentoml

    name = store_name(loaded.name)
    try:
        for m in bentoml.models.list(name):
            if m.info.labels.get("registry_version") == loaded.version:
                return
    except Exception:  # noqa: BLE001  (an empty or missing store)
        pass
    with bentoml.models.create(name, labels={"registry_version": loaded.version, "alias": loaded.alias},
                               metadata={"registered_model": loaded.name}) as m:
        loaded.bundle.save(m.path)
    log.info("saved %s v%s to the BentoML model store as %s", loaded.name, loaded.version, name)


def read_served(home: Path) -> dict[str, dict[str, str]]:
    """What this service last served from the registry: {"name@alias": {"name", "alias", "version"}}."""
    try:
        return json.loads((Path(home) / SERVED_RECORD).read_text())
    except (OSError, ValueError):
        return {}


def record_served(home: Path, loaded: dict[str, ServedModel]) -> None:
    """Remember the version served for each model and alias (loaded from the registry), written atomically:
    the only versions a registry outage may fall back to."""
    record = read_served(home)
    for lm in loaded.values():
        if lm.source == "registry":
            record[f"{lm.name}@{lm.alias}"] = {"name": lm.name, "alias": lm.alias, "version": lm.version}
    path = Path(home) / SERVED_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=SERVED_RECORD + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, path)


def load_from_bentoml_store(model: str, alias: str, version: str, reason: str) -> ServedModel:
    """The BentoML store's copy of exactly `model` v`version` (what was last served for the alias)."""
    import bentoml

    for m in bentoml.models.list(store_name(model)):
        if m.info.labels.get("registry_version") == version:
            bundle = TrainedModel.load(m.path)
            return ServedModel(model, version, alias, bundle,
                               f"bentoml-store {m.tag} (registry unreachable: {reason})")
    raise LookupError(f"no copy of {model} v{version} in the BentoML store")


def load_models(specs: list[tuple[str, str]], home: Path, unreachable: str | None = None,
                accept: Callable[[ServedModel], str | None] | None = None
                ) -> tuple[dict[str, ServedModel], list[str], list[str]]:
    """Load (name, alias-or-version) pairs from the registry; while it cannot be reached, load the version
    last served for that model and alias from the BentoML store, and nothing else.

    unreachable: why the registry is known to be down already (its calls are then skipped: one timeout, not
    one per model). accept: why a loaded model must not be served (the feature contract), or None; a refused
    model is neither served nor recorded as served (an outage never falls back to it). Returns the loaded
    models, warnings for those that could not be loaded at all, and the refusals.
    """
    from crmscore.models import registry
    from crmscore.models.registry import RegistryError

    registry.configure()
    served = read_served(home)
    loaded, warnings, refused = {}, [], []

    def refuses(lm: ServedModel) -> bool:
        why = accept(lm) if accept is not None else None
        if why:
            refused.append(why)
        return bool(why)

    for name, ref in specs:
        if unreachable is None:
            try:
                bundle, mv = registry.load_bundle(name, ref)
                lm = ServedModel(name, str(mv.version), ref, bundle, "registry")
                if refuses(lm):
                    continue
                try:
                    save_to_bentoml_store(lm)
                except Exception as exc:  # noqa: BLE001  (the copy is a convenience; serving goes on)
                    log.warning("could not copy %s to the BentoML model store: %s", name, exc)
                loaded[name] = lm
                continue
            except Exception as exc:  # noqa: BLE001  (registry down: the version last served, below)
                if isinstance(exc, RegistryError) and _answered(exc):
                    warnings.append(str(exc))  # the registry answered: no such model or alias
                    continue
                cause = exc.__cause__ if isinstance(exc, RegistryError) and exc.__cause__ else exc
                unreachable = f"{type(cause).__name__}: {str(cause)[:160]}"
        last = served.get(f"{name}@{ref}")
        if last is None:
            warnings.append(f"{name}@{ref}: registry unreachable ({unreachable}) and never served here, so there "
                            f"is no known version to fall back to")
            continue
        try:
            lm = load_from_bentoml_store(name, ref, last["version"], unreachable)
        except Exception as exc:  # noqa: BLE001
            warnings.append(f"{name}@{ref}: registry unreachable ({unreachable}) and {exc}")
            continue
        if refuses(lm):
            continue
        log.warning("registry unreachable for %s; serving %s", name, lm.source)
        loaded[name] = lm
    record_served(home, loaded)
    return loaded, warnings, refused


def _answered(exc: Exception) -> bool:
    """True when the registry answered (the model or alias does not exist), False when it could not be reached."""
    code = getattr(exc.__cause__, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND", "BAD_REQUEST")


def discover_specs(alias: str) -> list[tuple[str, str]]:
    """Every registered model that has the alias (default champion)."""
    from mlflow.tracking import MlflowClient

    from crmscore.models import registry

    registry.configure()
    specs = []
    for rm in MlflowClient().search_registered_models():
        if alias in (rm.aliases or {}):
            specs.append((rm.name, alias))
    return sorted(specs)
