"""The prediction log: every served prediction (request id, time, customer id, model and version, score,
top reasons), for audit and monitoring.

SQLite in WAL mode with synchronous=NORMAL: a commit is a write to the WAL file without fsync (tens of
microseconds), so a prediction is in the file before its response is sent and survives a crash or
restart of the service process (not a power cut). Each worker process opens its own connection; SQLite's
lock serialises their appends.

Rotation. Writers always append to `predictions.sqlite` (the active file); every worker keeps its
connection to it, so the file is never renamed under them. When the active file's rows pass
`max_bytes`, or its oldest row is from an earlier UTC day, one process (a file lock) copies its rows into
an archive `predictions.<first id>-<last id>.sqlite` (written in full, then renamed into place), and
only then deletes those rows from the active file: a row is always in at least one file, so no
acknowledged prediction is lost across a rotation (a crash between the two steps leaves duplicates,
which readers skip by id). Ids are AUTOINCREMENT, never reused, so they order rows across all files.
Archives older than `retention_days` are deleted. The active file keeps its size (SQLite reuses the freed
pages) rather than shrinking.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crmscore.files import private_file

log = logging.getLogger(__name__)

SCHEMA = """CREATE TABLE IF NOT EXISTS predictions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id TEXT NOT NULL, ts REAL NOT NULL, customer_id TEXT, model TEXT NOT NULL, version TEXT,
  alias TEXT, score REAL, error TEXT, reasons TEXT)"""
COLUMNS = ("id", "request_id", "ts", "customer_id", "model", "version", "alias", "score", "error", "reasons")
ARCHIVE_NAME = re.compile(r"\.(\d{12})-(\d{12})\.sqlite$")


@dataclass(frozen=True)
class Segment:
    """One file of the log: an archive holds ids first_id..last_id; the active file (last_id None) the rest."""

    path: Path
    first_id: int
    last_id: int | None


def segments(path: str | Path) -> list[Segment]:
    """The log's files in id order: archives first (by their ids), the active file `path` last (if it exists)."""
    path = Path(path)
    found = []
    for p in path.parent.glob(f"{path.stem}.*-*{path.suffix}"):
        m = ARCHIVE_NAME.search(p.name)
        if m and p.name == f"{path.stem}.{m.group(1)}-{m.group(2)}{path.suffix}":
            found.append(Segment(p, int(m.group(1)), int(m.group(2))))
    found.sort(key=lambda s: (s.first_id, s.last_id))
    if path.exists():
        found.append(Segment(path, 0, None))
    return found


