"""The BentoML scoring service: one class, started with `crmscore serve` (which runs `bentoml serve`).

POST /v1/score is a BentoML API with typed pydantic IO; GET /v1/customers/{id}, GET /v1/models and
POST /v1/admin/reload are FastAPI routes on the same service instance. ASGI middlewares sit in front of
every route: RouteMetrics (request counts by route template, crmscore.serving.http_metrics), Guard
(request id, authentication that fails closed, body limits counted on the bytes received:
crmscore.serving.guard) and OpenAPIDocument (GET /docs.json as valid OpenAPI 3.0: crmscore.serving.openapi).
Bad input is answered with a 4xx JSON message that says what to fix.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import anyio
import bentoml
import pydantic_core
from fastapi import FastAPI, Query, Request
from fastapi import Path as FastPath
from fastapi.responses import JSONResponse, Response
from pydantic import Field

from crmscore.serving import log_privacy
from crmscore.serving.batching import QueueFull, RequestBatcher
from crmscore.scoring.online import MAX_ID_CHARS, MAX_TOP_K, RequestError, ScoreJob, ScoringEngine
from crmscore.serving.guard import Guard, error_response
from crmscore.serving.http_metrics import RouteMetrics
from crmscore.serving.openapi import OpenAPIDocument
from crmscore.serving.schemas import CustomerIn, CustomerScore, ScoreResponse
from crmscore.features.store import StoreUnavailable
from crmscore.settings import get_settings
from crmscore.explain.i18n import LANGUAGES

log = logging.getLogger("crmscore.service")
SETTINGS = get_settings()
INLINE_CUSTOMERS = 16
RESULT_DEFAULTS = {name: None for name in CustomerScore.model_fields}
LANG_PATTERN = "^(" + "|".join(LANGUAGES) + ")$"
_ERROR_BODY = {"application/json": {"schema": {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string", "description": "What is wrong and how to fix it."},
    "request_id": {"type": "string"}}}}}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": _ERROR_BODY} for status, text in (
        (400, "Invalid input"), (401, "Missing or invalid API key"), (403, "Not an admin key"),
        (404, "Unknown customer or model"), (413, "Request body too large"),
        (422, "Invalid path or query parameter"), (503, "Not ready, or the online store is unavailable "
                                                         "(see Retry-After)"))}

api = FastAPI(title="crmscore", docs_url=None, redoc_url=None, openapi_url=None)


_error = error_response


def _authenticator() -> Any:
    from crmscore.ui.routes import authenticator

    return authenticator()  # the page's: one key ring per worker, so the page and the API agree


# Access logs are off: they would print customer ids (in paths) at INFO; requests are counted in /metrics
# and every prediction is in the prediction log. A 10 s traffic timeout (not 60) keeps fewer requests' objects
# alive in BentoML's timeout middleware, which shortens garbage-collection pauses under load. OpenTelemetry spans
# for our routes are off unless CRMSCORE_TRACE_REQUESTS is set: BentoML's tracing middleware creates a span for
# every request even with no exporter configured, about 0.3 ms of CPU, as much as half a scoring request.
# BentoML's HTTP metrics are off: they label requests with the raw path (unbounded, customer ids on an open
# page); RouteMetrics counts by route template instead and /metrics below serves the worker's registry.
UNTRACED = [] if SETTINGS.trace_requests else ["/v1/", "/ui", "/health"]


@functools.cache
def _service_metrics() -> tuple[Any, Any, Any]:
    """The service's Prometheus metrics, registered once per process (a second ScoringService in the same
    process, as in tests, reuses them: prometheus_client refuses a name registered twice). Created on first
    use, after BentoML set up multiprocess metrics."""
    from prometheus_client import Counter, Histogram

    return (Counter("crmscore_requests", "Scoring requests", ["endpoint", "model", "status"]),
            Histogram("crmscore_request_seconds", "Scoring latency", ["endpoint", "model"],
                      buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)),
            Histogram("crmscore_batch_requests", "Small scoring requests scored together in one batch (adaptive "
                      "batching)", buckets=(1, 2, 4, 8, 16, 32, 64)))


@bentoml.service(name="crmscore", workers=SETTINGS.workers, traffic={"timeout": 10},
                 http={"port": 3000}, logging={"access": {"enabled": False}}, metrics={"enabled": False},
                 tracing={"excluded_urls": UNTRACED})
@bentoml.asgi_app(api, path="/")
class ScoringService:
    """Scores customers with the registered models, each prediction explained."""

    def __init__(self) -> None:
        log_privacy.install()
        # BentoML's server logging leaves the root logger at WARNING, so a worker dropped crmscore's own INFO
        # lines (which models it serves, from where) whatever CRMSCORE_LOG_LEVEL said
        logging.getLogger("crmscore").setLevel(getattr(logging, get_settings().log_level.upper(), logging.INFO))
        exit_with_arbiter()
        # models load in a thread: the worker answers /livez at once, and /readyz says "loading models" (then
        # ready, or why not) instead of the worker not answering at all while a registry times out
        self.engine = ScoringEngine(get_settings(), load=False)
        self.loading = threading.Thread(target=self._load, name="crmscore-load", daemon=True)
        self.loading.start()
        self.requests, self.latency, self.batch_sizes = _service_metrics()
        self.batcher = RequestBatcher(self.engine.score_many, on_batch=lambda jobs, _rows: self.batch_sizes.observe(jobs))
        # BentoML's APIMethod.__get__ builds the bound API function (inspect.signature and a wrapper) on every
        # attribute access, i.e. on every request; it is a non-data descriptor, so binding it once here serves
        # every request from the instance's attribute instead.
        self.score = type(self).__dict__["score"].__get__(self, type(self))
        # the labelled metrics, looked up once per label set (prometheus_client's labels() takes a lock each time)
        self._counted = functools.lru_cache(maxsize=1024)(self.requests.labels)
        self._timed = functools.lru_cache(maxsize=1024)(self.latency.labels)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, what /readyz and /health show): the models loaded and the online store answering, or why not."""
        engine = self.engine
        ready = engine.ready and not engine.store_outage.down
        body: dict[str, Any] = {"status": "ok" if ready else "not ready", "models": sorted(engine.models)}
        if not engine.ready:
            body["reason"] = engine.not_ready_reason
        elif engine.store_outage.down:
            body["reason"] = engine.store_outage.describe()
        return ready, body

    def _load(self) -> None:
        self.engine.load()
        gc.collect()
        gc.freeze()  # long-lived model objects out of the collector's way: shorter full-GC pauses

    @bentoml.api(route="/v1/score")
    async def score(
        self,
        model: Annotated[str, Field(description="churn | next-purchase | expected-spend | next-category | "
                                                "lookalike/<audience>", examples=["churn"])],
        customers: Annotated[list[CustomerIn], Field(min_length=1, description="At most 1,000 customers: by id, "
                                                                                "or with features.")],
        explain: Annotated[bool, Field(strict=True, description="Add the top-k reasons to each score.")] = True,
        top_k: Annotated[int, Field(strict=True, ge=0, le=MAX_TOP_K, description="Reasons per customer (0-50).")] = 5,
        lang: Annotated[str, Field(pattern=LANG_PATTERN, description="Language of the reason texts: en | zh.",
                                   examples=["zh"])] = "en",
        ctx: bentoml.Context = None,  # type: ignore[assignment]
    ) -> ScoreResponse:
        """Score customers by id (from the published feature snapshot) or with their features. A customer that
        cannot be scored gets an `error` entry; the rest of the batch is scored."""
        request_id = ctx.request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        start = time.perf_counter()
        job = ScoreJob(model, [c.model_dump() for c in customers], explain, top_k, request_id, lang)
        try:
            if len(job.customers) <= INLINE_CUSTOMERS:
                # small requests that arrive together are scored as one batch on the event loop
                results = await self.batcher.submit(job)
            else:  # larger ones in a thread, so health checks and small requests are not held up
                results = await anyio.to_thread.run_sync(self.engine.score_job, job)
        except QueueFull as exc:
            self._counted("score", "all", "503").inc()
            ctx.response.status_code = 503
            return _error(503, f"the service is overloaded ({exc}): try again shortly", request_id,  # type: ignore[return-value]
                          **{"Retry-After": "1"})
        except RequestError as exc:
            known = self.engine.loaded_name(model) in self.engine.models
            self._counted("score", model if known else "unknown", str(exc.status)).inc()  # labels: not caller's text
            ctx.response.status_code = exc.status  # BentoML copies the context's status onto the response
            return _error(exc.status, str(exc), request_id, **_retry(exc))  # type: ignore[return-value]
        self._counted("score", model, "200").inc()
        self._timed("score", model).observe(time.perf_counter() - start)
        # the ScoreResponse shape, serialised once by pydantic-core (cheaper than building the models)
        body = {"request_id": request_id, "model": model, "results": [{**RESULT_DEFAULTS, **r} for r in results]}
        return Response(pydantic_core.to_json(body, fallback=_plain), media_type="application/json")  # type: ignore[return-value]

    @api.get("/v1/customers/{customer_id}", responses=ERROR_RESPONSES)
    def customer(self, request: Request,
                 customer_id: Annotated[str, FastPath(max_length=MAX_ID_CHARS, description="The customer's id.")],
                 top_k: Annotated[int, Query(ge=0, le=MAX_TOP_K, description="Reasons per model.")] = 5,
                 lang: Annotated[str, Query(pattern=LANG_PATTERN, description="en | zh.")] = "en") -> JSONResponse:
        """Every loaded model's score, segment and reasons for one customer."""
        request_id = request.scope.get("state", {}).get("request_id", "")
        start = time.perf_counter()
        try:
            body = self.engine.customer(customer_id, request_id, top_k, lang=lang)
        except RequestError as exc:
            self.requests.labels("customer", "all", str(exc.status)).inc()
            return _error(exc.status, str(exc), request_id, **_retry(exc))
        self.requests.labels("customer", "all", "200").inc()
        self.latency.labels("customer", "all").observe(time.perf_counter() - start)
        return JSONResponse(json.loads(json.dumps({"request_id": request_id, **body}, default=_plain)))

    @api.get("/v1/models", responses=ERROR_RESPONSES)
    def models(self, request: Request) -> JSONResponse:
        """Loaded models: name, version, alias, source, trained-at, data digest and test metrics."""
        request_id = request.scope.get("state", {}).get("request_id", "")
        return JSONResponse({"request_id": request_id, **self.engine.describe_models()})

    @api.post("/v1/admin/reload", responses=ERROR_RESPONSES)
    def reload(self, request: Request) -> JSONResponse:
        """Reload models from the registry (after a promotion) without dropping requests."""
        request_id = request.scope.get("state", {}).get("request_id", "")
        return JSONResponse({"request_id": request_id, **self.engine.request_reload()})

    @api.get("/health")
    def health(self) -> JSONResponse:
        """200 with the loaded models when ready, else 503 with the reason (as /readyz)."""
        ready, body = self.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)


