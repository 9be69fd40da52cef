"""The prediction log: every served prediction (request id, time, customer id, model and version, score,
top reasons), for audit and monitoring.

SQLite in WAL mode with synchronous=NORMAL: a commit is a write to the WAL file without fsync (tens of
microseconds), so a prediction is in the file before its response is sent and survives a crash or
restart of the service process (not a power cut). Each worker process opens its own connection; SQLite's
lock serialises their appends.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from crmscore.serving.files import private_file

SCHEMA = """CREATE TABLE IF NOT EXISTS predictions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id TEXT NOT NULL, ts REAL NOT NULL, customer_id TEXT, model TEXT NOT NULL, version TEXT,
  alias TEXT, score REAL, error TEXT, reasons TEXT)"""


class PredictionLog:
    def __init__(self, path: str | Path):
        self.path = private_file(path)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute(SCHEMA)

    def append(self, request_id: str, rows: Iterable[dict[str, Any]]) -> None:
        self.append_many([(request_id, rows)])

    def append_many(self, requests: Iterable[tuple[str, Iterable[dict[str, Any]]]]) -> None:
        """Several requests' predictions in one transaction: (request id, result rows) pairs."""
        now = time.time()
        values = [(request_id, now, r.get("customer_id"), r["model"], r.get("version"), r.get("alias"),
                   r.get("score"), r.get("error"),
                   json.dumps([x["feature"] for x in r.get("reasons") or []]) if r.get("reasons") else None)
                  for request_id, rows in requests for r in rows]
        if not values:
            return
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                self._con.executemany("INSERT INTO predictions (request_id, ts, customer_id, model, version, alias, "
                                      "score, error, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
            except BaseException:
                self._con.execute("ROLLBACK")  # else the connection stays inside the failed transaction
                raise
            self._con.execute("COMMIT")

    def count(self) -> int:
        return self._con.execute("SELECT count(*) FROM predictions").fetchone()[0]

    def close(self) -> None:
        self._con.close()


COLUMNS = ("id", "request_id", "ts", "customer_id", "model", "version", "alias", "score", "error", "reasons")


def iter_log(path: str | Path, chunk_rows: int = 50_000) -> Iterator[list[dict[str, Any]]]:
    """The whole log in order, `chunk_rows` rows at a time (by id ranges: memory stays flat however long the
    log is, and a service writing meanwhile is not blocked)."""
    con = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        last = 0
        while True:
            rows = [dict(r) for r in con.execute(f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE id > ? "
                                                 "ORDER BY id LIMIT ?", (last, chunk_rows))]
            if not rows:
                return
            yield rows
            last = rows[-1]["id"]
    finally:
        con.close()


def export_parquet(path: str | Path, out: str | Path, chunk_rows: int = 50_000) -> int:
    """Write the log to a Parquet file chunk by chunk; the number of rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.int64()), ("request_id", pa.string()), ("ts", pa.float64()),
                        ("customer_id", pa.string()), ("model", pa.string()), ("version", pa.string()),
                        ("alias", pa.string()), ("score", pa.float64()), ("error", pa.string()),
                        ("reasons", pa.string())])
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        for rows in iter_log(path, chunk_rows) if Path(path).exists() else ():
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            n += len(rows)
    return n


def read_log(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    q = "SELECT * FROM predictions ORDER BY id" + (f" LIMIT {int(limit)}" if limit else "")
    rows = [dict(r) for r in con.execute(q)]
    con.close()
    return rows
