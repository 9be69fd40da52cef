"""What the service does, without HTTP: score customers by id or with features, describe models, reload.
The BentoML class (crmscore.serving.service) is a thin shell around one ScoringEngine per worker."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from crmscore.config import SegmentsConfig
from crmscore.segments import RFMScorer
from crmscore.serving.predlog import PredictionLog
from crmscore.serving.runtime import FeatureError, LoadedModel, discover_specs, load_models
from crmscore.serving.store import open_store
from crmscore.settings import Settings

log = logging.getLogger(__name__)


class RequestError(Exception):
    """Bad input for the whole request; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_specs(text: str, default_alias: str) -> list[tuple[str, str]]:
    specs = []
    for part in text.split(","):
        part = part.strip()
        if part:
            name, _, ref = part.partition("@")
            specs.append((name, ref or default_alias))
    return specs


class ScoringEngine:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = Path(settings.home)
        self.store = open_store(self.home, settings.redis_url)
        self.predlog = PredictionLog(self.home / "predictions.sqlite")
        self.segments_cfg = SegmentsConfig()
        if settings.config:
            from crmscore.config import load_config

            self.segments_cfg = load_config(settings.config).segments
        rfm = self.store.meta().get("rfm")
        self.rfm = RFMScorer.from_dict(rfm) if rfm else None
        self.models: dict[str, LoadedModel] = {}
        self.warnings: list[str] = []
        self._reload_lock = threading.Lock()
        self._marker = self.home / "reload.marker"
        self._marker_seen = self._marker_mtime()
        self._next_marker_check = 0.0
        self.load()

    # -- models ------------------------------------------------------------------------------------
    def _specs(self) -> list[tuple[str, str]]:
        if self.settings.serve_models:
            return parse_specs(self.settings.serve_models, self.settings.serve_alias)
        try:
            return discover_specs(self.settings.serve_alias)
        except Exception as exc:  # noqa: BLE001  (registry down: serve what the BentoML store has)
            import bentoml

            log.warning("registry unreachable while listing models (%s); using the BentoML store", exc)
            names = sorted({m.info.metadata.get("registered_model") for m in bentoml.models.list()
                            if m.tag.name.startswith("crmscore-")} - {None})
            return [(n, self.settings.serve_alias) for n in names]

    def load(self) -> None:
        """(Re)load every model; the new set replaces the old in one assignment, so requests in flight
        finish on the old models and none is dropped."""
        with self._reload_lock:
            models, warnings = load_models(self._specs())
            self.models, self.warnings = models, warnings
        for w in warnings:
            log.warning(w)
        log.info("serving %s", ", ".join(f"{m.name} v{m.version} ({m.source})" for m in models.values()) or "no models")

    def request_reload(self) -> dict[str, Any]:
        """Reload here and tell the other workers (they check a marker file's time at most once a second)."""
        self.load()
        self._marker.parent.mkdir(parents=True, exist_ok=True)
        self._marker.write_text(str(time.time()))
        self._marker_seen = self._marker_mtime()
        return self.describe_models()

    def _marker_mtime(self) -> float:
        try:
            return os.stat(self._marker).st_mtime
        except OSError:
            return 0.0

    def maybe_reload(self) -> None:
        now = time.monotonic()
        if now < self._next_marker_check:
            return
        self._next_marker_check = now + 1.0
        mtime = self._marker_mtime()
        if mtime > self._marker_seen:
            self._marker_seen = mtime
            threading.Thread(target=self.load, name="crmscore-reload", daemon=True).start()

    def describe_models(self) -> dict[str, Any]:
        return {"models": [m.describe() for m in self.models.values()], "warnings": self.warnings,
                "online_store": self.store.meta()}

    def get_model(self, name: str) -> LoadedModel:
        model = self.models.get(name)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none (train and promote a model, then reload)"
            raise RequestError(f"model {name!r} is not loaded; loaded models: {known}", 404)
        return model

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, model_name: str, customers: list[dict[str, Any]], explain: bool, top_k: int,
              request_id: str) -> list[dict[str, Any]]:
        if not customers:
            raise RequestError("customers is empty: send at least one {\"customer_id\": ...}")
        if len(customers) > self.settings.max_batch:
            raise RequestError(f"{len(customers):,} customers in one request; at most {self.settings.max_batch:,}: "
                               f"split the batch", 413)
        if not 0 <= top_k <= 50:
            raise RequestError(f"top_k must be between 0 and 50, got {top_k}")
        self.maybe_reload()
        name = model_name.replace("lookalike/", "lookalike-", 1)
        model = self.get_model(name)
        results = self._score_with(model, customers, explain, top_k)
        self.predlog.append(request_id, results)
        return results

    def _score_with(self, model: LoadedModel, customers: list[dict[str, Any]], explain: bool,
                    top_k: int) -> list[dict[str, Any]]:
        base = {"model": model.name, "version": model.version, "alias": model.alias}
        results: list[dict[str, Any]] = [None] * len(customers)  # type: ignore[list-item]
        rows, values, where, segs = [], [], [], []
        for i, c in enumerate(customers):
            cid = str(c["customer_id"])
            try:
                if c.get("features") is not None:
                    feats = c["features"]
                    x = model.row(feats, strict=True)
                    seg = model.segments_for(feats, self.segments_cfg, self.rfm)
                else:
                    feats = self.store.get(cid)
                    if feats is None:
                        raise FeatureError(f"unknown customer_id {cid!r}: not in the published feature snapshot "
                                           f"(run `crmscore features publish`, or send its features)")
                    x = model.row(feats, strict=False)
                    seg = (feats.get("rfm_segment"), feats.get("lifecycle_stage"))
            except FeatureError as exc:
                results[i] = {**base, "customer_id": cid, "error": str(exc)}
                continue
            rows.append(x)
            values.append(feats)
            where.append((i, cid))
            segs.append(seg)
        if rows:
            scores, contrib = model.score_rows(np.vstack(rows), explain and top_k > 0)
            deciles = model.bundle.deciles(scores)
            for j, (i, cid) in enumerate(where):
                out = {**base, "customer_id": cid, "score": float(scores[j]), "decile": int(deciles[j]),
                       "segment": segs[j][0], "lifecycle_stage": segs[j][1]}
                if contrib is not None:
                    out["base_value"], out["reasons"] = model.reasons(contrib[j], values[j], top_k)
                results[i] = out
        return results

    def customer(self, customer_id: str, request_id: str, top_k: int = 5) -> dict[str, Any]:
        feats = self.store.get(customer_id)
        if feats is None:
            raise RequestError(f"unknown customer_id {customer_id!r}: not in the published feature snapshot", 404)
        self.maybe_reload()
        scores = []
        for model in self.models.values():
            scores.extend(self._score_with(model, [{"customer_id": customer_id}], True, top_k))
        self.predlog.append(request_id, scores)
        profile = {k: feats.get(k) for k in ("rfm_segment", "rfm_score", "lifecycle_stage", "recency_days",
                                             "frequency_365d", "monetary_365d") if k in feats}
        return {"customer_id": customer_id, "profile": profile, "scores": scores,
                "as_of": self.store.meta().get("as_of")}