def exit_with_arbiter() -> None:
    """In a `bentoml serve` worker on Linux: ask the kernel for SIGTERM when the arbiter (the worker's parent)
    dies, even by kill -9; else the orphaned worker kept serving and held the port (a restart failed with
    EADDRINUSE)."""
    from bentoml._internal.context import server_context

    if server_context.worker_index is None or not sys.platform.startswith("linux"):
        return  # not a served worker (tests build the class as a Python object)
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the arbiter died before the request above
        os.kill(os.getpid(), signal.SIGTERM)


def _retry(exc: RequestError) -> dict[str, str]:
    """503s (not ready, a store down) tell the caller when to try again."""
    return {"Retry-After": "5"} if exc.status == 503 else {}


async def readyz_probe(scope: Any, receive: Any, send: Any) -> bool:
    """Answer GET /readyz from the service's own state (BentoML's says only ready or not): 200 when the
    configured models are loaded, else 503 with the reason. False when this is not a /readyz request."""
    if scope["type"] != "http" or scope.get("path") != "/readyz" or scope.get("method") not in ("GET", "HEAD"):
        return False
    service = bentoml.get_current_service()
    if service is None:  # the worker is still setting up
        ready, body = False, {"status": "not ready", "reason": "starting", "models": []}
    else:
        if service.engine.store_outage.down:  # is it back? (a bounded call, in a thread)
            await anyio.to_thread.run_sync(service.engine.check_store)
        ready, body = service.readiness()
    await JSONResponse(body, status_code=200 if ready else 503)(scope, receive, send)
    return True


