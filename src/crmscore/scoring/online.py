"""What the service does, without HTTP: score customers by id or with features, describe models, reload.
The BentoML class (crmscore.serving.service) is a thin shell around one ScoringEngine per worker; the
operations page's view models (crmscore.ui.views) read and score through the same engine."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import crmscore
from crmscore.config import SegmentsConfig
from crmscore.features.contract import SNAPSHOT_DIGEST, refusal
from crmscore.scoring.predlog import PredictionLog
from crmscore.scoring.explained import score_with_reasons
from crmscore.scoring.runtime import FeatureError, ServedModel, discover_specs, load_models, read_served
from crmscore.scoring.outage import Outage
from crmscore.features.store import StoreUnavailable, open_store
from crmscore.settings import Settings

log = logging.getLogger(__name__)
MAX_ID_CHARS = 128  # customer ids are echoed, logged and stored: a longer one is refused, never kept
MAX_TOP_K = 50
STORE_DOWN = "the online store is unavailable"


@dataclass(frozen=True)
class ScoreJob:
    """One scoring request: the fields of POST /v1/score, and the request id it is logged under."""

    model: str
    customers: list[dict[str, Any]]
    explain: bool
    top_k: int
    request_id: str
    lang: str = "en"


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


def version_mismatches(models: dict[str, ServedModel], running: str) -> list[str]:
    """A warning for each model trained with another crmscore version than the one serving it (its scoring
    code and pickled parts belong to the version that trained it); models trained before the version was
    recorded say so too."""
    out = []
    for m in models.values():
        trained = m.bundle.info.get("crmscore_version")
        if trained is None:
            out.append(f"{m.name} v{m.version} does not record the crmscore version it was trained with (trained "
                       f"before versions were recorded); this service runs crmscore {running}: retrain it to pin it")
        elif trained != running:
            out.append(f"{m.name} v{m.version} was trained with crmscore {trained}; this service runs crmscore "
                       f"{running}: serve it with crmscore=={trained} or retrain it")
    return out


def missing_sqlite_database(uri: str | None) -> str | None:
    """The path of a `sqlite:///...` tracking or registry database that does not exist (MLflow would create an
    empty one and the service would start with no models, saying nothing), else None."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    return None if path.exists() else str(path)