class PredictionLog:
    """max_id_chars: customer ids are stored cut to this length (the service refuses longer ids; this is the
    last guard). max_bytes / retention_days: rotation and retention (see the module docstring);
    check_seconds: how often a writer looks at whether a rotation is due."""

    def __init__(self, path: str | Path, max_id_chars: int = 128, max_bytes: int = 256_000_000,
                 retention_days: float = 90, check_seconds: float = 10.0):
        self.path = private_file(path)
        self.max_id_chars = max_id_chars
        self.max_bytes = max_bytes
        self.retention_days = retention_days
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=NORMAL")
        self._con.execute(SCHEMA)
        self._next_check = time.monotonic() + check_seconds
        self._rotating = threading.Lock()

    def append(self, request_id: str, rows: Iterable[dict[str, Any]]) -> None:
        self.append_many([(request_id, rows)])

    def append_many(self, requests: Iterable[tuple[str, Iterable[dict[str, Any]]]]) -> None:
        """Several requests' predictions in one transaction: (request id, result rows) pairs."""
        now = time.time()
        values = [(request_id, now, _cut(r.get("customer_id"), self.max_id_chars), r["model"], r.get("version"),
                   r.get("alias"), r.get("score"), r.get("error"),
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
        if time.monotonic() >= self._next_check and self._rotating.acquire(blocking=False):
            # in a thread: copying a full file takes seconds, and the rows just written are already committed
            threading.Thread(target=self._rotate_in_background, name="predlog-rotate", daemon=True).start()

    def _rotate_in_background(self) -> None:
        try:
            self.rotate_if_due()
        except Exception as exc:  # noqa: BLE001  (a failed rotation must not fail scoring; it is retried later)
            log.warning("prediction log rotation failed (%s: %s); retrying in %.0f s", type(exc).__name__, exc,
                        self.check_seconds)
        finally:
            self._next_check = time.monotonic() + self.check_seconds
            self._rotating.release()

    def _connect(self) -> sqlite3.Connection:
        """A connection of the rotating thread's own (the writers' connection may be inside a transaction)."""
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def live_bytes(self) -> int:
        """Bytes of the active file that hold rows (pages in use; freed pages are reused, not returned)."""
        con = self._connect()
        try:
            return _live_bytes(con)
        finally:
            con.close()

    def rotate_if_due(self, now: float | None = None) -> Path | None:
        """Rotate when due (one process at a time: a file lock) and delete archives past retention; the new
        archive's path, or None. `now` (epoch seconds) is for tests of the day boundary and retention."""
        now = time.time() if now is None else now
        with open(private_file(f"{self.path}.rotate.lock"), "a") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # another worker is rotating
            con = self._connect()
            try:
                archive = self._rotate(con) if self._rotation_due(con, now) else None
            finally:
                con.close()
            self.delete_expired(now)
            return archive

    def _rotation_due(self, con: sqlite3.Connection, now: float) -> bool:
        oldest = con.execute("SELECT ts FROM predictions ORDER BY id LIMIT 1").fetchone()
        if oldest is None:
            return False
        return _live_bytes(con) >= self.max_bytes or time.gmtime(oldest[0])[:3] < time.gmtime(now)[:3]

    def _rotate(self, con: sqlite3.Connection) -> Path | None:
        first, last = con.execute("SELECT min(id), max(id) FROM predictions").fetchone()
        if first is None:
            return None
        final = self.path.with_name(f"{self.path.stem}.{first:012d}-{last:012d}{self.path.suffix}")
        tmp = final.with_name(final.name + ".tmp")
        tmp.unlink(missing_ok=True)  # left by a rotation that crashed
        private_file(tmp)
        con.execute("ATTACH DATABASE ? AS archive", (str(tmp),))
        con.execute("PRAGMA archive.synchronous=FULL")
        con.execute(SCHEMA.replace("EXISTS predictions", "EXISTS archive.predictions"))
        con.execute("BEGIN")
        con.execute("INSERT INTO archive.predictions SELECT * FROM main.predictions WHERE id BETWEEN ? AND ?",
                    (first, last))
        con.execute("COMMIT")
        con.execute("DETACH DATABASE archive")
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        # the archive is on disk: only now do its rows leave the active file
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM main.predictions WHERE id BETWEEN ? AND ?", (first, last))
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        log.info("prediction log rotated: ids %s-%s to %s", first, last, final.name)
        return final

    def delete_expired(self, now: float) -> list[Path]:
        """Delete archives whose last write is older than retention_days; the paths deleted."""
        cutoff = now - self.retention_days * 86400
        gone = []
        for seg in segments(self.path):
            if seg.last_id is not None and seg.path.stat().st_mtime < cutoff:
                seg.path.unlink(missing_ok=True)
                gone.append(seg.path)
        if gone:
            log.info("prediction log: deleted %s archive(s) older than %s days", len(gone), self.retention_days)
        return gone

    def count(self) -> int:
        """Rows in the active file (archives not counted)."""
        return self._con.execute("SELECT count(*) FROM predictions").fetchone()[0]

    def close(self) -> None:
        self._con.close()


def _live_bytes(con: sqlite3.Connection) -> int:
    page_size, pages, free = (con.execute(f"PRAGMA {p}").fetchone()[0]
                              for p in ("page_size", "page_count", "freelist_count"))
    return page_size * (pages - free)


def _cut(customer_id: Any, limit: int) -> Any:
    return customer_id[:limit] if isinstance(customer_id, str) else customer_id


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_after(path: Path, last: int, limit: int) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE id > ? "
                                             "ORDER BY id LIMIT ?", (last, limit))]
    except sqlite3.OperationalError:  # an archive deleted by retention meanwhile, or an empty new file
        return []
    finally:
        con.close()


def iter_log(path: str | Path, chunk_rows: int = 50_000) -> Iterator[list[dict[str, Any]]]:
    """The whole log in id order, archives and the active file `path`, `chunk_rows` rows at a time (by id
    ranges: memory stays flat however long the log is, and a service writing meanwhile is not blocked).

    The files are listed again for every chunk, so a rotation during the export loses nothing: rows are
    read from the active file only when no archive holds later ids, and a chunk read from the active file
    is read again if an archive of those ids appeared meanwhile (they may have left the active file)."""
    path = Path(path)
    last = 0
    while True:
        before = segments(path)
        seg = next((s for s in before if s.last_id is None or s.last_id > last), None)
        if seg is None:
            return
        rows = _read_after(seg.path, last, chunk_rows)
        if seg.last_id is None:
            moved = any(s.last_id is not None and s.last_id > last for s in segments(path))
            if moved:
                continue  # rotated meanwhile: read those ids from their archive
            if not rows:
                return
        elif not rows:  # an archive with no ids after `last` (a duplicate left by a crash): past it
            last = seg.last_id
            continue
        yield rows
        last = rows[-1]["id"]


PARQUET_COLUMNS = (("id", "int64"), ("request_id", "string"), ("ts", "float64"), ("customer_id", "string"),
                   ("model", "string"), ("version", "string"), ("alias", "string"), ("score", "float64"),
                   ("error", "string"), ("reasons", "string"))


def export_parquet(path: str | Path, out: str | Path, chunk_rows: int = 50_000) -> int:
    """Write the log (every retained file) to a Parquet file chunk by chunk; the number of rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in PARQUET_COLUMNS])
    n = 0
    with pq.ParquetWriter(out, schema) as writer:
        for rows in iter_log(path, chunk_rows):
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            n += len(rows)
    return n


def read_log(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The log's rows in id order across every retained file (the first `limit` only, if given)."""
    rows: list[dict[str, Any]] = []
    for chunk in iter_log(path):
        rows.extend(chunk)
        if limit and len(rows) >= limit:
            return rows[:limit]
    return rows
