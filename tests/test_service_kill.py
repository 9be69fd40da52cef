"""kill -9 under load (issue 14): a real `crmscore serve` with two workers is scored by a few client threads
while one worker, and then the arbiter, are killed with SIGKILL. Every prediction the service acknowledged
(a 200 answer) must be in the prediction log with the score that was answered: the answer is sent only
after the log's transaction is committed, so no crash can lose an acknowledged prediction."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
from test_service import API_KEY, _buyer_ids, engine, served  # noqa: F401  (module fixtures)

CLIENTS = 4


def _workers(arbiter: int) -> set[int]:
    """The arbiter's live worker processes (its children; `crmscore serve` execs `bentoml serve`)."""
    try:
        return {p.pid for p in psutil.Process(arbiter).children() if p.status() != psutil.STATUS_ZOMBIE}
    except psutil.NoSuchProcess:
        return set()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Load:
    """CLIENTS threads posting small /v1/score requests (one connection each, reopened after a failure) until
    stopped; `acked` holds (time, request id, results) of every 200 answer, `failed` the time of every other
    outcome (refused connection, reset, 5xx)."""

    def __init__(self, port: int, ids: list[str]) -> None:
        self.port, self.ids = port, ids
        self.acked: list[tuple[float, str, list[dict]]] = []
        self.failed: list[tuple[float, str]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(CLIENTS)]
        for t in self.threads:
            t.start()

    def _run(self, n: int) -> None:
        conn, i = None, n
        while not self.stopping.is_set():
            i += CLIENTS
            body = json.dumps({"model": "churn", "explain": False,
                               "customers": [{"customer_id": self.ids[i % len(self.ids)]},
                                             {"customer_id": self.ids[(i + 7) % len(self.ids)]}]})
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", "/v1/score", body, {"Content-Type": "application/json",
                                                         "Authorization": f"Bearer {API_KEY}"})
                resp = conn.getresponse()
                payload = resp.read()
                outcome = (resp.status, payload)
            except (OSError, http.client.HTTPException) as exc:
                outcome = (None, type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)  # the port may be closed for a moment: do not spin
            now = time.monotonic()
            with self._lock:
                if outcome[0] == 200:
                    answer = json.loads(outcome[1])
                    self.acked.append((now, answer["request_id"], answer["results"]))
                else:
                    self.failed.append((now, str(outcome[0] or outcome[1])))
        if conn is not None:
            conn.close()

    def acked_since(self, t: float) -> int:
        with self._lock:
            return sum(1 for when, _, _ in self.acked if when > t)

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(15)


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.integration
def test_kill_9_of_a_worker_and_of_the_arbiter_under_load_loses_no_acknowledged_prediction(served, engine,
                                                                                            tmp_path):
    from crmscore.serving.launcher import LocalServer
    from crmscore.scoring.predlog import read_log

    ids = _buyer_ids(engine, 20)
    log_path = Path(served["env"]["CRMSCORE_HOME"]) / "predictions.sqlite"
    before = {r["id"] for r in read_log(log_path)} if log_path.exists() else set()
    server = LocalServer({**served["env"], "CRMSCORE_WORKERS": "2"}, tmp_path / "serve.log", api_key=API_KEY)
    arbiter = server.proc.pid
    everything = {arbiter}  # every process this test saw, checked gone at the end
    load = None
    try:
        first = _workers(arbiter)
        everything |= first
        assert len(first) == 2, f"expected 2 workers under the arbiter, found {first}"
        load = Load(server.port, ids)
        _wait(lambda: load.acked_since(0) >= 50, 20, "the service did not answer 50 requests under load")

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        # the arbiter starts a new worker, which loads its models and serves; the other worker serves meanwhile
        _wait(lambda: len(_workers(arbiter) - first) == 1, 30, "the arbiter did not restart the killed worker")
        everything |= _workers(arbiter)
        replaced_at = time.monotonic()
        _wait(lambda: load.acked_since(replaced_at) >= 50, 30, "requests did not succeed after the restart")
        assert not _alive(victim)

        os.kill(arbiter, signal.SIGKILL)
        server.proc.wait(10)
        _wait(lambda: not any(_alive(p) for p in everything), 30, "a worker outlived its arbiter")
        load.stop()
    finally:
        if load is not None:
            load.stop()
        server.stop()  # the rest of the process group, if anything is left
        for pid in everything:  # never leave a worker behind, even when an assertion above failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    assert not any(_alive(p) for p in everything)
    with socket.socket() as s:  # the port is free again for a restart (which binds with SO_REUSEADDR, as
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the clients' closed connections linger in
        s.bind(("127.0.0.1", server.port))  # TIME_WAIT)
        s.listen()

    logged = {}
    for row in read_log(log_path):
        if row["id"] not in before:
            logged[(row["request_id"], row["customer_id"])] = row["score"]
    acknowledged = [(rid, r["customer_id"], r["score"]) for _, rid, results in load.acked for r in results]
    missing = [a for a in acknowledged if (a[0], a[1]) not in logged]
    assert not missing, (f"{len(missing)} of {len(acknowledged)} acknowledged predictions are not in the log: "
                         f"{missing[:5]}")
    assert all(logged[(rid, cid)] == score for rid, cid, score in acknowledged)
    assert all(score is not None for _, _, score in acknowledged)
    print(f"acknowledged {len(load.acked)} requests ({len(acknowledged)} predictions), all logged; "
          f"{len(load.failed)} failed attempts ({sorted(set(k for _, k in load.failed))}) "
          f"during {time.monotonic() - killed_at:.1f} s after the worker's kill")
