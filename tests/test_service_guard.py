"""The service's front door against a real `crmscore serve` on 127.0.0.1: the OpenAPI document, authentication
that fails closed on every route of the app's route table, keys revoked and created while the service runs
(the page and the API agree), body limits counted on the bytes received (real chunked bodies), id and top_k
limits, and metrics whose labels stay bounded however many paths are tried."""

from __future__ import annotations

import re
import secrets
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import cli_here
from test_service import API_KEY, _buyer_ids, engine, served  # noqa: F401  (module fixtures)


def _route_table() -> list[tuple[str, set[str]]]:
    """(path template, methods) of every HTTP route the served app has: BentoML's system routes, the BentoML
    API, our FastAPI routes and the operations page, as BentoML's worker builds the app."""
    from _bentoml_impl.server.app import ServiceAppFactory
    from starlette.routing import Mount

    from crmscore.serving.service import ScoringService

    ScoringService.inject_config()  # what `bentoml serve` does before it builds the app
    app = ServiceAppFactory(ScoringService, is_main=True)()
    out: list[tuple[str, set[str]]] = []

    def walk(routes, prefix=""):
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                walk(included.routes, prefix)
            elif isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif getattr(route, "path", None) is not None and getattr(route, "methods", None):
                out.append((prefix + route.path, set(route.methods)))

    walk(app.routes)
    return out


@pytest.fixture(scope="module")
def server(served, tmp_path_factory):
    from crmscore.serving.launcher import LocalServer

    log = tmp_path_factory.mktemp("guard") / "serve.log"
    srv = LocalServer({**served["env"], "CRMSCORE_WORKERS": "2"}, log, api_key=API_KEY)
    srv.log_text = lambda: log.read_text()
    yield srv
    srv.stop()


def test_guard_protects_a_new_route_by_default():
    """A route added later, outside /v1, is not open: the allow-list names the open paths, nothing else is."""
    import asyncio

    from fastapi import FastAPI

    from crmscore.serving.guard import Guard
    from crmscore.serving.keys import KeyRing

    class Auth:  # the guard asks for the page's Authenticator; only its verifier and check are used here
        ring = KeyRing(Path("/nonexistent/api_keys.json"), ("k-1",))

        def verifier(self):
            return self.ring.current()

        def check(self, cookie):
            return None

    app = FastAPI()

    @app.get("/reports/export")
    def export() -> dict:
        return {"rows": 1}

    @app.get("/livez")
    def livez() -> dict:
        return {}

    guarded = Guard(app, authenticator=Auth, max_body=1000)

    async def calls():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t") as c:
            return [(await c.get("/reports/export")).status_code,
                    (await c.get("/reports/export", headers={"Authorization": "Bearer k-2"})).status_code,
                    (await c.get("/reports/export", headers={"Authorization": "Bearer k-1"})).status_code,
                    (await c.get("/livez")).status_code]

    assert asyncio.run(calls()) == [401, 401, 200, 200]


@pytest.mark.integration
def test_openapi_document_is_valid_and_lists_our_routes(server):
    from openapi_spec_validator import validate

    assert server.call("GET", "/docs.json", key=None)[0] == 401  # the API's shape is for callers with a key
    status, _, spec = server.call("GET", "/docs.json")
    assert status == 200
    validate(spec)  # raises on anything that is not a valid OpenAPI 3 document
    assert spec["openapi"].startswith("3.")
    assert {"/v1/score", "/v1/customers/{customer_id}", "/v1/models", "/v1/admin/reload"} <= set(spec["paths"])
    assert "post" in spec["paths"]["/v1/score"]


@pytest.mark.integration
def test_every_route_but_the_open_ones_needs_credentials(server):
    from crmscore.serving.guard import OPEN_PATHS, is_open

    routes = _route_table()
    templates = {t for t, _ in routes}
    assert {"/v1/score", "/v1/customers/{customer_id}", "/ui/customers/{customer_id}", "/docs.json"} <= templates
    checked = 0
    with httpx.Client(base_url=server.url, timeout=10, follow_redirects=False) as client:
        for template, methods in routes:
            path = re.sub(r"\{[^}]+\}", "x", template)
            if is_open(path):
                continue
            for method in methods - {"HEAD"}:
                r = client.request(method, path)
                if template.startswith("/ui") and method == "GET":  # a browser is sent to the sign-in form
                    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next="), template
                else:
                    assert r.status_code == 401, (method, template, r.status_code)
                    assert r.json()["error"].startswith("missing API key")
                checked += 1
        assert checked >= 15
        # the open ones answer without a key
        for path in sorted(OPEN_PATHS - {"/health", "/healthz"}):
            assert client.get(path).status_code == 200, path


