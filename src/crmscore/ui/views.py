"""The operations page's view models: what the page shows of one customer (every model's score, reasons and
a waterfall, the purchase timeline), of one model (metrics against the baselines, global drivers, a beeswarm
sample, scores by segment) and of the segments. They read the running service's ScoringEngine
(crmscore.scoring.online) and score through it, so the page shows the API's numbers."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from crmscore.explain.effects import waterfall
from crmscore.models.charts import value_ranks
from crmscore.models.population import PopulationRule
from crmscore.scoring import online
from crmscore.scoring.online import ScoringEngine

log = logging.getLogger(__name__)


class PageViews:
    """The page's view models of one engine; model overviews are cached per model version and snapshot."""

    def __init__(self, engine: ScoringEngine):
        self.engine = engine
        self._overviews: dict[tuple, dict[str, Any]] = {}

    def customer_view(self, customer_id: str, request_id: str, lang: str = "en", top_k: int = 6) -> dict[str, Any]:
        """One customer for the operations page: profile, every model's score with its reasons and a waterfall
        (crmscore.explain.effects.waterfall: the score at the base value -> one step per reason, each step its
        effect -> the rest -> the score, in the score's unit), and the
        purchase timeline. Logged in the prediction log like any served prediction."""
        online.check_customer_id(customer_id)
        online.check_top_k(top_k)
        online.check_lang(lang)
        if not self.engine.models:
            raise online.RequestError(f"the service is not ready: {self.engine.not_ready_reason}", 503)
        feats = self.engine.features_or_503(customer_id)
        if feats is None:
            raise online.RequestError(f"unknown customer_id {customer_id!r}: not in the published feature snapshot",
                                      404)
        self.engine.maybe_reload()
        base = {"customer_id": customer_id}
        scores = []
        for model in list(self.engine.models.values()):
            out: dict[str, Any] = {**base, "model": model.name, "version": model.version, "alias": model.alias,
                                   "kind": model.bundle.kind, "segment": feats.get("rfm_segment"),
                                   "lifecycle_stage": feats.get("lifecycle_stage")}
            try:
                # the score, reasons and details as /v1/score gives them (spend in currency, the top category's
                # probability and the ranked list for next-category); the waterfall from the model's own booster
                (res,) = self.engine.score_customers(model, [{"customer_id": customer_id}], True, top_k, lang,
                                                 found={customer_id: feats})
                if res.get("error"):
                    raise RuntimeError(res["error"])
                out.update({k: res[k] for k in ("score", "decile", "band", "segment", "lifecycle_stage", "base_value",
                                                "reasons", "details", "in_population", "population")
                            if res.get(k) is not None})
                if model.booster is not None:  # one booster (not next-category's per-category heads)
                    _, expl = model.score_rows(model.row(feats, strict=False)[None, :], True)
                    out["waterfall"] = waterfall(expl.link, expl.base_value, expl.contributions[0], model.names,
                                                 len(out.get("reasons", [])))
            except Exception as exc:  # noqa: BLE001  (one model failing must not hide the others)
                log.warning("customer view: %s could not score a customer (%s)", model.name, type(exc).__name__)
                out["error"] = str(exc)
            scores.append(out)
        self.engine.predlog.append(request_id, scores)
        profile = {k: feats.get(k) for k in ("rfm_segment", "rfm_score", "lifecycle_stage", "recency_days",
                                             "frequency_365d", "monetary_365d", "gap_mean_days") if k in feats}
        store = self.engine.store
        return {"customer_id": customer_id, "profile": profile, "features": feats, "scores": scores,
                "timeline": store.get_timeline(customer_id), "as_of": store.meta().get("as_of")}

    def model_overview(self, name: str, sample: int = 300, scored: int = 10_000) -> dict[str, Any]:
        """A model for the operations page: its description, test metrics against every baseline, global drivers
        (mean |SHAP| on the test set when the run logged it, else on the sample), SHAP values of `sample`
        customers of the published snapshot for a beeswarm, and the score distribution by RFM segment and
        lifecycle stage over up to `scored` customers. Cached per model version and snapshot."""
        self.engine.maybe_reload()
        model = self.engine.get_model(name)
        meta = self.engine.store.meta()
        key = (name, model.version, model.loaded_at, meta.get("published_at"), sample, scored)
        if key in self._overviews:
            return self._overviews[key]
        info = model.bundle.info
        population = PopulationRule.of_model(model.bundle) if model.bundle.mode == "transactions" else None
        rows, feats, cids = [], [], []
        for cid, f in self.engine.store.sample_rows(scored):
            if population is not None and not population.admits_one(f):
                continue  # outside the model's population
            try:
                rows.append(model.row(f, strict=False))
                feats.append(f)
                cids.append(cid)
            except Exception:  # noqa: BLE001  (a customer the model cannot read is left out of the overview)
                continue
        out: dict[str, Any] = {"model": model.describe(), "kind": model.bundle.kind,
                               "metrics": metrics_table(info), "scored": len(rows), "as_of": meta.get("as_of"),
                               "run_id": info.get("run_id"),
                               "population": population.within_days if population is not None else None}
        importance = info.get("global_importance")
        out["importance_source"] = "test set" if importance else "published snapshot"
        out["by_segment"], out["by_stage"], out["beeswarm"], out["sampled"] = [], [], [], 0
        if rows:
            # the scores as /v1/score gives them (currency for expected spend, the top category's probability
            # for next-category); the beeswarm needs one booster's SHAP values (not next-category's heads)
            scored_rows = self.engine.score_customers(model, [{"customer_id": c} for c in cids], False, 0,
                                                  found=dict(zip(cids, feats)))
            scores = np.array([r["score"] for r in scored_rows], float)
            out["by_segment"] = _distribution(scores, [f.get("rfm_segment") for f in feats])
            out["by_stage"] = _distribution(scores, [f.get("lifecycle_stage") for f in feats])
        if rows and model.booster is not None:
            X = np.vstack(rows)
            idx = np.unique(np.linspace(0, len(X) - 1, min(sample, len(X))).astype(int))
            _, expl = model.score_rows(X[idx], True)
            C = expl.contributions
            if not importance:
                importance = dict(zip(model.names, np.abs(C).mean(0).round(6).tolist()))
            top = [n for n, _ in sorted(importance.items(), key=lambda kv: -kv[1]) if n in model.index][:10]
            out["beeswarm"] = [{"feature": n, "shap": C[:, model.index[n]].tolist(),
                                "value": value_ranks(X[idx, model.index[n]])} for n in top]
            out["sampled"] = len(idx)
        out["importance"] = [{"feature": n, "value": float(v)}
                             for n, v in sorted((importance or {}).items(), key=lambda kv: -kv[1])][:15]
        if len(self._overviews) > 16:
            self._overviews.clear()
        self._overviews[key] = out
        return out

    def segments_overview(self) -> dict[str, Any]:
        """Counts per RFM segment and lifecycle stage, now and in the previous snapshot, and the transitions."""
        meta = self.engine.store.meta()
        return {"as_of": meta.get("as_of"), "customers": meta.get("customers"), **(meta.get("segments") or {})}


