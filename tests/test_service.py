"""The scoring service: the engine and the BentoML class as Python objects, then a real `bentoml serve`
on 127.0.0.1 over HTTP (auth, bad input, unknown id, a mixed batch, customers view, reload, and the
prediction log across a restart)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from crmscore.config import load_config
from crmscore.data import load_customer_data

from conftest import SERVED_API_KEY, served_copy

API_KEY = SERVED_API_KEY


@pytest.fixture(scope="module")
def served(served_home, tmp_path_factory):
    """Churn trained, promoted and its features published: the module's own copy of the session's served home
    (conftest.served_home), its env set for the module."""
    copy = served_copy(served_home, tmp_path_factory.mktemp("serving"))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in copy["env"].items():
            mp.setenv(k, v)
        yield copy


@pytest.fixture(scope="module")
def engine(served):
    from crmscore.scoring.online import ScoringEngine
    from crmscore.settings import get_settings

    return ScoringEngine(get_settings())


def _buyer_ids(engine, n=3):
    ids = []
    for cid in engine.store.sample_ids(200):
        if engine.store.get(cid).get("recency_days") is not None:
            ids.append(cid)
        if len(ids) == n:
            return ids
    return ids


def test_score_by_id_is_explained(engine):
    cid = _buyer_ids(engine, 1)[0]
    (r,) = engine.score("churn", [{"customer_id": cid}], True, 4, "req-1")
    assert 0 <= r["score"] <= 1 and 1 <= r["decile"] <= 10 and r["version"] == "1" and r["alias"] == "champion"
    assert r["segment"] and r["lifecycle_stage"]
    reasons = r["reasons"]
    assert len(reasons) == 4 and all(set(x) == {"feature", "value", "contribution", "probability_change", "text"}
                                     for x in reasons)
    mags = [abs(x["contribution"]) for x in reasons]
    assert mags == sorted(mags, reverse=True)
    assert all(("raises" in x["text"]) == (x["contribution"] > 0) for x in reasons)
    assert all(np.sign(x["probability_change"]) == np.sign(x["contribution"]) for x in reasons)


def test_features_path_matches_id_path_and_bad_customers_do_not_sink_the_batch(engine):
    cid = _buyer_ids(engine, 1)[0]
    model = engine.models["churn"]
    feats = {k: v for k, v in engine.store.get(cid).items() if k in model.index}
    bad_type = {**feats, "recency_days": "recently"}
    results = engine.score("churn", [{"customer_id": cid}, {"customer_id": "nobody"},
                                     {"customer_id": cid, "features": feats},
                                     {"customer_id": "typo", "features": {**feats, "recencydays": 3}},
                                     {"customer_id": "wrongtype", "features": bad_type}], True, 2, "req-2")
    assert results[0]["score"] == pytest.approx(results[2]["score"], abs=1e-12)
    assert "unknown customer_id 'nobody'" in results[1]["error"]
    assert "unknown features ['recencydays']" in results[3]["error"]
    assert "feature 'recency_days' must be a number" in results[4]["error"]
    assert results[2]["segment"] == results[0]["segment"]


def test_batch_limits_and_unknown_model(engine):
    from crmscore.scoring.online import RequestError

    with pytest.raises(RequestError) as e:
        engine.score("churn", [{"customer_id": "a"}] * 1001, True, 5, "r")
    assert e.value.status == 413 and "at most 1,000" in str(e.value)
    with pytest.raises(RequestError) as e:
        engine.score("next-purchase-typo", [{"customer_id": "a"}], True, 5, "r")
    assert e.value.status == 404 and "loaded models: churn" in str(e.value)


def test_prediction_log_keeps_what_was_scored(engine, served):
    from crmscore.scoring.predlog import read_log

    engine.score("churn", [{"customer_id": c} for c in _buyer_ids(engine, 3)], False, 0, "req-log")
    rows = [r for r in read_log(Path(served["env"]["CRMSCORE_HOME"]) / "predictions.sqlite") if r["request_id"] == "req-log"]
    assert len(rows) == 3 and all(r["model"] == "churn" and r["version"] == "1" and 0 <= r["score"] <= 1 for r in rows)


def test_small_requests_arriving_together_are_scored_as_one_batch(engine, served):
    """The service's adaptive batching: requests submitted in the same turn of the event loop are scored in one
    batch; each gets exactly what it would get alone, a bad request fails alone, every good one is logged."""
    import asyncio

    from crmscore.serving.batching import RequestBatcher
    from crmscore.scoring.online import RequestError, ScoreJob
    from crmscore.scoring.predlog import read_log

    ids = _buyer_ids(engine, 5)
    jobs = [ScoreJob("churn", [{"customer_id": c}], True, 3, f"batch-{c}") for c in ids]
    jobs.insert(2, ScoreJob("churn-typo", [{"customer_id": ids[0]}], True, 3, "batch-bad-model"))
    jobs.append(ScoreJob("churn", [{"customer_id": ids[1]}, {"customer_id": "nobody"}], False, 0, "batch-mixed"))
    batches = []

    async def submit_all():
        batcher = RequestBatcher(engine.score_many, on_batch=lambda n, rows: batches.append((n, rows)))
        return await asyncio.gather(*(batcher.submit(j) for j in jobs), return_exceptions=True)

    outcomes = asyncio.run(submit_all())
    assert batches == [(7, 8)]  # one batch: 7 requests, 8 customers
    bad = outcomes[2]
    assert isinstance(bad, RequestError) and bad.status == 404 and "churn-typo" in str(bad)
    for job, out in zip(jobs, outcomes):
        if job.request_id.startswith("batch-C"):
            alone = engine.score("churn", job.customers, True, 3, "alone")
            assert out == alone  # same score, decile, segment and reasons as scored alone
    mixed = outcomes[-1]
    assert jobs[1].customers == [{"customer_id": ids[1]}] and mixed[0]["score"] == pytest.approx(outcomes[1][0]["score"])
    assert "unknown customer_id" in mixed[1]["error"] and "reasons" not in mixed[0]
    logged = {r["request_id"] for r in read_log(Path(served["env"]["CRMSCORE_HOME"]) / "predictions.sqlite")}
    assert {j.request_id for j in jobs if j.model == "churn"} <= logged and "batch-bad-model" not in logged


def test_service_class_as_python_object(served):
    from crmscore.serving.service import ScoringService

    svc = ScoringService()
    svc.loading.join(120)  # models load in a thread (the worker answers /livez meanwhile)
    assert svc.readiness()[0]
    body = svc.engine.describe_models()
    (m,) = body["models"]
    assert m["name"] == "churn" and m["source"] == "registry" and "roc_auc" in m["test_metrics"]
    assert body["online_store"]["customers"] > 0


def test_starts_from_bentoml_store_when_registry_is_unreachable(served, engine, monkeypatch):
    # `engine` loaded churn from the registry once, which keeps a copy in the BentoML store
    from crmscore.scoring.online import ScoringEngine
    from crmscore.settings import get_settings

    monkeypatch.setenv("CRMSCORE_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    eng = ScoringEngine(get_settings())
    # the session's BentoML store may also hold other tests' models: only the ones served from this home are
    # served (the version last served for each model and alias)
    models = {m["name"]: m for m in eng.describe_models()["models"]}
    assert models["churn"]["version"] == "1"
    assert all(m["source"].startswith("bentoml-store") and "registry unreachable" in m["source"]
               for m in models.values())


def test_api_keys_hash_only_and_verify(tmp_path):
    from crmscore.serving.keys import KeyRing

    ring = KeyRing.from_settings(tmp_path, "envkey1, envkey2")
    key = ring.create("crm-system")
    assert key not in (tmp_path / "api_keys.json").read_text()
    with pytest.raises(ValueError, match="exists already"):
        ring.create("crm-system")
    v = ring.verifier()
    assert v.check(key) == ("crm-system", False) and v.check("envkey2") == ("env", True)
    assert v.check(key + "x") is None and v.check(None) is None


def test_redis_online_store(served, redis_url):
    from crmscore.features.store import RedisStore, SqliteStore

    store = RedisStore(redis_url)
    sqlite = SqliteStore(Path(served["env"]["CRMSCORE_HOME"]) / "online_store.sqlite")
    ids = sqlite.sample_ids(20)
    import pandas as pd

    frame = pd.DataFrame([{"customer_id": i, **sqlite.get(i)} for i in ids])
    assert store.publish(frame, {"as_of": "2025-01-01"}) == 20
    assert store.get(ids[3]) == sqlite.get(ids[3]) and store.get("missing") is None
    assert store.meta()["as_of"] == "2025-01-01"
    sample = store.sample_ids(5)
    assert len(sample) == 5 and set(sample) <= set(ids)
    assert store.get_many([ids[0], "missing", ids[1]]) == {i: sqlite.get(i) for i in ids[:2]}


# -- a real server -------------------------------------------------------------------------------
def Server(env: dict, log: Path):  # noqa: N802  (reads like the class it returns)
    from crmscore.serving.launcher import LocalServer

    return LocalServer(env, log, api_key=API_KEY)


@pytest.mark.integration
def test_real_bentoml_server_over_http(served, engine, tmp_path):
    env = served["env"]
    ids = _buyer_ids(engine, 3)
    acknowledged = []
    server = Server(env, tmp_path / "serve.log")
    try:
        status, headers, body = server.call("POST", "/v1/score", {"model": "churn", "customers": [{"customer_id": ids[0]}]},
                                            key=None)
        assert status == 401 and "Authorization: Bearer" in body["error"] and body["request_id"]
        assert server.call("GET", "/v1/models", key="wrong")[0] == 401
        status, headers, body = server.call("POST", "/v1/score", {
            "model": "churn", "customers": [{"customer_id": ids[0]}, {"customer_id": "no-such-customer"},
                                            {"customer_id": ids[1]}], "explain": True, "top_k": 3})
        assert status == 200 and headers["x-request-id"] == body["request_id"]
        from crmscore.serving.schemas import ScoreResponse

        ScoreResponse.model_validate(body)  # the documented response shape
        acknowledged.append(body["request_id"])
        ok, unknown, ok2 = body["results"]
        assert 0 <= ok["score"] <= 1 and len(ok["reasons"]) == 3 and ok["reasons"][0]["text"].endswith("churn risk")
        assert ok["error"] is None and ok2["score"] is not None
        assert unknown["score"] is None and "unknown customer_id" in unknown["error"]
        status, _, body = server.call("POST", "/v1/score", {"model": "churn", "customers": "C1"})
        assert status == 400 and "customers" in json.dumps(body) and "Traceback" not in json.dumps(body)
        status, _, body = server.call("POST", "/v1/score", {"model": "churn",
                                                             "customers": [{"customer_id": "x"}] * 1001})
        assert status == 413 and "at most 1,000" in body["error"]
        status, _, body = server.call("POST", "/v1/score", {"model": "nope", "customers": [{"customer_id": "x"}]})
        assert status == 404 and "loaded models: churn" in body["error"]
        # a burst of concurrent one-customer requests (batched inside the service): each answer is its own
        import concurrent.futures

        burst = [(f"burst-{i}", ids[i % 3]) for i in range(24)]
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda rc: server.call("POST", "/v1/score", {
                "model": "churn", "customers": [{"customer_id": rc[1]}], "top_k": 2}, headers={"X-Request-ID": rc[0]}),
                burst))
        expected = {c: r["score"] for c, r in zip(ids, engine.score("churn", [{"customer_id": c} for c in ids],
                                                                     False, 0, "expected"))}
        for (rid, cid), (status, headers, body) in zip(burst, answers):
            assert status == 200 and headers["x-request-id"] == rid and body["request_id"] == rid
            (res,) = body["results"]
            assert res["customer_id"] == cid and res["score"] == pytest.approx(expected[cid]) and len(res["reasons"]) == 2
        acknowledged.extend(rid for rid, _ in burst)
        status, _, body = server.call("GET", f"/v1/customers/{ids[2]}")
        assert status == 200 and body["scores"][0]["model"] == "churn" and body["scores"][0]["reasons"]
        acknowledged.append(body["request_id"])
        assert server.call("GET", "/v1/customers/no-such-customer")[0] == 404
        status, _, body = server.call("GET", "/v1/models")
        assert status == 200 and body["models"][0]["version"] == "1"
        metrics = urllib.request.urlopen(server.url + "/metrics", timeout=5).read().decode()
        assert 'crmscore_requests_total{endpoint="score",model="churn",status="200"}' in metrics
        # a caller's made-up model name is not a metric label (unbounded label sets)
        assert 'model="unknown",status="404"' in metrics and 'model="nope"' not in metrics
        assert "crmscore_batch_requests_count" in metrics
    finally:
        server.stop()
    # a restart keeps every acknowledged prediction
    from crmscore.scoring.predlog import read_log

    logged = {r["request_id"] for r in read_log(Path(env["CRMSCORE_HOME"]) / "predictions.sqlite")}
    assert set(acknowledged) <= logged
    server = Server(env, tmp_path / "serve2.log")
    try:
        status, _, body = server.call("POST", "/v1/score", {"model": "churn", "customers": [{"customer_id": ids[0]}]})
        assert status == 200
    finally:
        server.stop()
    assert set(acknowledged) <= {r["request_id"] for r in read_log(Path(env["CRMSCORE_HOME"]) / "predictions.sqlite")}


@pytest.mark.integration
def test_promotion_reaches_a_running_server_through_reload(served, engine, tmp_path):
    from crmscore.models import registry
    from crmscore.models.pipeline import train_task
    from crmscore.models.tasks import get_task

    env = served["env"]
    server = Server(env, tmp_path / "serve.log")
    try:
        assert server.call("GET", "/v1/models")[2]["models"][0]["version"] == "1"
        task = get_task("churn")
        new = train_task(task, served["cfg"], task.settings(snapshots=2), data=served["data"])
        registry.promote("churn", force=True, reason="reload test")
        assert server.call("POST", "/v1/admin/reload")[0] == 200  # the env key is an admin key
        status, _, body = server.call("GET", "/v1/models")
        assert body["models"][0]["version"] == new.version
        status, _, body = server.call("POST", "/v1/score", {"model": "churn",
                                                             "customers": [{"customer_id": _buyer_ids(engine, 1)[0]}]})
        assert status == 200 and body["results"][0]["version"] == new.version
    finally:
        server.stop()


def test_prediction_log_exports_in_chunks_to_parquet(served, engine, tmp_path):
    """The export streams the log by id ranges: the Parquet file holds every row, in order, as read_log has them."""
    import pandas as pd

    from crmscore.scoring.predlog import export_parquet, iter_log, read_log

    engine.score("churn", [{"customer_id": c} for c in _buyer_ids(engine, 3)], True, 2, "req-export")
    path = Path(served["env"]["CRMSCORE_HOME"]) / "predictions.sqlite"
    rows = read_log(path)
    chunks = list(iter_log(path, chunk_rows=2))
    assert len(chunks) == -(-len(rows) // 2) and all(len(c) <= 2 for c in chunks)
    out = tmp_path / "log.parquet"
    assert export_parquet(path, out, chunk_rows=2) == len(rows)
    frame = pd.read_parquet(out)
    assert frame["id"].tolist() == [r["id"] for r in rows]
    assert frame["request_id"].tolist() == [r["request_id"] for r in rows]
    assert export_parquet(tmp_path / "none.sqlite", tmp_path / "empty.parquet") == 0
    assert len(pd.read_parquet(tmp_path / "empty.parquet")) == 0


def test_registered_model_pins_its_crmscore_version_and_the_service_reports_a_mismatch(served, engine, monkeypatch,
                                                                                       caplog):
    """The registry records the crmscore version a model was trained with (tag, bundle, pip requirement
    pinned with ==); a service running another version still serves the model but says which versions differ."""
    import mlflow
    from mlflow.tracking import MlflowClient

    import crmscore
    from crmscore.models import registry
    from crmscore.scoring.online import ScoringEngine
    from crmscore.settings import get_settings

    registry.configure()  # this module's registry (an earlier test pointed MLflow at a dead one)
    mv = MlflowClient().get_model_version_by_alias("churn", "champion")
    assert mv.tags["crmscore_version"] == crmscore.__version__
    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"models:/churn/{mv.version}")).read_text().split()
    assert f"crmscore=={crmscore.__version__}" in requirements and "crmscore" not in requirements
    assert engine.models["churn"].bundle.info["crmscore_version"] == crmscore.__version__
    assert not [w for w in engine.warnings if "crmscore" in w]

    trained = crmscore.__version__
    monkeypatch.setattr(crmscore, "__version__", "99.0.0")  # a later release serving the same registry
    with caplog.at_level("WARNING", logger="crmscore.scoring.online"):
        eng = ScoringEngine(get_settings())
    said = [w for w in eng.warnings if w.startswith(f"churn v{mv.version} ")]
    assert len(said) == 1 and trained in said[0] and "99.0.0" in said[0]
    assert said[0] in caplog.text and eng.describe_models()["warnings"] == eng.warnings
    assert eng.ready and "churn" in eng.models  # reported, still served


# -- the feature contract --------------------------------------------------------------------------
def _config_with_windows(synthetic_config: Path, tmp_path: Path, windows: list[int]) -> Path:
    import yaml

    raw = yaml.safe_load(synthetic_config.read_text())
    raw.setdefault("features", {})["windows"] = windows
    path = tmp_path / "windows.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_changing_feature_windows_and_publishing_again_makes_the_service_refuse_the_old_model(
        served, synthetic_config, tmp_path, monkeypatch):
    """churn was trained with the default windows (30, 90, 180, 365). Published again from a config without the
    365-day window, weekend_share and the other shares keep their names but count 180 days: the service (the
    BentoML class's readiness, i.e. /readyz) is not ready and says which model, which features and what to run;
    the model is not served. A running engine notices the publish by itself."""
    from crmscore.models import registry
    from crmscore.scoring.online import RequestError, ScoringEngine
    from crmscore.scoring.publish import publish_snapshot
    from crmscore.serving.service import ScoringService
    from crmscore.settings import get_settings

    registry.configure()  # this module's registry (an earlier test pointed MLflow at a dead one)
    monkeypatch.setenv("CRMSCORE_HOME", str(tmp_path / "home"))  # a private online store, the module's registry
    publish_snapshot(served["data"], None, get_settings())  # the model's own windows: served
    running = ScoringEngine(get_settings())
    assert running.ready and "churn" in running.models, running.not_ready_reason
    trained = running.models["churn"].bundle
    recorded = trained.info["feature_definitions"]  # with the bundle and as the MLflow model's metadata
    assert recorded["weekend_share"] == trained.feature_set.get("weekend_share").definition_hash
    assert set(trained.features) <= set(recorded) and "recency_days" in recorded
    import mlflow

    version = running.models["churn"].version
    assert mlflow.models.get_model_info(f"models:/churn/{version}").metadata["feature_definitions"] == recorded

    shorter = load_config(_config_with_windows(synthetic_config, tmp_path, [30, 90, 180]))
    publish_snapshot(load_customer_data(shorter), None, get_settings())

    svc = ScoringService()
    svc.loading.join(120)
    ready, body = svc.readiness()
    assert not ready and body["status"] == "not ready" and "churn" not in body["models"]
    reason = body["reason"]
    assert reason.startswith(f"churn v{version} was trained on features the online store does not hold"), reason
    changed = reason.split(": ", 1)[1].split(" defined differently")[0].split(", ")
    assert {"weekend_share", "evening_share", "mean_order_hour"} <= set(changed), reason
    assert any(n.startswith("category_share_") for n in changed) and "recency_days" not in changed
    assert "crmscore train churn" in reason and "crmscore features publish" in reason and "\n" not in reason
    with pytest.raises(RequestError) as refused:  # never scored with the 180-day shares
        svc.engine.score("churn", [{"customer_id": svc.engine.store.sample_ids(1)[0]}], True, 3, "contract")
    assert refused.value.status == 503 and "defined differently" in str(refused.value)

    # the engine that was serving churn checks the models again once it sees the new definitions
    running._next_marker_check = 0.0
    running.maybe_reload()
    for _ in range(600):
        if not running.ready:
            break
        time.sleep(0.1)
    assert not running.ready and running.not_ready_reason == reason and "churn" not in running.models

    # a registry outage falls back to the version last served here (served_models.json): checked the same way
    with pytest.MonkeyPatch.context() as dead:
        dead.setenv("CRMSCORE_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
        dead.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        dead.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        outage = ScoringEngine(get_settings())
    registry.configure()  # MLflow (and its MLFLOW_TRACKING_URI, which subprocesses inherit) back on this module's
    assert not outage.ready and "churn" not in outage.models
    assert outage.not_ready_reason.startswith(f"churn v{version} was trained on features"), outage.not_ready_reason


def test_publish_fails_rather_than_falls_back_when_the_served_models_cannot_be_read(served, synthetic_config,
                                                                                   tmp_path, monkeypatch):
    """The real command line: one `error:` line, exit 2, and the store left as it was (nothing published)."""
    import subprocess
    import sys

    from crmscore.features.store import SqliteStore

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "CRMSCORE_HOME": str(tmp_path / "home"),
           "CRMSCORE_SERVE_MODELS": "churn@champion,no-such-model@champion"}
    proc = subprocess.run([sys.executable, "-m", "crmscore", "features", "publish", "--config", str(synthetic_config)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot read the served models' feature sets" in errors[0], proc.stderr[-3000:]
    assert "no-such-model" in errors[0] and "nothing was published" in errors[0], errors[0]
    assert SqliteStore(tmp_path / "home" / "online_store.sqlite").meta() == {}


# -- population at scoring -------------------------------------------------------------------------
def test_a_customer_outside_the_population_is_scored_and_flagged(served, engine):
    """churn predicts for customers who bought within the lifecycle's churned_days; one who did not is still
    scored (by id and with posted features, the same score), flagged and told why; the batch file leaves them out."""
    from crmscore.models.population import PopulationRule
    from crmscore.scoring.batch import transactional_population

    model = engine.models["churn"]
    rule = PopulationRule.of_model(model.bundle)
    assert rule.within_days == served["cfg"].segments.lifecycle.churned_days
    rows = engine.store.sample_rows(2000)
    bought = [(cid, f["recency_days"]) for cid, f in rows if f.get("recency_days") is not None]
    outside = next(cid for cid, days in bought if days >= rule.within_days)
    inside = next(cid for cid, days in bought if days < rule.within_days)
    never = next((cid for cid, f in rows if f.get("recency_days") is None), None)
    ids = [outside, inside] + ([never] if never else [])
    by_id = engine.score("churn", [{"customer_id": c} for c in ids], True, 3, "population")
    assert [r["in_population"] for r in by_id] == [False, True] + ([False] if never else [])
    out = by_id[0]
    assert "error" not in out and 0 <= out["score"] <= 1 and len(out["reasons"]) == 3
    assert out["population"] == rule.describe() and "population" not in by_id[1]
    feats = {k: v for k, v in engine.store.get(outside).items() if k in model.index}
    assert "recency_days" in feats
    (posted,) = engine.score("churn", [{"customer_id": outside, "features": feats}], True, 3, "population")
    assert posted["in_population"] is False and posted["score"] == pytest.approx(out["score"], abs=1e-12)
    batch = transactional_population(model.bundle, served["data"], engine.store.meta()["as_of"])
    assert outside not in set(batch["customer_id"].astype(str)) and inside in set(batch["customer_id"].astype(str))