def _login(client: httpx.Client, key: str) -> httpx.Response:
    return client.post("/ui/login", data={"key": key, "next": "/ui/customers"})


@pytest.mark.integration
def test_keys_created_and_revoked_while_running_count_at_once_in_every_worker(server, served):
    env = served["env"]
    # the operator's `crmscore keys` commands, run here (cli_here: their code, without a new process's imports);
    # the server's workers are other processes either way
    key = cli_here("keys", "create", "ops-team", env=env).stdout.strip()
    key_file = Path(env["CRMSCORE_HOME"]) / "api_keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not list(key_file.parent.glob("api_keys.json.*.tmp"))
    # two workers: each of several fresh connections (spread over both) sees the new key at once
    for _ in range(8):
        assert server.call("GET", "/v1/models", key=key)[0] == 200
    page = httpx.Client(base_url=server.url, timeout=10, follow_redirects=False)
    assert _login(page, key).status_code == 303 and page.get("/ui/customers").status_code == 200
    assert server.call("POST", "/v1/admin/reload", key=key)[0] == 403  # not an admin key

    cli_here("keys", "revoke", "ops-team", env=env)
    for _ in range(8):
        status, _, body = server.call("GET", "/v1/models", key=key)
        assert status == 401 and body["error"] == "invalid API key"
    r = page.get("/ui/customers")  # the page agrees: the session of a revoked key has ended
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    assert _login(page, key).status_code == 401
    page.close()
    assert server.call("GET", "/v1/models")[0] == 200  # the other keys are untouched