def metrics_table(info: dict[str, Any]) -> dict[str, Any]:
    """Test metrics of the model and each baseline, side by side: {"columns": [...], "rows": [[metric, ...]]}."""
    metrics = info.get("metrics") or {}
    baselines = info.get("baselines") or {}
    wanted = [k for k in ("roc_auc", "pr_auc", "lift_top10", "capture_top10", "brier", "ece", "normalized_gini",
                          "spearman", "hit_rate_at_3", "ndcg", "qini", "auuc", "lift_at_share",
                          "incremental_purchases_at_share") if k in metrics]
    rows = [[k, metrics.get(k), *[(b.get(k) if isinstance(b, dict) else None) for b in baselines.values()]]
            for k in wanted]
    return {"columns": ["model", *baselines], "rows": rows, "grade": info.get("grade")}


def _distribution(scores: np.ndarray, groups: list[Any]) -> list[dict[str, Any]]:
    out = []
    labels = np.array([g if g is not None else "unknown" for g in groups], dtype=object)
    for g in sorted(set(labels.tolist())):
        s = scores[labels == g]
        q = np.quantile(s, [0.1, 0.25, 0.5, 0.75, 0.9])
        out.append({"group": g, "n": int(len(s)), "mean": float(s.mean()), "p10": float(q[0]), "p25": float(q[1]),
                    "p50": float(q[2]), "p75": float(q[3]), "p90": float(q[4])})
    return out