def limit_registry_calls(settings: Settings) -> None:
    """Short timeouts and a bounded retry for MLflow's HTTP calls (MLflow's defaults retry one call for
    minutes: a registry down at start-up kept the service from ready for 20 minutes). An operator's own
    MLFLOW_HTTP_REQUEST_* variables win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(settings.registry_timeout_seconds)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.registry_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


class ScoringEngine:
    """load=False: the models are loaded by a later `load()` (the service does it in a thread, so its
    liveness probe answers at once); until then `ready` is False and `not_ready_reason` says why."""

    def __init__(self, settings: Settings, load: bool = True):
        self.settings = settings
        self.home = Path(settings.home)
        self.store = open_store(self.home, settings.redis_url)
        self.store_outage = Outage("online store")
        self.predlog = PredictionLog(self.home / "predictions.sqlite", max_id_chars=MAX_ID_CHARS,
                                     max_bytes=settings.prediction_log_max_bytes,
                                     retention_days=settings.prediction_log_retention_days)
        self.segments_cfg = SegmentsConfig()
        if settings.config:
            from crmscore.config import load_config

            self.segments_cfg = load_config(settings.config).segments
        # the snapshot's feature definitions the models are checked against (None: not read yet)
        self._checked_digest: str | None = None
        self._snapshot_meta()  # checks the store answers; the service starts anyway, not ready until it does
        self.models: dict[str, ServedModel] = {}
        self.warnings: list[str] = []
        self.ready = False
        self.not_ready_reason = "loading models"
        self._reload_lock = threading.Lock()
        self._marker = self.home / "reload.marker"
        self._marker_seen = self._marker_mtime()
        self._next_marker_check = 0.0
        if load:
            self.load()

    # -- models ------------------------------------------------------------------------------------
    def _specs(self) -> tuple[list[tuple[str, str]], str | None]:
        """The (model, alias-or-version) pairs to serve, and why the registry is unreachable (None when it
        answered). While it is down: the models this service last served with the serve alias."""
        if self.settings.serve_models:
            return parse_specs(self.settings.serve_models, self.settings.serve_alias), None
        try:
            return discover_specs(self.settings.serve_alias), None
        except Exception as exc:  # noqa: BLE001  (registry down: what was served here before)
            reason = f"{type(exc).__name__}: {str(exc)[:160]}"
            log.warning("registry unreachable while listing models (%s); serving what was last served here", reason)
            served = read_served(self.home).values()
            return sorted((r["name"], r["alias"]) for r in served if r["alias"] == self.settings.serve_alias), reason

    def load(self) -> None:
        """(Re)load every model; the new set replaces the old in one assignment, so requests in flight
        finish on the old models and none is dropped. No model loaded: not ready, the reason logged once and
        shown on /readyz."""
        with self._reload_lock:
            missing = [p for p in (missing_sqlite_database(self.settings.tracking_uri),
                                   missing_sqlite_database(self.settings.registry_uri)) if p]
            if missing:
                self.not_ready_reason = (f"the MLflow database {missing[0]} does not exist: point "
                                         f"CRMSCORE_TRACKING_URI at the project's mlflow.db (none was created)")
                self.ready = bool(self.models)
                log.error("not ready: %s", self.not_ready_reason)
                return
            limit_registry_calls(self.settings)
            snapshot = self._snapshot_meta()
            try:
                specs, unreachable = self._specs()
                models, warnings, refused = load_models(specs, self.home, unreachable,
                                                        accept=lambda m: self._refusal(m, snapshot))
            except Exception as exc:  # noqa: BLE001  (a load that fails leaves the service not ready, and says why)
                log.exception("loading models failed")
                models, warnings, refused = {}, [f"loading models failed: {type(exc).__name__}: {str(exc)[:200]}"], []
            warnings = refused + warnings + version_mismatches(models, crmscore.__version__)
            self.models, self.warnings = models, warnings
            if refused:  # a model to serve that the published features cannot: not ready until fixed
                self.ready = False
                self.not_ready_reason = "; ".join(refused)
            elif models:
                self.ready, self.not_ready_reason = True, ""
            else:
                self.ready = False
                self.not_ready_reason = ("no model loaded: " + "; ".join(warnings) if warnings else
                                         f"no model loaded: no registered model has the alias "
                                         f"{self.settings.serve_alias!r} (train and promote one, then POST "
                                         f"/v1/admin/reload)")
        for w in warnings:
            log.warning(w)
        if models:
            log.info("serving %s", ", ".join(f"{m.name} v{m.version} ({m.source})" for m in models.values()))
        else:
            log.error("not ready: %s", self.not_ready_reason)

    def _snapshot_meta(self) -> dict[str, Any] | None:
        """The online store's snapshot meta, and the definitions digest models are now checked against;
        None while the store cannot be read (then the models are checked once it answers: maybe_reload)."""
        try:
            meta = self.store.meta()
        except StoreUnavailable as exc:
            self.store_outage.failed(exc)
            self._checked_digest = None
            return None
        self._checked_digest = meta.get(SNAPSHOT_DIGEST, "")
        return meta

    @staticmethod
    def _refusal(model: ServedModel, snapshot: dict[str, Any] | None) -> str | None:
        """Why `model` must not be served on the published snapshot (crmscore.features.contract), or None."""
        if snapshot is None:
            return None  # the store is down: checked when it answers again
        bundle = model.bundle
        return refusal(model.name, model.version, bundle.task, bundle.feature_definitions(),
                       list(bundle.feature_set.windows), snapshot)

    def _snapshot_changed(self) -> bool:
        """True when a publish changed the snapshot's feature definitions since the models were checked (or
        the store answers again after they could not be)."""
        if self.store_outage.down:  # asked again once it answers (a down Redis costs a request a timeout)
            return False
        try:
            digest = self.store.meta().get(SNAPSHOT_DIGEST, "")
        except StoreUnavailable:
            return False
        if digest == self._checked_digest:
            return False
        self._checked_digest = digest  # one reload for it (load() sets it again from what it reads)
        return True

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
        changed = self._snapshot_changed()  # a publish with other definitions: check the models again
        if mtime > self._marker_seen or changed:
            self._marker_seen = mtime
            threading.Thread(target=self.load, name="crmscore-reload", daemon=True).start()

    def describe_models(self) -> dict[str, Any]:
        try:
            store = self.store.meta()
        except StoreUnavailable as exc:
            store = {"error": f"{STORE_DOWN} ({exc})"}
        return {"models": [m.describe() for m in self.models.values()], "warnings": self.warnings,
                "online_store": store}

    @staticmethod
    def loaded_name(model: str) -> str:
        """The loaded model a request's `model` names ("lookalike/<audience>" is registered as lookalike-<audience>)."""
        return model.replace("lookalike/", "lookalike-", 1)

    def get_model(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None and not self.ready:
            raise RequestError(f"the service is not ready: {self.not_ready_reason}", 503)
        if model is None:
            known = ", ".join(sorted(self.models)) or "none (train and promote a model, then reload)"
            raise RequestError(f"model {name!r} is not loaded; loaded models: {known}", 404)
        return model

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, model_name: str, customers: list[dict[str, Any]], explain: bool, top_k: int,
              request_id: str, lang: str = "en") -> list[dict[str, Any]]:
        return self.score_job(ScoreJob(model_name, customers, explain, top_k, request_id, lang))

    def score_job(self, job: ScoreJob) -> list[dict[str, Any]]:
        out = self.score_many([job])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def score_many(self, jobs: list[ScoreJob]) -> list[list[dict[str, Any]] | Exception]:
        """Several requests at once (the service coalesces the small requests that arrive together): each job
        is checked on its own (a bad request gets its RequestError, the others are scored), jobs for the same
        model and options are scored as one batch, and every job's predictions go to the log in one
        transaction. Results come back in the order of the jobs; a job that failed gets its exception (a
        RequestError for bad input)."""
        self.maybe_reload()
        outs: list[list[dict[str, Any]] | Exception] = [None] * len(jobs)  # type: ignore[list-item]
        groups: dict[tuple, tuple[ServedModel, list[int]]] = {}
        for n, job in enumerate(jobs):
            try:
                model = self._check(job)
            except RequestError as exc:
                outs[n] = exc
                continue
            groups.setdefault((id(model), job.explain, job.top_k, job.lang), (model, []))[1].append(n)
        for (_, explain, top_k, lang), (model, members) in groups.items():
            customers = [c for n in members for c in jobs[n].customers]
            try:
                results = self.score_customers(model, customers, explain, top_k, lang)
            except Exception as exc:  # noqa: BLE001  (a bug must not sink the other models' requests)
                log.exception("scoring with %s failed", model.name)
                for n in members:
                    outs[n] = exc
                continue
            start = 0
            for n in members:
                outs[n] = results[start:start + len(jobs[n].customers)]
                start += len(jobs[n].customers)
        if self.store_outage.down:  # a request whose every customer needed the store: 503, try again later
            for n, out in enumerate(outs):
                if isinstance(out, list) and out and all(r.get("error", "").startswith(STORE_DOWN) for r in out):
                    outs[n] = RequestError(out[0]["error"], 503)
        self.predlog.append_many((job.request_id, out) for job, out in zip(jobs, outs) if isinstance(out, list))
        return outs

    def read_features(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The online store's features of these customers; StoreUnavailable while it is down (recorded)."""
        try:
            found = self.store.get_many(customer_ids)
        except StoreUnavailable as exc:
            self.store_outage.failed(exc)
            raise
        self.store_outage.ok()
        return found

    def check_store(self) -> bool:
        """Ask the store whether it is back (the readiness probe does, while it is marked down)."""
        try:
            self.store.ping()
        except StoreUnavailable as exc:
            self.store_outage.failed(exc)
            return False
        self.store_outage.ok()
        return True

    def features_or_503(self, customer_id: str) -> dict[str, Any] | None:
        """One customer's published features (None when unknown); a RequestError 503 while the store is down."""
        try:
            return self.read_features([customer_id]).get(customer_id)
        except StoreUnavailable as exc:
            raise RequestError(f"{STORE_DOWN} ({exc}): try again shortly", 503) from None

    def _check(self, job: ScoreJob) -> ServedModel:
        if not job.customers:
            raise RequestError("customers is empty: send at least one {\"customer_id\": ...}")
        if len(job.customers) > self.settings.max_batch:
            raise RequestError(f"{len(job.customers):,} customers in one request; at most "
                               f"{self.settings.max_batch:,}: split the batch", 413)
        check_top_k(job.top_k)
        check_lang(job.lang)
        return self.get_model(self.loaded_name(job.model))

    def score_customers(self, model: ServedModel, customers: list[dict[str, Any]], explain: bool,
                    top_k: int, lang: str = "en", found: dict[str, dict[str, Any]] | None = None
                    ) -> list[dict[str, Any]]:
        """Score customers (by id, or sent with their features) with one model, as /v1/score answers them: one
        dict per customer, in order, an `error` for a customer that cannot be scored. found: the features of
        customers by id, when the caller has read them already (the page and /v1/customers do)."""
        base = {"model": model.name, "version": model.version, "alias": model.alias}
        results: list[dict[str, Any]] = [None] * len(customers)  # type: ignore[list-item]
        rows, values, where, segs, inside = [], [], [], [], []
        by_id = [str(c["customer_id"]) for c in customers if c.get("features") is None]
        store_error = None
        if found is None:
            try:
                found = self.read_features(by_id) if by_id else {}
            except StoreUnavailable as exc:  # customers by id get an error; those sent with features are scored
                found, store_error = {}, f"{STORE_DOWN} ({exc}): try again shortly, or send the features"
        for i, c in enumerate(customers):
            cid = str(c["customer_id"])
            try:
                if c.get("features") is not None:
                    feats = c["features"]
                    x = model.row(feats, strict=True)
                    seg = model.segments_for(feats, self.segments_cfg)
                else:
                    feats = found.get(cid)
                    if store_error is not None:
                        raise FeatureError(store_error)
                    if feats is None:
                        raise FeatureError(f"unknown customer_id {cid!r}: not in the published feature snapshot "
                                           f"(run `crmscore features publish`, or send its features)")
                    x = model.row(feats, strict=False)
                    # the model's RFM scale, as batch scoring uses; the snapshot's segment for a model without one
                    seg = model.segments_for(feats, self.segments_cfg)
                    if seg == (None, None):
                        seg = (feats.get("rfm_segment"), feats.get("lifecycle_stage"))
            except FeatureError as exc:
                results[i] = {**base, "customer_id": cid, "error": str(exc)}
                continue
            rows.append(x)
            values.append(feats)
            where.append((i, cid))
            segs.append(seg)
            inside.append(model.in_population(feats))
        if rows and not model.fast:
            self._score_general(model, base, results, values, where, segs, explain, top_k, lang)
        elif rows:
            scores, expl = model.score_rows(np.vstack(rows), explain and top_k > 0)
            deciles = model.bundle.deciles(scores)
            similar = None
            if model.bundle.task == "lookalike":
                from crmscore.models.lookalike import describe_customers

                similar = describe_customers(model.bundle, [cid for _, cid in where], scores)
            for j, (i, cid) in enumerate(where):
                out = {**base, "customer_id": cid, "score": float(scores[j]), "decile": int(deciles[j]),
                       "segment": segs[j][0], "lifecycle_stage": segs[j][1]}
                if similar is not None:
                    out["band"] = similar[j]["band"]
                    out["details"] = {k: similar[j][k] for k in ("percentile", "in_seed", "audience")}
                if expl is not None:
                    out["base_value"], out["reasons"] = model.reasons(expl, j, values[j], top_k, lang)
                results[i] = out
        for j, (i, _) in enumerate(where):  # scored either way; outside the population, flagged and said why
            results[i]["in_population"] = inside[j]
            if inside[j] is False:
                results[i]["population"] = model.population.describe()
        return results

    @staticmethod
    def _score_general(model: ServedModel, base: dict[str, Any], results: list, values: list, where: list,
                       segs: list, explain: bool, top_k: int, lang: str = "en") -> None:
        """Models beyond plain binary: score_with_reasons on a small frame; model-specific outputs go to `details`."""
        import pandas as pd

        raw = pd.DataFrame([{n: v.get(n) for n in model.names} for v in values])
        # one new frame (column-by-column assignment fragmented it: a PerformanceWarning in the log per request)
        columns = {"customer_id": [cid for _, cid in where]}
        for name in model.names:
            columns[name] = (raw[name] if name in model.bundle.model.categories_
                             else pd.to_numeric(raw[name], errors="coerce").astype(float))
        frame = pd.DataFrame(columns, index=raw.index)
        scored = score_with_reasons(model.bundle, frame, explain=explain and top_k > 0, top_k=max(top_k, 1), lang=lang)
        standard = {"customer_id", "score", "decile", "band", "base_value", "reasons", "rfm_r", "rfm_f", "rfm_m",
                    "rfm_score", "rfm_segment", "lifecycle_stage", "segment"}
        for j, (i, cid) in enumerate(where):
            row = scored.iloc[j].to_dict()
            out = {**base, "customer_id": cid, "score": _num(row.get("score")),
                   "decile": int(row["decile"]) if row.get("decile") is not None else None,
                   "band": row.get("band"), "segment": segs[j][0], "lifecycle_stage": segs[j][1]}
            if explain and top_k > 0 and row.get("reasons") is not None:
                out["base_value"] = _num(row.get("base_value"))
                out["reasons"] = list(row["reasons"])[:top_k]
            details = {k: v for k, v in row.items() if k not in standard}
            if details:
                out["details"] = json.loads(json.dumps(details, default=_plain_value))
            results[i] = out

    def customer(self, customer_id: str, request_id: str, top_k: int = 5, lang: str = "en") -> dict[str, Any]:
        check_customer_id(customer_id)
        check_top_k(top_k)
        check_lang(lang)
        if not self.models:
            raise RequestError(f"the service is not ready: {self.not_ready_reason}", 503)
        feats = self.features_or_503(customer_id)
        if feats is None:
            raise RequestError(f"unknown customer_id {customer_id!r}: not in the published feature snapshot", 404)
        self.maybe_reload()
        scores = []
        for model in self.models.values():
            scores.extend(self.score_customers(model, [{"customer_id": customer_id}], True, top_k, lang,
                                           found={customer_id: feats}))
        self.predlog.append(request_id, scores)
        profile = {k: feats.get(k) for k in ("rfm_segment", "rfm_score", "lifecycle_stage", "recency_days",
                                             "frequency_365d", "monetary_365d") if k in feats}
        return {"customer_id": customer_id, "profile": profile, "scores": scores,
                "as_of": self.store.meta().get("as_of")}

def check_customer_id(customer_id: str) -> None:
    if len(customer_id) > MAX_ID_CHARS:
        raise RequestError(f"customer_id is {len(customer_id):,} characters long; at most {MAX_ID_CHARS}", 422)


def check_top_k(top_k: int) -> None:
    if not 0 <= top_k <= MAX_TOP_K:
        raise RequestError(f"top_k must be between 0 and {MAX_TOP_K}, got {top_k}")


def check_lang(lang: str) -> None:
    from crmscore.explain.i18n import LANGUAGES

    if lang not in LANGUAGES:
        raise RequestError(f"lang must be one of {', '.join(LANGUAGES)}, got {lang!r}")


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _plain_value(v: Any) -> Any:
    if hasattr(v, "tolist"):
        return v.tolist()
    if hasattr(v, "item"):
        return v.item()
    return str(v)