def test_concurrent_key_writers_lose_nothing(tmp_path):
    """Writers hold a lock for the whole read-modify-write: eight processes creating keys at once keep all eight."""
    code = ("import sys; from pathlib import Path; from crmscore.serving.keys import KeyRing; "
            "KeyRing.from_settings(Path(sys.argv[1]), None).create(sys.argv[2])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), f"k{i}"]) for i in range(8)]
    assert all(p.wait(60) == 0 for p in procs)
    from crmscore.serving.keys import KeyRing

    ring = KeyRing.from_settings(tmp_path, None)
    assert sorted(e["name"] for e in ring.names()) == [f"k{i}" for i in range(8)]
    assert stat.S_IMODE((tmp_path / "api_keys.json").stat().st_mode) == 0o600


def _chunks(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


@pytest.mark.integration
def test_body_limits_count_the_bytes_received_chunked_included(server):
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # chunked (no Content-Length): httpx sends a generator body with Transfer-Encoding: chunked
        r = client.post("/v1/score", content=_chunks(5_000_000), headers=auth)
        assert r.status_code == 413 and "over the limit" in r.json()["error"]
        r = client.post("/ui/login", content=_chunks(300_000), headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413
        # unauthenticated: refused before a byte of the body is read
        r = client.post("/v1/score", content=_chunks(5_000_000), headers={"Content-Type": "application/json"})
        assert r.status_code == 401
        # a chunked body under the limit is read and scored as usual
        body = b'{"model": "churn", "customers": [{"customer_id": "no-such-customer"}]}'
        r = client.post("/v1/score", content=iter([body[:10], body[10:]]), headers=auth)
        assert r.status_code == 200 and "unknown customer_id" in r.json()["results"][0]["error"]
        # a form on the API is refused with a 4xx, not a 500
        r = client.post("/v1/score", files={"f": ("a.txt", b"x")}, headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.status_code == 415
        # every route that takes a body, with a key: a chunked body over the limit is cut off with a 413 (an
        # admin route may refuse the non-admin key first, 403), never read whole
        checked = 0
        for template, methods in _route_table():
            path = re.sub(r"\{[^}]+\}", "x", template)
            for method in methods & {"POST", "PUT", "PATCH"}:
                r = client.request(method, path, content=_chunks(5_000_000), headers=auth)
                assert r.status_code in (403, 413), (method, template, r.status_code)
                assert r.status_code == 413 or "/admin" in template, (method, template, r.status_code)
                checked += 1
        assert checked >= 4


@pytest.mark.integration
def test_id_length_and_top_k_limits_everywhere(server, engine):
    long_id = "C" * 1_500_000
    status, _, body = server.call("POST", "/v1/score", {"model": "churn", "customers": [{"customer_id": long_id}]})
    assert status in (400, 422) and long_id not in str(body) and len(str(body)) < 2000
    assert "customer_id" in str(body) and "128" in str(body)
    status, _, body = server.call("GET", "/v1/customers/" + "C" * 129)
    assert status == 422 and "at most 128" in body["error"] and "C" * 129 not in body["error"]
    cid = _buyer_ids(engine, 1)[0]
    status, _, body = server.call("GET", f"/v1/customers/{cid}?top_k=99999")
    assert status == 422 and "top_k" in body["error"] and "50" in body["error"]
    status, _, body = server.call("GET", f"/v1/customers/{cid}?top_k=3")
    assert status == 200 and all(len(s["reasons"]) <= 3 for s in body["scores"] if s.get("reasons"))


@pytest.mark.integration
def test_random_paths_leave_metrics_small_and_free_of_ids(server):
    marker = "zz" + secrets.token_hex(4)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        before = len(client.get("/metrics").content)
        # 2,000 distinct unknown paths: a label per path (the bug: 20,000 of them grew /metrics to
        # 120 MB, ~6 KB a path) would make it ~12 MB, 200 times the bound below, and the first one leaked
        # shows the marker; 20,000 requests cost minutes of test time and prove nothing more
        for i in range(2_000):
            which = i % 4
            if which == 0:
                client.get(f"/v1/customers/{marker}{i}")  # unauthenticated
            elif which == 1:
                client.get(f"/v1/customers/{marker}{i}", headers={"Authorization": f"Bearer {API_KEY}"})  # 404
            elif which == 2:
                client.get(f"/{marker}/{i}")
            else:
                client.post(f"/ui/{marker}{i}")
        start = time.perf_counter()
        r = client.get("/metrics")
        took = time.perf_counter() - start
    text = r.text
    assert r.status_code == 200 and marker not in text
    assert 'route="/v1/customers/{customer_id}"' in text and 'route="unmatched"' in text
    assert len(r.content) < max(2 * before, 60_000), (before, len(r.content))
    assert took < 1.0


@pytest.mark.integration
def test_invalid_requests_log_one_line_without_values_and_answer_one_string(server, served):
    secret_id, secret_value = "jane.doe@example.com", "secret-value-4242"
    with httpx.Client(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        r = client.post("/v1/score", json={"model": "churn", "customers": [{"customer_id": secret_id,
                                                                            "extra": secret_value}]})
        body = r.json()
        assert r.status_code == 400 and isinstance(body["error"], str) and set(body) == {"error", "request_id"}
        assert "customers.0.extra" in body["error"] and secret_value not in body["error"]
        r = client.post("/v1/score", content=b'{"model": "churn", "customers": [{"customer_id": "' + secret_id.encode(),
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and isinstance(r.json()["error"], str)
        r = client.post("/v1/score", json={"model": "churn", "customers": [{"customer_id": secret_id,
                                                                            "features": {"recency_days": secret_value}}]})
        assert r.status_code == 200 and r.json()["results"][0]["error"]  # the caller's own answer may say it
        assert client.get(f"/v1/customers/{secret_id}").status_code == 404
    text = server.log_text()
    assert "invalid request to /v1/score: customers.0.extra" in text
    assert secret_id not in text and secret_value not in text and "Traceback" not in text
    home = Path(served["env"]["CRMSCORE_HOME"])
    for name in ("predictions.sqlite", "online_store.sqlite", "api_keys.json", "served_models.json"):
        for path in home.glob(name + "*"):
            if not path.name.endswith(".lock"):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.integration
def test_schemathesis_finds_no_server_error_and_no_schema_violation(server, tmp_path):
    """Schemathesis generates requests from the live service's own /docs.json (with a key) and runs all its
    checks: no 5xx, every response as documented, valid input accepted and invalid input refused."""
    exe = Path(sys.executable).parent / "schemathesis"
    if not exe.exists():
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    run = subprocess.run([str(exe), "run", f"{server.url}/docs.json", "-H", f"Authorization: Bearer {API_KEY}",
                          "--checks", "all", "--max-examples", "30", "--seed", "1", "--max-response-time", "10"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its .schemathesis/ there
    assert run.returncode == 0, run.stdout[-4000:]
    assert re.search(r"\d+ generated, \d+ passed", run.stdout)
