"""Soak: a real `crmscore serve` under steady load for minutes, with its Redis online store stopped midway.

    python bench/soak.py [--minutes 10] [--connections 32] [--workers 2] [--outage-seconds 60]
                         [--customers 20000] [--log-max-bytes 8000000] [--dir DIR] [--keep]

Setup as bench/serving.py (synthetic customers, churn trained and promoted, a private CRMSCORE_HOME, MLflow
and BentoML store; --dir reuses a finished setup), plus a real redis-server on a free 127.0.0.1 port as
the online store (`crmscore features publish` with CRMSCORE_REDIS_URL) and a small prediction-log rotation
size, so rotations happen under load. The service runs with `--workers W` on 127.0.0.1.

Load: C connections (HTTP/1.1 keep-alive, a minimal asyncio client: it reads the status line and headers
and counts body bytes, so the client costs little CPU), each sending one-customer `POST /v1/score` bodies
by id with explain: true, back to back, with its own X-Request-ID, for the whole run. At the middle of the
run the Redis server is stopped (SAVE, then SIGTERM) for --outage-seconds, then started again on the same
port from its dump.

Reported: per minute, requests, rate, p50 and p99 latency, answers by kind (HTTP status, or the client
error: timeout, reset), the RSS of the service's process tree (arbiter and workers) and /readyz answers;
the outage's start, end and the first successful score after Redis came back; the service log's size and
lines mentioning the store; and the prediction log checked against the answers: every request answered
200 (acknowledged) must have its rows in the log (read across rotated files), by request id.
Servers started here are stopped by process group and pid at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import BIN, Server, log, make_env, pct, setup, tree_pids, write_bodies  # noqa: E402

from crmscore.serving.launcher import free_port  # noqa: E402


# ----------------------------------------------------------------------------- redis


class Redis:
    """redis-server on 127.0.0.1:port with its dump in `folder`; stop() saves first, so start() brings the
    same data back."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port, self.proc = folder, port, None
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--dir", str(self.folder), "--dbfilename", "dump.rdb", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        for _ in range(400):
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def keys(self) -> int:
        import redis

        return redis.Redis(port=self.port).dbsize()

    def stop(self, save: bool = True) -> None:
        import redis

        if self.proc is None or self.proc.poll() is not None:
            return
        if save:
            redis.Redis(port=self.port).save()
        self.proc.terminate()
        self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------- load


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """(status, body bytes) of one HTTP/1.1 response (Content-Length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "content-length" in headers:
        n = int(headers["content-length"])
        await reader.readexactly(n)
        return status, n
    total = 0
    while headers.get("transfer-encoding", "").lower() == "chunked":
        size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
        await reader.readexactly(size + 2)
        total += size
        if size == 0:
            break
    return status, total


class Load:
    """C connections sending bodies back to back; every answer recorded as (seconds since start, latency,
    kind), and the request ids answered 200."""

    def __init__(self, port: int, bodies: list[bytes], key: str, conns: int, seconds: float):
        self.port, self.bodies, self.key, self.conns, self.seconds = port, bodies, key, conns, seconds
        self.records: list[tuple[float, float, str]] = []
        self.acknowledged: list[str] = []
        self.start = 0.0

    def request(self, body: bytes, request_id: str) -> bytes:
        return (f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {self.key}\r\nX-Request-ID: {request_id}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def connection(self, i: int, end: float) -> None:
        reader = writer = None
        n = 0
        while time.perf_counter() < end:
            request_id = f"soak-{i}-{n}"
            body = self.bodies[(i + n * self.conns) % len(self.bodies)]
            n += 1
            t = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
                writer.write(self.request(body, request_id))
                await writer.drain()
                status, _ = await asyncio.wait_for(read_response(reader), 10)
                kind = str(status)
                if status == 200:
                    self.acknowledged.append(request_id)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError) as exc:
                kind = type(exc).__name__
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.05)  # a refused connection is not retried in a tight loop
            now = time.perf_counter()
            self.records.append((now - self.start, now - t, kind))
        if writer is not None:
            writer.close()

    async def run(self) -> None:
        self.start = time.perf_counter()
        end = self.start + self.seconds
        await asyncio.gather(*(self.connection(i, end) for i in range(self.conns)))


# ----------------------------------------------------------------------------- sampling


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def readyz(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as r:
            return str(r.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except OSError as exc:
        return type(exc).__name__


class Sampler(threading.Thread):
    """Every `every` seconds: RSS of the service's process tree (MB) and the /readyz status."""

    def __init__(self, server: Server, every: float, start: float):
        super().__init__(daemon=True)
        self.server, self.every, self.start_at = server, every, start
        self.samples: list[tuple[float, float, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            self.samples.append((time.perf_counter() - self.start_at, rss_mb(tree_pids(self.server.proc.pid)),
                                 readyz(self.server.port)))


# ----------------------------------------------------------------------------- report


def per_minute(records, samples, minutes: int) -> list[dict]:
    rows = []
    for m in range(minutes):
        lo, hi = m * 60, (m + 1) * 60
        lat = [r[1] for r in records if lo <= r[0] < hi]
        kinds = Counter(r[2] for r in records if lo <= r[0] < hi)
        lat_ok = [r[1] for r in records if lo <= r[0] < hi and r[2] == "200"]
        rss = [s[1] for s in samples if lo <= s[0] < hi]
        ready = Counter(s[2] for s in samples if lo <= s[0] < hi)
        rows.append({"minute": m + 1, "requests": len(lat), "rps": len(lat) / 60, "p50_ms": pct(lat, 0.5) * 1e3,
                     "p99_ms": pct(lat, 0.99) * 1e3, "p50_ok_ms": pct(lat_ok, 0.5) * 1e3,
                     "p99_ok_ms": pct(lat_ok, 0.99) * 1e3, "kinds": dict(kinds),
                     "rss_mb_max": max(rss) if rss else float("nan"), "rss_mb_min": min(rss) if rss else float("nan"),
                     "readyz": dict(ready)})
    return rows


def print_report(args, rows, events, checks, samples) -> None:
    print(f"\n## Soak: {args.minutes} min, {args.connections} connections, {args.workers} workers, Redis stopped "
          f"for {args.outage_seconds:g} s (one customer by id, explain, top_k 5)\n")
    print("| minute | requests | req/s | p50 / p99 ms (all) | p50 / p99 ms (200s) | answers by kind | "
          "RSS MB (service tree) | /readyz |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        kinds = ", ".join(f"{k}: {v:,}" for k, v in sorted(r["kinds"].items()))
        ready = ", ".join(f"{k}: {v}" for k, v in sorted(r["readyz"].items()))
        print(f"| {r['minute']} | {r['requests']:,} | {r['rps']:.0f} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} | "
              f"{r['p50_ok_ms']:.1f} / {r['p99_ok_ms']:.1f} | "
              f"{kinds} | {r['rss_mb_min']:.0f}-{r['rss_mb_max']:.0f} | {ready} |")
    print()
    for k, v in events.items():
        print(f"- {k}: {v}")
    for k, v in checks.items():
        print(f"- {k}: {v}")
    if samples:
        first = [s[1] for s in samples if s[0] < 60] or [samples[0][1]]
        last = [s[1] for s in samples if s[0] >= samples[-1][0] - 60]
        print(f"- RSS of the service tree: first minute mean {sum(first) / len(first):.0f} MB, last minute mean "
              f"{sum(last) / len(last):.0f} MB")


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--outage-seconds", type=float, default=60.0)
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--log-max-bytes", type=int, default=8_000_000,
                    help="CRMSCORE_PREDICTION_LOG_MAX_BYTES for the service (small: rotations under load)")
    ap.add_argument("--sample-seconds", type=float, default=5.0)
    ap.add_argument("--dir", type=Path, help="work in DIR (kept; a finished setup there is reused)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")

    work = args.dir.resolve() if args.dir else Path(tempfile.mkdtemp(prefix="crmscore-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    key_file = work / "api_key"
    if not key_file.exists():
        import secrets

        key_file.write_text("soak_" + secrets.token_urlsafe(24))
    key = key_file.read_text().strip()
    env = make_env(work, key)
    signal.signal(signal.SIGTERM, lambda signum, frame: (_ for _ in ()).throw(SystemExit(128 + signum)))
    redis_server = Redis(work / "redis", free_port())
    server = None
    try:
        setup(work, args.customers, env)
        bodies_path = write_bodies(work)[1]
        bodies = [ln.encode() for ln in bodies_path.read_text().splitlines()]
        shutil.rmtree(work / "redis", ignore_errors=True)
        redis_server.folder.mkdir(parents=True)
        redis_server.start()
        env = {**env, "CRMSCORE_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
               "CRMSCORE_PREDICTION_LOG_MAX_BYTES": str(args.log_max_bytes)}
        subprocess.run([str(BIN / "crmscore"), "features", "publish", "--config", str(work / "synthetic.yaml")],
                       env=env, cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log(f"redis-server on port {redis_server.port}: {redis_server.keys():,} keys")
        home = Path(env["CRMSCORE_HOME"])
        for old in home.glob("predictions*.sqlite*"):  # this run's log only
            old.unlink()
        port = free_port()
        server = Server("service", [str(BIN / "crmscore"), "serve", "--port", str(port), "--workers",
                                    str(args.workers)], env, port, work / "service.log", cwd=work)
        ready_s = server.wait_ready(args.workers, "crmscore")
        log(f"service ready in {ready_s:.1f} s; load for {args.minutes} min at {args.connections} connections")

        seconds = args.minutes * 60
        outage_at = max(0.0, seconds / 2 - args.outage_seconds / 2)
        load = Load(port, bodies, key, args.connections, seconds)
        events: dict[str, str] = {}

        async def outage() -> None:
            loop = asyncio.get_running_loop()
            await asyncio.sleep(outage_at)
            t0 = time.perf_counter() - load.start
            await loop.run_in_executor(None, redis_server.stop)
            log("redis stopped")
            await asyncio.sleep(args.outage_seconds)
            t1 = time.perf_counter() - load.start
            await loop.run_in_executor(None, redis_server.start)
            log(f"redis started again ({redis_server.keys():,} keys)")
            events["Redis stopped at"] = f"{t0:.0f} s"
            events["Redis started again at"] = f"{t1:.0f} s"

        async def drive() -> None:
            await asyncio.gather(load.run(), outage())

        log_size0 = (work / "service.log").stat().st_size
        sampler = Sampler(server, args.sample_seconds, time.perf_counter())
        sampler.start()
        asyncio.run(drive())
        sampler.halt.set()
        sampler.join()
        t_restart = float(events["Redis started again at"].split()[0])
        t_stop = float(events["Redis stopped at"].split()[0])
        back = [r[0] for r in load.records if r[0] > t_restart and r[2] == "200"]
        events["first 200 after Redis came back"] = f"{back[0] - t_restart:.2f} s after the restart" if back else "none"
        during = Counter(r[2] for r in load.records if t_stop + 2 <= r[0] < t_restart)
        events["answers while Redis was down (from 2 s after the stop)"] = dict(during)
        time.sleep(1.0)

        from crmscore.scoring.predlog import iter_log, segments

        logged: set[str] = set()
        rows = 0
        log_path = home / "predictions.sqlite"
        for chunk in iter_log(log_path):
            for r in chunk:
                if r["request_id"].startswith("soak-"):
                    logged.add(r["request_id"])
                    rows += 1
        acked = set(load.acknowledged)
        text = (work / "service.log").read_text(errors="replace")[log_size0:]
        checks = {
            "answers in total": f"{len(load.records):,} " + str(dict(Counter(r[2] for r in load.records))),
            "acknowledged (200)": f"{len(acked):,}",
            "acknowledged and in the prediction log": f"{len(acked & logged):,} (missing: {len(acked - logged)})",
            "logged but not acknowledged (client timeouts)": f"{len(logged - acked):,}",
            "prediction-log rows of this run": f"{rows:,} in {len(segments(log_path))} files (rotation at "
                                               f"{args.log_max_bytes / 1e6:g} MB)",
            "service log during the run": f"{len(text.encode()) / 1e3:.1f} kB, {text.count(chr(10))} lines, of which "
                                          f"{sum('store' in ln for ln in text.splitlines())} mention the store",
        }
        rows_min = per_minute(load.records, sampler.samples, args.minutes)
        print_report(args, rows_min, events, checks, sampler.samples)
        (work / "soak.json").write_text(json.dumps({"minutes": rows_min, "events": events, "checks": checks,
                                                    "samples": sampler.samples}, default=str))
        print(f"\nwork folder {work}{' (kept)' if args.keep or args.dir else ' (removed)'}")
        return 0 if not (acked - logged) else 1
    finally:
        if server is not None:
            server.stop()
        redis_server.stop(save=False)
        if not (args.keep or args.dir):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