class Readiness:
    """Pure ASGI middleware serving `readyz_probe`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not await readyz_probe(scope, receive, send):
            await self.app(scope, receive, send)


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)


@api.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus metrics of every worker of this service (its own multiprocess directory)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    from crmscore.monitoring.gauges import update_gauges

    client = BentoMLContainer.metrics_client.get()
    try:  # the last `crmscore monitor` headline as gauges (crmscore_monitor_*)
        await anyio.to_thread.run_sync(update_gauges, Path(get_settings().home))
    except Exception as exc:  # noqa: BLE001  (monitoring figures never break /metrics)
        log.warning("monitoring gauges not updated: %s", exc)
    body = await anyio.to_thread.run_sync(client.generate_latest)
    return Response(body, media_type=client.CONTENT_TYPE_LATEST)


@api.exception_handler(StoreUnavailable)
async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
    """A page or route that needs the online store while it is down: 503 with Retry-After, not a 500."""
    service = bentoml.get_current_service()
    if service is not None:
        service.engine.store_outage.failed(exc)
    request_id = request.scope.get("state", {}).get("request_id", "")
    return _error(503, f"the online store is unavailable ({exc}): try again shortly", request_id,
                  **{"Retry-After": "5"})


@api.exception_handler(RequestError)
async def request_error(request: Request, exc: RequestError) -> JSONResponse:
    """A RequestError a page did not turn into a page of its own (the store down, not ready): its status."""
    request_id = request.scope.get("state", {}).get("request_id", "")
    return _error(exc.status, str(exc), request_id, **_retry(exc))


ScoringService.add_asgi_middleware(RouteMetrics)
ScoringService.add_asgi_middleware(Guard, authenticator=_authenticator, max_body=SETTINGS.max_body_bytes)
ScoringService.add_asgi_middleware(OpenAPIDocument, service=ScoringService)
ScoringService.add_asgi_middleware(Readiness)

from crmscore.ui.routes import router as ui_router  # noqa: E402  (the operations page, /ui)

api.include_router(ui_router)
