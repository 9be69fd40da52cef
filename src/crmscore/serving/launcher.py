"""Start and stop a local `crmscore serve` process (for the demo, tests and benchmarks)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """`crmscore serve` on 127.0.0.1 in its own process group; `stop()` ends it and its workers."""

    def __init__(self, env: dict[str, str] | None = None, log: Path | None = None, port: int | None = None,
                 api_key: str | None = None, timeout: float = 120, wait_for: str = "/readyz"):
        """wait_for: the probe that must answer 200 before this returns ("/livez" for a service expected
        never to become ready)."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.log_path = log
        self._log = open(log, "a") if log else subprocess.DEVNULL
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "crmscore", "serve", "--port", str(self.port)],
                                     env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(self.url + wait_for, timeout=2).status == 200:
                    return
            except OSError:
                time.sleep(0.3)
            if self.proc.poll() is not None:
                break
        self.stop()
        tail = log.read_text()[-3000:] if log else "(no log)"
        raise RuntimeError(f"crmscore serve did not answer {wait_for} on {self.url}: {tail}")

    def call(self, method: str, path: str, body: Any = None, key: str | None = "",
             headers: dict[str, str] | None = None) -> tuple[int, dict, Any]:
        """(status, headers, JSON body). key: '' uses the server's key, None sends none; headers: extra ones."""
        key = self.api_key if key == "" else key
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, payload

    def stop(self) -> None:
        for sig, wait in ((15, 30), (9, 5)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        if hasattr(self._log, "close"):
            self._log.close()

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
