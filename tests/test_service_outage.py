"""The online store (a real redis-server) hung with SIGSTOP and then stopped under a real `crmscore serve`: no 500,
503 with Retry-After for requests that need it, customers sent with their features still scored, the event
loop free (liveness answers at once), readiness honest, a few log lines per outage, and recovery."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from test_service import API_KEY, _buyer_ids, engine, served  # noqa: F401  (module fixtures)


def _redis(port: int) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    for _ in range(100):
        try:
            redis.Redis(port=port).ping()
            return proc
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def _publish(served, port: int) -> None:
    import pandas as pd

    from crmscore.features.store import RedisStore, SqliteStore

    sqlite = SqliteStore(Path(served["env"]["CRMSCORE_HOME"]) / "online_store.sqlite")
    ids = sqlite.sample_ids(100_000)
    found = sqlite.get_many(ids)
    RedisStore(f"redis://127.0.0.1:{port}/0").publish(pd.DataFrame([{"customer_id": i, **found[i]} for i in ids]),
                                                      sqlite.meta())


def _timed_get(url: str) -> tuple[int, float]:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            status = r.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.perf_counter() - start


@pytest.mark.integration
def test_redis_hung_then_down_no_500_honest_health_and_recovery(served, engine, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs Debian's redis-server)")
    from crmscore.serving.launcher import LocalServer, free_port

    port = free_port()
    redis_proc = _redis(port)
    _publish(served, port)
    cid = _buyer_ids(engine, 1)[0]
    model = engine.models["churn"]
    feats = {k: v for k, v in engine.store.get(cid).items() if k in model.index}
    by_id = {"model": "churn", "customers": [{"customer_id": cid}]}
    with_features = {"model": "churn", "customers": [{"customer_id": cid, "features": feats}]}
    log = tmp_path / "serve.log"
    server = LocalServer({**served["env"], "CRMSCORE_REDIS_URL": f"redis://127.0.0.1:{port}/0"}, log, api_key=API_KEY)
    try:
        status, _, body = server.call("POST", "/v1/score", by_id)
        assert status == 200 and body["results"][0]["score"] is not None
        expected = body["results"][0]["score"]

        os.kill(redis_proc.pid, signal.SIGSTOP)  # hung: connections accepted, nothing answered
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            scoring = [pool.submit(server.call, "POST", "/v1/score", by_id) for _ in range(6)]
            time.sleep(0.3)  # the scoring requests now wait on Redis
            live_status, live_took = _timed_get(server.url + "/livez")
            answers = [f.result() for f in scoring]
        assert live_status == 200 and live_took < 0.5, live_took  # the event loop is not blocked
        for status, headers, body in answers:
            assert status == 503 and headers["retry-after"] and "online store is unavailable" in body["error"]
        status, _, body = server.call("POST", "/v1/score", with_features)  # needs no store: scored
        assert status == 200 and body["results"][0]["score"] == pytest.approx(expected)
        status, _, body = server.call("GET", "/readyz", key=None)
        assert status == 503 and "online store unavailable" in body["reason"]
        assert server.call("GET", f"/v1/customers/{cid}")[0] == 503
        with httpx.Client(base_url=server.url, timeout=10, follow_redirects=False) as page:  # the page too
            assert page.post("/ui/login", data={"key": API_KEY, "next": "/ui/customers"}).status_code == 303
            assert page.get(f"/ui/customers/{cid}").status_code == 503

        os.kill(redis_proc.pid, signal.SIGCONT)  # back: readiness and scoring recover
        deadline = time.monotonic() + 20
        while server.call("GET", "/readyz", key=None)[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert server.call("POST", "/v1/score", by_id)[0] == 200

        redis_proc.terminate()  # down: connection refused
        redis_proc.wait(10)
        statuses = [server.call("POST", "/v1/score", by_id)[0] for _ in range(200)]
        assert set(statuses) == {503}
        status, _, body = server.call("GET", "/health", key=None)
        assert status == 503 and "online store unavailable" in body["reason"]

        redis_proc = _redis(port)  # a new, empty Redis: published again, then served
        _publish(served, port)
        deadline = time.monotonic() + 20
        while server.call("GET", "/readyz", key=None)[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        status, _, body = server.call("POST", "/v1/score", by_id)
        assert status == 200 and body["results"][0]["score"] == pytest.approx(expected)
    finally:
        server.stop()
        if redis_proc.poll() is None:
            os.kill(redis_proc.pid, signal.SIGCONT)
            redis_proc.terminate()
            redis_proc.wait(10)
    text = log.read_text()
    store_lines = [line for line in text.splitlines() if "online store" in line]
    assert 2 <= len(store_lines) <= 8, store_lines  # down, back, down, back: not a line per request
    assert "Traceback" not in text
