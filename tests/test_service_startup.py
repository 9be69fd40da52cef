"""Start-up that says the truth, against a real `crmscore serve`: a registry that hangs (accepts connections and
never answers), an empty registry, a missing mlflow.db. Liveness answers at once; readiness waits for the
configured models and says why when there are none; the fallback serves exactly the version last served."""

from __future__ import annotations

import socket
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import tracking_store
from test_service import API_KEY, _buyer_ids, engine, served  # noqa: F401  (module fixtures)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _server(env: dict, log: Path, **kw):
    from crmscore.serving.launcher import LocalServer

    return LocalServer(env, log, api_key=API_KEY, **kw)


@pytest.mark.integration
def test_hung_registry_start_is_live_at_once_and_serves_the_version_last_served(served, engine, tmp_path):
    import json

    from crmscore.scoring.runtime import ServedModel, read_served, save_to_bentoml_store

    home = Path(served["env"]["CRMSCORE_HOME"])
    assert read_served(home)["churn@champion"]["version"] == "1"  # `engine` loaded it from the registry
    # a newer copy in the BentoML store that this service never served (a challenger, a rolled-back version):
    # the old fallback took the store's latest; it must not be served
    churn = engine.models["churn"]
    save_to_bentoml_store(ServedModel("churn", "77", "challenger", churn.bundle, "registry"))
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)  # connections are accepted by the kernel and never answered
    from bentoml._internal.configuration.containers import BentoMLContainer

    # the store this process wrote to (BentoML reads BENTOML_HOME once, at its first import in the session)
    env = {**served["env"], "CRMSCORE_TRACKING_URI": f"http://127.0.0.1:{hung.getsockname()[1]}",
           "BENTOML_HOME": str(BentoMLContainer.bentoml_home.get())}
    try:
        server = _server(env, tmp_path / "serve.log", wait_for="/livez", timeout=60)
        try:
            live_after = time.monotonic() - server.started
            status, body = _get(server.url + "/readyz")
            assert status == 503 and json.loads(body)["reason"] == "loading models"
            deadline = time.monotonic() + 60
            while _get(server.url + "/readyz")[0] != 200:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-2000:]
                time.sleep(0.5)
            ready_after = time.monotonic() - server.started
            status, _, body = server.call("GET", "/v1/models")
            (m,) = body["models"]
            assert m["name"] == "churn" and m["version"] == "1" and m["source"].startswith("bentoml-store")
            assert "registry unreachable" in m["source"]
            status, _, body = server.call("POST", "/v1/score", {"model": "churn",
                                                                "customers": [{"customer_id": _buyer_ids(engine, 1)[0]}]})
            assert status == 200 and body["results"][0]["version"] == "1"
        finally:
            server.stop()
    finally:
        hung.close()
    print(f"hung registry: live after {live_after:.1f} s, ready after {ready_after:.1f} s")
    assert live_after < 30 and ready_after < 60


@pytest.mark.integration
def test_empty_registry_and_missing_database_are_not_ready_and_say_why(served, tmp_path):
    import json

    from mlflow.tracking import MlflowClient

    empty = tmp_path / "empty.db"
    tracking_store(tmp_path, "empty.db")
    assert MlflowClient(tracking_uri=f"sqlite:///{empty}").search_registered_models() == []  # a valid registry
    assert empty.exists()
    missing = tmp_path / "nowhere" / "mlflow.db"
    for uri, reason in ((f"sqlite:///{empty}", "no registered model has the alias 'champion'"),
                        (f"sqlite:///{missing}", f"the MLflow database {missing} does not exist")):
        log = tmp_path / f"serve-{uri[-8:].replace('/', '_')}.log"
        server = _server({**served["env"], "CRMSCORE_TRACKING_URI": uri}, log, wait_for="/livez", timeout=60)
        try:
            deadline = time.monotonic() + 60
            while True:
                status, body = _get(server.url + "/readyz")
                if status == 503 and json.loads(body)["reason"] != "loading models":
                    break
                assert status == 503 and time.monotonic() < deadline, body
                time.sleep(0.5)
            assert reason in json.loads(body)["reason"]
            status, body = _get(server.url + "/health")
            assert status == 503 and reason in json.loads(body)["reason"]
            status, headers, body = server.call("POST", "/v1/score", {"model": "churn",
                                                                      "customers": [{"customer_id": "x"}]})
            assert status == 503 and headers["retry-after"] and reason in body["error"]
        finally:
            server.stop()
        assert reason in log.read_text()  # and in the log, at ERROR
    assert not missing.exists() and not missing.parent.exists()  # nothing created
