"""The service as processes on one host, against real `crmscore serve` instances: two services keep their own
metrics, and kill -9 of the `bentoml serve` arbiter takes its worker down with it (the port is free again)."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest
from test_service import API_KEY, served  # noqa: F401  (module fixture)


def _metric(url: str, route: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("crmscore_http_requests_total{") and f'route="{route}"' in line)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


@pytest.mark.integration
def test_two_services_on_one_host_keep_their_own_metrics(served, tmp_path):
    from crmscore.serving.launcher import LocalServer

    first = LocalServer(served["env"], tmp_path / "first.log", api_key=API_KEY)
    try:
        for _ in range(5):
            assert first.call("GET", "/v1/models")[0] == 200
        assert _metric(first.url, "/v1/models") == 5
        second = LocalServer(served["env"], tmp_path / "second.log", api_key=API_KEY)  # same home, another port
        try:
            for _ in range(3):
                assert second.call("GET", "/v1/models")[0] == 200
            assert _metric(first.url, "/v1/models") == 5  # not wiped by the second's start, not its traffic
            assert _metric(second.url, "/v1/models") == 3
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.mark.integration
def test_kill_9_of_the_arbiter_takes_the_worker_down_and_frees_the_port(served, tmp_path):
    from crmscore.serving.launcher import LocalServer

    server = LocalServer(served["env"], tmp_path / "serve.log", api_key=API_KEY)
    try:
        workers = _children(server.proc.pid)  # `crmscore serve` execs `bentoml serve`: its pid is the arbiter
        assert workers
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(10)
        deadline = time.monotonic() + 30
        while any(os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().split()[2] != "Z" for w in workers):
            assert time.monotonic() < deadline, "the worker outlived its arbiter"
            time.sleep(0.2)
    finally:
        server.stop()  # the rest of the process group, if anything is left
    again = LocalServer(served["env"], tmp_path / "again.log", api_key=API_KEY, port=server.port)
    try:
        assert again.call("GET", "/v1/models")[0] == 200
    finally:
        again.stop()
