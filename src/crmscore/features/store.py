"""The online feature store: the latest feature snapshot per customer, for scoring by id.

`crmscore features publish --config C --as-of T` writes the snapshot to an embedded SQLite file
(default `.crmscore/online_store.sqlite`, no server) and, when CRMSCORE_REDIS_URL is set, to Redis for a
fleet of service replicas. A row is the customer's features and segment columns as JSON. In Redis each
publish is a new version (`crmscore:v<N>:...`) that readers switch to in one step.

Next to the features, for the operations page: each customer's purchase timeline (purchase days of the
last 12 months, as JSON) and the segments of the current and the previous snapshot (SQLite only; the
counts and the transitions between the two go into the snapshot's meta, which Redis holds too).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic_core import from_json

from crmscore.files import private_file

log = logging.getLogger(__name__)
REDIS_PREFIX = "crmscore:features:"
REDIS_META = "crmscore:features:__meta__"
REDIS_TIMELINE = "crmscore:timeline:"
REDIS_CURRENT = "crmscore:snapshot:current"  # the version readers use
REDIS_NEXT_VERSION = "crmscore:snapshot:next"
VERSIONED_KEY = re.compile(r"crmscore:v(\d+):")


def _version_keys(version: int) -> tuple[str, str, str]:
    return f"crmscore:v{version}:features:", f"crmscore:v{version}:timeline:", f"crmscore:v{version}:meta"
SEGMENT_TABLES = {"current": "segments_current", "previous": "segments_previous"}


class StoreUnavailable(Exception):
    """The online store cannot be reached or did not answer in time (Redis down or hung)."""


def _clean(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def rows_as_json(frame: pd.DataFrame) -> Iterable[tuple[str, str]]:
    cols = [c for c in frame.columns if c != "customer_id"]
    for rec in frame.itertuples(index=False):
        d = dict(zip(frame.columns, rec))
        yield str(d["customer_id"]), json.dumps({c: _clean(d[c]) for c in cols}, separators=(",", ":"))


class SqliteStore:
    """Customer id -> features JSON in one SQLite file; readers see the last complete snapshot."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            self._local.con = con
        return con

    def publish(self, frame: pd.DataFrame, meta: dict[str, Any], *,
                timelines: Iterable[tuple[str, str]] | None = None,
                segments: dict[str, pd.DataFrame | None] | None = None) -> int:
        """Replace the snapshot. timelines: (customer id, JSON) pairs; segments: {"current": frame,
        "previous": frame or None} of customer_id, rfm_segment, lifecycle_stage. All in one transaction."""
        private_file(self.path)
        con = sqlite3.connect(self.path)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("CREATE TABLE IF NOT EXISTS features (customer_id TEXT PRIMARY KEY, data TEXT NOT NULL)")
            con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            if timelines is not None:
                con.execute("CREATE TABLE IF NOT EXISTS timelines (customer_id TEXT PRIMARY KEY, data TEXT NOT NULL)")
            for table in SEGMENT_TABLES.values():
                if segments is not None:
                    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (customer_id TEXT PRIMARY KEY, "
                                f"rfm_segment TEXT, lifecycle_stage TEXT)")
            with con:  # one transaction: readers never see half a snapshot
                con.execute("DELETE FROM features")
                con.executemany("INSERT INTO features VALUES (?, ?)", rows_as_json(frame))
                con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                [(k, json.dumps(v, default=str)) for k, v in meta.items()])
                if timelines is not None:
                    con.execute("DELETE FROM timelines")
                    con.executemany("INSERT INTO timelines VALUES (?, ?)", timelines)
                for which, seg in (segments or {}).items():
                    table = SEGMENT_TABLES[which]
                    con.execute(f"DELETE FROM {table}")
                    if seg is not None:
                        con.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", _segment_rows(seg))
            return len(frame)
        finally:
            con.close()

    def get(self, customer_id: str) -> dict[str, Any] | None:
        return self.get_many([customer_id]).get(customer_id)

    def ping(self) -> bool:
        return True  # an embedded file: there when the service is

    def get_many(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The customers found, in one query per 500 ids."""
        out: dict[str, dict[str, Any]] = {}
        con = self._con()
        for i in range(0, len(customer_ids), 500):
            part = customer_ids[i:i + 500]
            marks = ",".join("?" * len(part))
            for cid, data in con.execute(f"SELECT customer_id, data FROM features WHERE customer_id IN ({marks})",
                                         part):
                out[cid] = from_json(data)  # a third of json.loads' time
        return out

    def meta(self) -> dict[str, Any]:
        try:
            rows = self._con().execute("SELECT key, value FROM meta").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {k: json.loads(v) for k, v in rows}

    def sample_ids(self, n: int = 5) -> list[str]:
        try:
            return [r[0] for r in self._con().execute("SELECT customer_id FROM features LIMIT ?", (n,))]
        except sqlite3.OperationalError:
            return []

    def get_timeline(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's purchase timeline ({"days": [[date, orders, amount], ...], ...}), or None."""
        try:
            row = self._con().execute("SELECT data FROM timelines WHERE customer_id = ?", (customer_id,)).fetchone()
        except sqlite3.OperationalError:  # published before timelines existed
            return None
        return json.loads(row[0]) if row else None

    def sample_rows(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        """Up to n customers' features, spread evenly over the snapshot (deterministic)."""
        try:
            con = self._con()
            total = con.execute("SELECT count(*) FROM features").fetchone()[0]
            step = max(1, -(-total // max(n, 1)))
            rows = con.execute("SELECT customer_id, data FROM features WHERE rowid % ? = 0 LIMIT ?", (step, n)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [(cid, json.loads(data)) for cid, data in rows]

    def segment_snapshot(self, which: str = "current") -> pd.DataFrame | None:
        """customer_id, rfm_segment, lifecycle_stage of the current or previous snapshot (None if not kept)."""
        try:
            return pd.read_sql_query(f"SELECT * FROM {SEGMENT_TABLES[which]}", self._con())
        except (sqlite3.OperationalError, pd.errors.DatabaseError):
            return None


def _redis_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Redis connection errors and timeouts as StoreUnavailable (no key, no customer id in the message)."""

    @functools.wraps(method)
    def call(self: RedisStore, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return method(self, *args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StoreUnavailable(f"Redis at {self.where}: {type(exc).__name__}") from None

    return call


class RedisStore:
    """The same snapshot in Redis (one string key per customer), for several service replicas.

    Every call has a 1 s timeout and no retry (redis-py's default retries a timed-out call three times):
    a Redis that is down or hung costs a request at most a second, and raises StoreUnavailable."""

    def __init__(self, url: str, timeout: float = 1.0, version_ttl: float = 1.0):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0))
        kw = self.client.connection_pool.connection_kwargs
        self.where = f"{kw.get('host', '?')}:{kw.get('port', '?')}"
        self.version_ttl = version_ttl
        self._keys_at: float | None = None
        self._current = (REDIS_PREFIX, REDIS_TIMELINE, REDIS_META)

    @_redis_errors
    def ping(self) -> bool:
        return bool(self.client.ping())

    def _keys(self) -> tuple[str, str, str]:
        """(features prefix, timeline prefix, meta key) of the snapshot readers use now: the version the
        pointer names (looked up at most once per `version_ttl` seconds), or the unversioned keys of a
        snapshot published before versions existed."""
        now = time.monotonic()
        if self._keys_at is None or now - self._keys_at >= self.version_ttl:
            version = self.client.get(REDIS_CURRENT)
            self._current = _version_keys(int(version)) if version else (REDIS_PREFIX, REDIS_TIMELINE, REDIS_META)
            self._keys_at = now
        return self._current

    def publish(self, frame: pd.DataFrame, meta: dict[str, Any], *,
                timelines: Iterable[tuple[str, str]] | None = None,
                segments: dict[str, pd.DataFrame | None] | None = None) -> int:
        """Write the snapshot as a new version, then switch readers to it in one step (one SET of the pointer):
        a reader sees the old snapshot or the new one, never a mix, and customers not in the new snapshot
        are gone. Versions older than the one replaced (and unversioned keys) are deleted; the replaced one
        is kept until the next publish, for readers that looked up the pointer just before the switch.
        segments are kept in SQLite only (the counts and transitions travel in meta)."""
        version = self.new_version()
        features, timeline, _ = _version_keys(version)
        n = self.write_rows(features, rows_as_json(frame))
        self.write_rows(timeline, timelines or ())
        self.switch(version, meta)
        return n

    def new_version(self) -> int:
        """A version number no publish has used: its keys are invisible to readers until `switch`."""
        return int(self.client.incr(REDIS_NEXT_VERSION))

    def write_rows(self, prefix: str, rows: Iterable[tuple[str, str]], chunk: int = 5000) -> int:
        """SET prefix + id to each (id, JSON) pair, `chunk` to a pipeline round trip; the number written.
        Writing a row again writes the same value, so a retried Spark task does no harm."""
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for cid, data in rows:
            pipe.set(prefix + cid, data)
            n += 1
            if n % chunk == 0:
                pipe.execute()
        pipe.execute()
        return n

    def switch(self, version: int, meta: dict[str, Any]) -> None:
        """Write the version's meta, then switch readers to it in one step (one SET of the pointer); delete the
        versions older than the one replaced (and unversioned keys), which is kept for readers that looked up
        the pointer just before the switch. Also removes what a failed publish left half written."""
        self.client.set(_version_keys(version)[2], json.dumps(meta, default=str))
        replaced = self.client.get(REDIS_CURRENT)
        self.client.set(REDIS_CURRENT, version)
        self._keys_at = None
        keep = {version, int(replaced)} if replaced else {version}
        stale = []
        for pattern in ("crmscore:v*", REDIS_PREFIX + "*", REDIS_TIMELINE + "*"):
            for key in self.client.scan_iter(pattern, count=1000):
                k = key.decode()
                m = VERSIONED_KEY.match(k)
                if m is None or int(m.group(1)) not in keep:
                    stale.append(key)
                if len(stale) >= 5000:
                    self.client.delete(*stale)
                    stale.clear()
        if stale:
            self.client.delete(*stale)

    def get(self, customer_id: str) -> dict[str, Any] | None:
        return self.get_many([customer_id]).get(customer_id)

    @_redis_errors
    def get_many(self, customer_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The customers found, in one MGET."""
        if not customer_ids:
            return {}
        prefix = self._keys()[0]
        values = self.client.mget([prefix + c for c in customer_ids])
        return {c: from_json(v) for c, v in zip(customer_ids, values) if v}

    @_redis_errors
    def meta(self) -> dict[str, Any]:
        raw = self.client.get(self._keys()[2])
        return json.loads(raw) if raw else {}

    @_redis_errors
    def sample_ids(self, n: int = 5) -> list[str]:
        prefix, _, meta_key = self._keys()
        keys = [k.decode() for k in itertools.islice(self.client.scan_iter(prefix + "*", count=100), n + 1)]
        return [k[len(prefix):] for k in keys if k != meta_key][:n]

    @_redis_errors
    def get_timeline(self, customer_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self._keys()[1] + customer_id)
        return json.loads(raw) if raw else None

    @_redis_errors
    def sample_rows(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        ids = self.sample_ids(n)
        values = self.client.mget([self._keys()[0] + i for i in ids]) if ids else []
        return [(i, json.loads(v)) for i, v in zip(ids, values) if v]

    def segment_snapshot(self, which: str = "current") -> pd.DataFrame | None:
        return None


def _segment_rows(seg: pd.DataFrame) -> Iterable[tuple[str, Any, Any]]:
    for cid, rfm, stage in seg[["customer_id", "rfm_segment", "lifecycle_stage"]].itertuples(index=False):
        yield str(cid), _clean(rfm), _clean(stage)


def open_store(home: Path, redis_url: str | None) -> SqliteStore | RedisStore:
    """Redis when configured (a fleet shares it), else the embedded SQLite file."""
    if redis_url:
        return RedisStore(redis_url)
    return SqliteStore(Path(home) / "online_store.sqlite")
