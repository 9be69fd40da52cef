"""The prediction log rotates by size and by day, keeps archives for the retention period, exports every
retained file as one stream, and loses no acknowledged prediction across a rotation (real SQLite files,
real processes writing and rotating at once)."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from crmscore.scoring.predlog import PredictionLog, export_parquet, iter_log, read_log, segments


def _rows(n: int, prefix: str = "C") -> list[dict]:
    return [{"customer_id": f"{prefix}{i}", "model": "churn", "version": "3", "alias": "champion", "score": i / n,
             "reasons": [{"feature": "recency_days"}]} for i in range(n)]


def _fill(log: PredictionLog, requests: int, rows_each: int = 20) -> list[str]:
    ids = [f"req-{os.getpid()}-{i}" for i in range(requests)]
    for request_id in ids:
        log.append(request_id, _rows(rows_each))
    return ids


def test_rotates_by_size_and_export_reads_every_file(tmp_path):
    path = tmp_path / "predictions.sqlite"
    log = PredictionLog(path, max_bytes=40_000, check_seconds=3600)
    first = _fill(log, 30)
    assert log.live_bytes() >= 40_000
    archive = log.rotate_if_due()
    assert archive is not None and archive.exists() and log.count() == 0
    second = _fill(log, 5)
    assert log.rotate_if_due() is None  # under the size, same day: not due
    assert [s.path for s in segments(path)] == [archive, path]
    rows = read_log(path)
    assert len(rows) == 35 * 20 and [r["id"] for r in rows] == list(range(1, 35 * 20 + 1))
    assert {r["request_id"] for r in rows} == set(first) | set(second)
    out = tmp_path / "log.parquet"
    assert export_parquet(path, out, chunk_rows=64) == len(rows)
    assert pd.read_parquet(out)["id"].tolist() == [r["id"] for r in rows]
    for p in tmp_path.glob("predictions*.sqlite*"):
        if not p.name.endswith(".lock"):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_rotates_at_the_day_boundary_and_deletes_archives_past_retention(tmp_path):
    path = tmp_path / "predictions.sqlite"
    log = PredictionLog(path, max_bytes=10**9, retention_days=7, check_seconds=3600)
    _fill(log, 3)
    assert log.rotate_if_due() is None
    tomorrow = time.time() + 86400
    old = log.rotate_if_due(now=tomorrow)
    assert old is not None and log.count() == 0
    kept_ids = _fill(log, 2)
    recent = log.rotate_if_due(now=tomorrow + 86400)
    assert recent is not None
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old, (eight_days_ago, eight_days_ago))
    _fill(log, 1)
    log.rotate_if_due()  # not due (today's rows, small), but retention is applied
    assert not old.exists() and recent.exists()
    assert {r["request_id"] for r in read_log(path)} >= set(kept_ids)
    assert min(r["id"] for r in read_log(path)) == 3 * 20 + 1


def test_customer_ids_are_stored_cut_to_the_id_limit(tmp_path):
    log = PredictionLog(tmp_path / "predictions.sqlite", max_id_chars=128)
    log.append("req-long", [{"customer_id": "x" * 1_500_000, "model": "churn", "error": "unknown customer_id"}])
    assert [len(r["customer_id"]) for r in read_log(tmp_path / "predictions.sqlite")] == [128]


def _writer(path: str, requests: int, queue) -> None:
    log = PredictionLog(path, max_bytes=30_000, check_seconds=0)  # every append may start a rotation
    acknowledged = []
    for i in range(requests):
        request_id = f"w{os.getpid()}-{i}"
        log.append(request_id, _rows(5))
        acknowledged.append(request_id)  # committed: the service would now answer
    while log._rotating.locked():  # a rotation this process started is still running
        time.sleep(0.01)
    queue.put(acknowledged)


def test_no_acknowledged_prediction_is_lost_while_processes_write_rotate_and_export(tmp_path):
    path = tmp_path / "predictions.sqlite"
    PredictionLog(path).close()
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(str(path), 400, queue)) for _ in range(3)]
    for w in writers:
        w.start()
    exports = []
    while any(w.is_alive() for w in writers) and len(exports) < 50:  # exports racing the rotations
        exports.append([r["id"] for chunk in iter_log(path, chunk_rows=97) for r in chunk])
    acknowledged = [rid for _ in writers for rid in queue.get(timeout=120)]
    for w in writers:
        w.join(timeout=60)
        assert w.exitcode == 0
    assert len(segments(path)) > 3  # rotations happened while writing
    rows = read_log(path)
    ids = [r["id"] for r in rows]
    assert ids == sorted(set(ids)) and len(ids) == 3 * 400 * 5
    assert sorted({r["request_id"] for r in rows}) == sorted(acknowledged)
    for seen in exports:  # each export, taken mid-way, is in order and without duplicates or holes
        assert seen == list(range(1, len(seen) + 1))


def test_cli_export_covers_rotated_files(tmp_path):
    home = tmp_path / "home"
    log = PredictionLog(home / "predictions.sqlite", max_bytes=20_000)
    _fill(log, 20)
    assert log.rotate_if_due() is not None
    _fill(log, 3)
    out = tmp_path / "all.parquet"
    env = {**os.environ, "CRMSCORE_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "crmscore", "predictions", "--out", str(out)], env=env, check=True,
                   capture_output=True)
    assert len(pd.read_parquet(out)) == 23 * 20


def test_an_export_under_way_reads_on_from_the_archive_a_rotation_made(tmp_path):
    """A rotation between two chunks of an export moves the rows not yet read into an archive: the export
    goes on from there, in order, and then reads the rows written after the rotation."""
    path = tmp_path / "predictions.sqlite"
    log = PredictionLog(path, max_bytes=1, check_seconds=3600)
    _fill(log, 1, rows_each=10)
    export = iter_log(path, chunk_rows=4)
    seen = [r["id"] for r in next(export)]
    assert log.rotate_if_due() is not None and log.count() == 0
    _fill(log, 1, rows_each=3)
    seen += [r["id"] for chunk in export for r in chunk]
    assert seen == list(range(1, 14))
